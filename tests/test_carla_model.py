"CARLA InterFuser / MemFuser model, losses and LR groups (nbs/carla/40_model.ipynb): tiny variants only, CPU."
import warnings
import pytest
import timm
import torch
import torch.nn as nn
from drivenb.carla.model import (MemFuser, example_inputs, interfuser_loss, param_groups, scaled_lr, waypoint_step_weights,
                                 MVTL1Loss, WaypointL1Loss, LAVLoss, WAYPOINT_STEP_WEIGHTS, LMDRIVE_PRETRAIN_OPTIM, TARGET_KEYS)

TINY = 'memfuser_tiny_e1d1'
HEADS = dict(junction='is_junction', traffic_light='traffic_light_state', stop_sign='stop_sign')

@pytest.fixture(scope='module')
def x(): return example_inputs(2)

def targets_like(out, seed=0, pad=2):
    g = torch.Generator().manual_seed(seed)
    B, N, C = out['traffic'].shape; T = out['waypoints'].shape[1]
    det = torch.rand(B, N, C, generator=g); det[..., 0] *= (det[..., 0] > 0.9)
    wp = torch.randn(B, T, 2, generator=g).cumsum(1); wp[:, T - pad:] = 10000.
    return dict(det_data=det, command_waypoints=wp, **{k: torch.randint(0, 2, (B,), generator=g) for k in HEADS.values()})

def test_registered_by_name():
    for n in ('interfuser_baseline', 'memfuser_baseline_e1d3', 'memfuser_small_e1d3', TINY): assert timm.is_model(n)
    m = timm.create_model(TINY)
    assert isinstance(m, MemFuser) and (m.embed_dim, len(m.encoder), len(m.decoder)) == (64, 1, 1)
    assert timm.data.resolve_data_config({}, model=m)['mean'] == timm.data.IMAGENET_DEFAULT_MEAN
    with pytest.raises(ValueError, match='no pretrained weights'): timm.create_model(TINY, pretrained=True)
    with pytest.raises(TypeError, match='with_radar'): timm.create_model(TINY, with_radar=True)

@pytest.mark.parametrize('multi_view', [True, False])
@pytest.mark.parametrize('with_lidar', [True, False])
def test_output_shapes(x, multi_view, with_lidar):
    m = timm.create_model(TINY, multi_view=multi_view, with_lidar=with_lidar).eval()
    with torch.no_grad(): out, mem = m(x), m.forward_features(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == dict(traffic=(2, 400, 7), waypoints=(2, 10, 2), junction=(2, 2),
                                                               traffic_light=(2, 2), stop_sign=(2, 2), traffic_feature=(2, 400, 64))
    assert mem.shape == (2, 50 + 51 * multi_view + 17 * with_lidar, 64)
    assert 0 <= float(out['traffic'].min()) and float(out['traffic'].max()) <= 1

def test_lmdrive_switches(x):
    m = timm.create_model(TINY, density_grid=50, det_channels=8, det_sigmoid=False, num_waypoints=5).eval()
    with torch.no_grad(): out = m(x)
    assert out['traffic'].shape == (2, 2500, 8) and out['waypoints'].shape == (2, 5, 2)

def test_front_only_ignores_side_views(x):
    m = timm.create_model(TINY, multi_view=False).eval()
    with torch.no_grad():
        a = m(x)['waypoints']; b = m({**x, 'rgb_left': torch.zeros_like(x['rgb_left'])})['waypoints']
    torch.testing.assert_close(a, b)

@pytest.mark.parametrize('key', ['rgb', 'rgb_left', 'rgb_right', 'rgb_center', 'lidar', 'measurements', 'target_point'])
def test_missing_key_is_named(x, key):
    m = timm.create_model(TINY)
    with pytest.raises(KeyError, match=f"missing '{key}'"): m({k: v for k, v in x.items() if k != key})

def test_bad_inputs_are_named(x):
    m = timm.create_model(TINY)
    with pytest.raises(ValueError, match="'measurements' has shape"): m({**x, 'measurements': x['measurements'][:, :6]})
    with pytest.raises(ValueError, match='batch size'): m({**x, 'target_point': x['target_point'][:1]})
    with pytest.raises(ValueError, match='not a timm model'): MemFuser(rgb_backbone='no_such_net')
    m = timm.create_model(TINY, multi_view=False, with_lidar=False).eval()   # unused keys may be absent
    with torch.no_grad(): m({k: x[k] for k in ('rgb', 'measurements', 'target_point')})

def test_step_weights_are_the_official():
    assert waypoint_step_weights(10) == pytest.approx(WAYPOINT_STEP_WEIGHTS, abs=1e-12)

def test_loss_zero_for_perfect_and_padding_masked(x):
    m = timm.create_model(TINY).eval()
    with torch.no_grad(): out = m(x)
    t = targets_like(out)
    perfect = dict(traffic=t['det_data'].clone(), waypoints=t['command_waypoints'].clone(),
                   **{h: nn.functional.one_hot(t[k], 2).float() * 60 - 30 for h, k in HEADS.items()})
    perfect['waypoints'][:, -2:] = 777.                                   # padded steps: anything goes
    total, parts = interfuser_loss(perfect, t)
    assert float(total) == pytest.approx(0., abs=1e-9) and set(parts) == {'traffic', 'velocity', 'waypoints', *HEADS}
    perfect['waypoints'][:, 0] += 1.
    assert float(interfuser_loss(perfect, t)[1]['waypoints']) == pytest.approx(WAYPOINT_STEP_WEIGHTS[0] / 10)
    official = tuple(t.get(k) for k in TARGET_KEYS)                        # the official 7-tuple works too
    assert float(interfuser_loss(perfect, official)[0]) == pytest.approx(float(interfuser_loss(perfect, t)[0]))

def test_loss_values_and_smooth_l1():
    tgt = torch.zeros(1, 4, 7); tgt[0, 2] = torch.tensor([1., .1, .2, .3, .4, .5, .6])
    out = tgt.clone(); out[0, 2, 0] = .8; out[0, 2, 3] += .5; out[0, 2, 6] += 1.
    assert [float(v) for v in MVTL1Loss()(out, tgt)] == pytest.approx([0.1, 1.0])
    assert [float(v) for v in MVTL1Loss(smooth_l1=True)(out, tgt)] == pytest.approx([0.0175, 0.5])
    assert float(WaypointL1Loss(smooth_l1=True)(torch.full((1, 10, 2), .5), torch.zeros(1, 10, 2))) == pytest.approx(0.0125)
    with pytest.raises(ValueError, match='8 channels'): LAVLoss()(out, tgt)

def test_lmdrive_preset(x):
    m = timm.create_model(TINY, density_grid=50, det_channels=8, det_sigmoid=False, num_waypoints=5)
    out = m(x); t = targets_like(out, pad=0); del t['is_junction']
    total, parts = interfuser_loss(out, t, weights='lmdrive')
    assert 'junction' not in parts and torch.isfinite(total)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always'); interfuser_loss(out, t, weights='lmdrive', smooth_l1=True)
    assert any('no effect' in str(w.message) for w in ws)
    with pytest.raises(KeyError, match="'stop_sign' is missing"): interfuser_loss(out, {k: v for k, v in t.items() if k != 'stop_sign'}, weights='lmdrive')

@pytest.mark.parametrize('kw', [dict(), dict(multi_view=False, with_lidar=False)])
def test_gradients_reach_every_parameter(x, kw):
    torch.manual_seed(0)
    m = timm.create_model(TINY, **kw).train()
    for mod in m.modules():                                   # timm zero-inits residual BN scales: undo so every grad is non-zero
        if isinstance(mod, nn.BatchNorm2d): nn.init.ones_(mod.weight)
    out = m(x)
    interfuser_loss(out, targets_like(out), smooth_l1=True)[0].backward()
    assert [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []

def test_param_groups():
    m = timm.create_model(TINY)
    o = LMDRIVE_PRETRAIN_OPTIM
    g = param_groups(m, o['lr'], o['backbone_lr'], o['weight_decay'], batch_size=o['batch_size'], world_size=o['world_size'])
    assert [x['name'] for x in g] == ['other', 'backbone']
    assert [x['lr'] for x in g] == pytest.approx([scaled_lr(7.5e-4, 24, 8), 3e-4 * 24 * 8 / 512])
    assert {id(p) for p in g[1]['params']} == {id(p) for p in m.rgb_embed.backbone.parameters()}
    assert sum(len(x['params']) for x in g) == len(list(m.parameters()))
    torch.optim.AdamW(g)
    with pytest.raises(ValueError, match='non-empty'): param_groups(nn.Linear(2, 2), 1e-3, 1e-4)
