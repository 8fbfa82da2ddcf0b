"Custom encoders (nbs/bev/52_encoders.ipynb): picked by timm name, a user's own module via `model.encoder_modules`, re-parameterisation, training end to end."
import json, sys, textwrap
import pytest
import timm
import torch
import torch.nn as nn
from drivenb.bev.encoders import register_encoder, reparameterize, import_encoder_modules, LevelEncoder
from drivenb.bev.model import encoder_levels, build_model
from drivenb.config import load_params
from drivenb.geometry import VoxelGrid
from drivenb.testing import TINY_GRID, bev_params

OURS = {'camencode_effb0': ((8, 16), (40, 512)), 'camencode_replk': ((8, 16), (40, 512)), 'replknet_tiny': ((8, 16), (64, 128))}

def tiny_grid():
    g = TINY_GRID
    return VoxelGrid((tuple(g['bounds_x']), tuple(g['bounds_y']), tuple(g['bounds_z'])), tuple(g['shape']))

@pytest.mark.parametrize('name', list(OURS))
def test_registered_like_timm_models(name):
    "drivenb's encoders are registered on `import drivenb.bev.model` and answer timm's and drivenb's APIs."
    assert timm.is_model(name) and name in timm.list_models('*')
    fm = timm.create_model(name, features_only=True, out_indices=(2, 3) if name.startswith('camencode') else (1, 2))
    assert tuple(fm.feature_info.reduction()) == OURS[name][0] and tuple(fm.feature_info.channels()) == OURS[name][1]
    with torch.no_grad(): x8, x16 = fm.eval()(torch.rand(1, 3, 48, 80))
    assert x8.shape == (1, OURS[name][1][0], 6, 10) and x16.shape == (1, OURS[name][1][1], 3, 5)
    assert encoder_levels(name)['channels'] == OURS[name][1]
    assert timm.data.resolve_data_config({}, model=fm)['mean'] == timm.data.IMAGENET_DEFAULT_MEAN

def test_names_are_checked():
    with pytest.raises(ValueError, match="'resnet50' is already a timm model"): register_encoder('resnet50', LevelEncoder)
    with pytest.raises(TypeError, match='LevelEncoder'): register_encoder('not_an_encoder', nn.Linear)

USER_MODULE = '''
import torch.nn as nn
from drivenb.bev.encoders import LevelEncoder, register_encoder

class TinyConv(LevelEncoder):
    "Three stride-2 conv stages after a stride-2 stem: levels at strides 4, 8, 16."
    def __init__(self, width:int=16, num_classes:int=0, in_chans:int=3):
        super().__init__()
        conv = lambda a, b: nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.ReLU())
        self.stem = conv(in_chans, width)
        self.stages = nn.Sequential(conv(width, width), conv(width, 2 * width), conv(2 * width, 4 * width))
        self.feature_info = [dict(num_chs=c, reduction=r, module=f'stages.{i}')
                             for i, (c, r) in enumerate([(width, 4), (2 * width, 8), (4 * width, 16)])]
        self.init_head(num_classes)
    def forward_levels(self, x, last):
        x, out = self.stem(x), []
        for stage in self.stages[:last + 1]: x = stage(x); out.append(x)
        return out
    def prune_levels(self, last, keep): self.stages = self.stages[:last + 1]

register_encoder('drivenb_test_tinyconv', TinyConv, width=8)
'''

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    "A user's module on sys.path registering `drivenb_test_tinyconv` (the example of 52_encoders)."
    (tmp_path / 'drivenb_test_user_encoders.py').write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield 'drivenb_test_user_encoders'
    sys.modules.pop('drivenb_test_user_encoders', None)

def test_user_module_registers_an_encoder(user_module):
    p = load_params({}, {'model': {'encoder': 'drivenb_test_tinyconv', 'encoder_modules': [user_module], 'latent_dim': 8, 'neck_channels': 16}})
    net = build_model(p, tiny_grid())                          # imports the module first: its registration runs
    assert timm.is_model('drivenb_test_tinyconv') and net.encoder.recomputed == ['stages.0', 'stages.1']
    assert encoder_levels('drivenb_test_tinyconv')['channels'] == (16, 32)
    fm = timm.create_model('drivenb_test_tinyconv', features_only=True)
    assert fm.feature_info.reduction() == [4, 8, 16] and fm.feature_info.channels() == [8, 16, 32]
    B, S = 1, 2
    out = net(torch.rand(B, S, 3, 48, 80), torch.tensor([[40., 0, 40], [0, 40, 24], [0, 0, 1]]).expand(B, S, 3, 3),
              torch.eye(4).expand(B, S, 4, 4), torch.zeros(B, 1, 32, 32) if net.use_radar else None)
    assert out['seg'].shape == (B, 1, 32, 32)

def test_bad_encoder_module_is_named():
    with pytest.raises(ImportError, match='no_such_module_xyz'): import_encoder_modules(['no_such_module_xyz'])
    p = load_params({}, {'model': {'encoder': 'resnet18', 'encoder_modules': ['no_such_module_xyz']}})
    with pytest.raises(ImportError, match='model.encoder_modules.*no_such_module_xyz'): build_model(p, tiny_grid())

@pytest.mark.parametrize('name', ['replknet_tiny', 'camencode_replk'])
def test_reparameterisation_keeps_outputs(name):
    "Merging large and small kernels (eval mode, BN statistics as after training) changes outputs by < 1e-4 relative."
    torch.manual_seed(0)
    m = timm.create_model(name, features_only=True)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-.2, .2); bn.running_var.uniform_(.5, 2.); bn.weight.data.uniform_(.5, 1.5); bn.bias.data.uniform_(-.2, .2)
    m.eval(); x = torch.rand(2, 3, 96, 176)
    with torch.no_grad():
        before = m(x); reparameterize(m); after = m(x)
    assert not any('lkb_origin' in k or 'small_conv' in k for k in m.state_dict())
    assert any('lkb_reparam' in k for k in m.state_dict())
    for a, b in zip(after, before): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())

@pytest.mark.parametrize('name', ['camencode_replk', 'vit_tiny_p8_d3'])   # CamEncode + RepLK blocks: both kinds of encoder code in one run (~25 s); the ViT pyramid (~5 s)
def test_train_end_to_end(tmp_path, frames, name):
    "Two steps of `drivenb.train.train` on the tiny frames with the encoder chosen in params."
    from drivenb.train import train
    p = bev_params(frames, tmp_path / 'run', model={'encoder': name}, train={'iters': 2, 'val_every': 2})
    s = train(p, progress=False)
    assert s['steps'] == 2 and 0 <= s['best_iou'] <= 1
    ck = torch.load(tmp_path / 'run' / 'best.pt', map_location='cpu', weights_only=False)
    assert any(k.startswith('encoder.backbone.') for k in ck['model'])
    assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['steps'] == 2

# ViT encoders with a simple feature pyramid (ViTPyramid)
def plain_vit(**kw):
    "A plain timm ViT as users and the PiMAE study save it (no class token, no head)."
    return timm.create_model('vit_tiny_patch16_224', **{**dict(patch_size=8, depth=3, img_size=(56, 104), class_token=False,
                                                               global_pool='', num_classes=0, dynamic_img_pad=True), **kw})

def test_vit_pyramid_levels():
    "Strides 8 and 16 found by the meta-device probe; level sizes equal resnet18's for the same input; ImageEncoder gives stride 8."
    from drivenb.bev.model import ImageEncoder
    lv = encoder_levels('vit_tiny_p8_d3')
    assert lv['reductions'] == [8, 16] and lv['indices'] == (0, 1) and lv['channels'] == (192, 192)
    assert encoder_levels('vit_tiny_p16_sfp')['modules'] == ['up8', 'vit.blocks']
    x = torch.rand(2, 3, 56, 100)
    with torch.no_grad():
        want = [f.shape[-2:] for f in timm.create_model('resnet18', features_only=True, out_indices=(2, 3))(x)]
        assert want == [(7, 13), (4, 7)]
        for name in ('vit_tiny_p8_d3', 'vit_tiny_p16_sfp'):
            assert [f.shape[-2:] for f in timm.create_model(name, features_only=True).eval()(x)] == want, name
        enc = ImageEncoder('vit_tiny_p8_d3', latent_dim=16, neck_channels=32).eval()
        assert enc(x).shape == (2, 16, 7, 13)

def test_vit_pyramid_loads_plain_vit_weights(tmp_path):
    "A plain timm ViT state dict loads strictly through `ImageEncoder(weights=...)`; a wrong depth or patch size is refused, naming the keys."
    from drivenb.bev.model import ImageEncoder
    src = plain_vit(); torch.save(src.state_dict(), tmp_path / 'vit.pth')
    enc = ImageEncoder('vit_tiny_p8_d3', latent_dim=16, neck_channels=32, weights=str(tmp_path / 'vit.pth'))
    got, want = enc.backbone.vit.state_dict(), src.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    torch.save(plain_vit(depth=2).state_dict(), tmp_path / 'd2.pth')
    with pytest.raises(ValueError, match=r"depth=3.*missing keys \[.vit\.blocks\.2\."):
        ImageEncoder('vit_tiny_p8_d3', weights=str(tmp_path / 'd2.pth'))
    torch.save(plain_vit(depth=4).state_dict(), tmp_path / 'd4.pth')
    with pytest.raises(ValueError, match=r"unexpected keys \['vit\.blocks\.3\."):
        ImageEncoder('vit_tiny_p8_d3', weights=str(tmp_path / 'd4.pth'))
    torch.save(plain_vit(patch_size=16, img_size=(64, 112)).state_dict(), tmp_path / 'p16.pth')
    with pytest.raises(ValueError, match=r"shape mismatches .*'vit\.patch_embed\.proj\.weight \(192, 3, 16, 16\) \(model: \(192, 3, 8, 8\)\)'"):
        ImageEncoder('vit_tiny_p8_d3', weights=str(tmp_path / 'p16.pth'))
    # a whole ViTPyramid state dict (`vit.` keys, the patch-16 deconv) loads too
    m = timm.create_model('vit_tiny_p16_sfp', depth=2); torch.save(m.state_dict(), tmp_path / 'sfp.pth')
    m2 = timm.create_model('vit_tiny_p16_sfp', depth=2, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'sfp.pth')))
    assert torch.equal(m2.up8.weight, m.up8.weight) and torch.equal(m2.vit.pos_embed, m.vit.pos_embed)

def test_vit_pyramid_segnet_trains():
    "The Segnet of params with `model.encoder: vit_tiny_p8_d3` runs forward and backward on a tiny input; the loss reaches every encoder parameter."
    p = load_params({}, {'model': {'encoder': 'vit_tiny_p8_d3', 'latent_dim': 8, 'neck_channels': 16}})
    torch.manual_seed(0)
    net = build_model(p, tiny_grid()).train()
    B, S = 1, 2
    out = net(torch.rand(B, S, 3, 48, 80), torch.tensor([[40., 0, 40], [0, 40, 24], [0, 0, 1]]).expand(B, S, 3, 3),
              torch.eye(4).expand(B, S, 4, 4), torch.zeros(B, 1, 32, 32) if net.use_radar else None)
    assert out['seg'].shape == (B, 1, 32, 32)
    out['seg'].mean().backward()
    assert [n for n, q in net.encoder.named_parameters() if q.grad is None] == []
