"CARLA dataset (nbs/carla/50_data.ipynb): keys / shapes / dtypes, one forward + loss, deterministic random scale, LMDrive subsampling, splits, errors."
import pytest
import timm
import torch
from torch.utils.data import DataLoader

from drivenb.carla.data import (INPUT_KEYS, TARGET_KEYS, TRAIN_SCALE, CarlaFrames, demo_root, describe, holdout_split,
                                resolve_data_config, split_frames)
from drivenb.carla.model import interfuser_loss

TW = dict(towns=(1, 5), weathers=(3, 12))


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('carla_data')
    demo_root(base / 'if', size=(64, 48))
    demo_root(base / 'lm', 'lmdrive', size=(64, 48))
    demo_root(base / 'ramp', towns=(1,), weathers=(3,), size=(64, 48), ramp=True)
    return base


def test_item_keys_shapes(roots):
    ds = CarlaFrames(roots / 'if', **TW)
    assert len(ds) == 12
    x = ds[1]
    assert tuple(x) == INPUT_KEYS + TARGET_KEYS
    assert x['rgb'].shape == (3, 224, 224) and x['rgb_center'].shape == (3, 128, 128) and x['lidar'].shape == (3, 224, 224)
    assert x['det_data'].shape == (400, 7) and x['command_waypoints'].shape == (10, 2) and x['img_traffic'].shape == (1, 100, 100)
    assert all(x[k].dtype == torch.float32 for k in INPUT_KEYS + ('det_data', 'command_waypoints', 'img_traffic'))
    assert all(x[k].dtype == torch.int64 and x[k].ndim == 0 for k in ('is_junction', 'traffic_light_state', 'stop_sign'))
    assert (int(x['is_junction']), int(x['traffic_light_state'])) == (1, 0)     # demo_frame 1: junction, red light
    front_only = CarlaFrames(roots / 'if', multi_view=False, with_lidar=False, **TW)[0]
    assert tuple(front_only) == ('rgb', 'measurements', 'target_point') + TARGET_KEYS


def test_forward_and_loss(roots):
    torch.manual_seed(0)
    model = timm.create_model('memfuser_tiny_e1d1').eval()
    b = next(iter(DataLoader(CarlaFrames(roots / 'if', **TW), batch_size=2)))
    with torch.no_grad(): loss, parts = interfuser_loss(model(b), b)
    assert torch.isfinite(loss) and set(parts) == {'traffic', 'velocity', 'waypoints', 'junction', 'traffic_light', 'stop_sign'}


def test_lmdrive(roots):
    lm = CarlaFrames(roots / 'lm', 'lmdrive', targets='lmdrive', **TW)
    assert len(lm) == 2 and lm.subsample
    y = lm[0]
    assert y['det_data'].shape == (2500, 8) and y['command_waypoints'].shape == (5, 2)
    def frames(e): lm.set_epoch(e); return tuple(lm.frame_of(k) for k in range(len(lm)))
    assert frames(3) == frames(3) and len({frames(e) for e in range(6)}) > 1
    assert len(CarlaFrames(roots / 'lm', 'lmdrive', subsample=False, **TW)) == 12


def test_random_scale(roots):
    kw = dict(towns=(1,), weathers=(3,))
    train = CarlaFrames(roots / 'ramp', scale=TRAIN_SCALE, seed=3, **kw)
    val = CarlaFrames(roots / 'ramp', **kw)
    assert val.scale_factors(0) is None and all(0.9 <= s <= 1.1 for s in train.scale_factors(0))
    t0, v0 = train[0], val[0]
    assert not torch.equal(t0['rgb'], v0['rgb']) and torch.equal(t0['rgb_center'], v0['rgb_center'])
    assert torch.equal(CarlaFrames(roots / 'ramp', scale=TRAIN_SCALE, seed=3, **kw)[0]['rgb_left'], t0['rgb_left'])
    train.set_epoch(1)
    assert not torch.equal(train[0]['rgb'], t0['rgb'])
    val.set_epoch(1)
    assert torch.equal(val[0]['rgb'], v0['rgb'])


def test_errors(roots, tmp_path):
    demo_root(tmp_path, size=(32, 32))
    idx = tmp_path / 'dataset_index.txt'
    lines = idx.read_text().splitlines()
    idx.write_text('\n'.join([lines[0], 'routes_town01_bad 3'] + lines[1:]) + '\n')
    with pytest.raises(ValueError, match='line 2'): CarlaFrames(tmp_path, **TW)
    idx.write_text('\n'.join(lines) + '\n')
    e0 = CarlaFrames(tmp_path, **TW).entries[0]
    gone = tmp_path / e0.rel / 'rgb_left' / '0002.jpg'
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=str(gone)): CarlaFrames(tmp_path, **TW)
    lazy = CarlaFrames(tmp_path, verify=False, **TW)
    with pytest.raises(FileNotFoundError, match=str(gone)): lazy[2]
    (tmp_path / e0.rel / 'rgb_front' / '0001.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='0001.jpg'): lazy[1]
    with pytest.raises(IndexError): lazy[len(lazy)]
    for bad in (dict(dialect='carla'), dict(targets='tf++'), dict(scale=(1.2, 0.8)), dict(image_size=16), dict(seed=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))): CarlaFrames(roots / 'if', **{**TW, **bad})
    with pytest.raises(ValueError, match='no route of towns'): CarlaFrames(roots / 'if', towns=(2,), weathers=(3,))
    with pytest.raises(ValueError, match='not a timm model'): resolve_data_config(model_name='nope_net')


def test_describe_and_splits(roots):
    ds = CarlaFrames(roots / 'if', **TW)
    assert describe(ds) == [dict(town=t, weather=w, routes=1, frames=3) for t in (1, 5) for w in (3, 12)]
    tr, va = split_frames(roots / 'if', **holdout_split('interfuser', town=5, towns=(1, 5), weathers=(3, 12)))
    assert {r['town'] for r in describe(tr)} == {1} and {r['town'] for r in describe(va)} == {5}
    assert tr.scale == TRAIN_SCALE and va.scale is None
    tr, va = split_frames(roots / 'if', **holdout_split('lmdrive', weather=3, towns=(1, 5), weathers=(3, 12)))
    assert {r['weather'] for r in describe(tr)} == {12} and {r['weather'] for r in describe(va)} == {3}
    with pytest.raises(ValueError, match='in both train and val'):
        split_frames(roots / 'if', train_towns=(1, 5), val_towns=(1,), train_weathers=(3,), val_weathers=(3, 12))
    with pytest.raises(ValueError, match='train_scale'): split_frames(roots / 'if', scale=(1, 1), **holdout_split(town=5, towns=(1, 5)))
