"The radial task on the shared trainer: dataset shapes per representation, bad input named, a short training run, the metric keys."
import shutil
import numpy as np
import pytest
import torch
from drivenb.config import load_params
from drivenb.radial.task import (RadialFrames, RadialNet, prepare, tiny_radial_params, build_datasets, build_model, radial_validate,
                                 input_stats, camera_columns)
from drivenb.train import train, get_task

METRICS = {'loss', 'ap', 'ar', 'f1', 'range_error', 'angle_error', 'bev_ap50', 'bev_ap70', 'detections'}

@pytest.fixture(scope='module')
def radial(tmp_path_factory):
    "A tiny synthetic RADIal root converted into every representation (2 records x 3 frames: train + val)."
    root = tmp_path_factory.mktemp('radial')
    p = load_params(tiny_radial_params(root), study='radial')
    prepare(p)
    return root, p

@pytest.mark.parametrize('rep,shape', [('adc', (32, 128, 64)), ('rt', (32, 128, 64)), ('rd', (32, 128, 64)), ('ra', (1, 128, 224)), ('pcd', (3, 128, 224))])
def test_shapes(radial, rep, shape):
    _, p = radial
    ds = RadialFrames(p['radial']['convert']['out'], 'val', rep)
    it = ds[0]
    assert tuple(it['x'].shape) == shape and it['x'].dtype == torch.float32 and torch.isfinite(it['x']).all()
    assert tuple(it['target'].shape) == (3, 32, 224) and len(ds) == 3
    net = RadialNet(ds.geometry, rep, ds.channels, 0.125, *input_stats(ds, 2)).eval()
    with torch.no_grad(): assert tuple(net(it['x'][None])['Detection'].shape) == (1, 3, 32, 224)

def test_camera(radial):
    _, p = radial
    ds = RadialFrames(p['radial']['convert']['out'], 'train', 'rd', camera=True, image_size=(36, 64))
    assert tuple(ds[0]['image'].shape) == (3, 36, 64) and float(ds[0]['image'].max()) <= 1
    x, valid = camera_columns(ds.K, ds.cam_R_radar, ds.image_width, ds.centres)
    assert valid[112] and not valid[0] and 40 < valid.sum() < 120          # the camera sees ~65 deg of the 179

def test_bad_input(radial, tmp_path):
    _, p = radial
    bad = tmp_path / 'conv'; shutil.copytree(p['radial']['convert']['out'], bad)
    f = sorted((bad / 'radars_pcd').glob('*.bin'))[0]; f.write_bytes(f.read_bytes() + b'\0')   # 17 bytes: not whole float32 points
    with pytest.raises(ValueError, match=f.name): RadialFrames(bad, 'train', 'pcd')
    with pytest.raises(ValueError, match='representation'): RadialFrames(bad, 'train', 'rdd')
    with pytest.raises(FileNotFoundError, match='convert.json'):
        build_datasets(load_params(tiny_radial_params(tmp_path / 'nothing'), study='radial'))
    with pytest.raises(ValueError, match=r"radial.train.itres is not a train key; did you mean 'iters'"):
        load_params({'radial': {'train': {'itres': 3}}})

def test_validate_keys(radial):
    _, p = radial
    tr, va = build_datasets(p)
    m = radial_validate(build_model(p, tr), va, 'cpu', p)
    assert METRICS <= set(m) and 0 <= m['f1'] <= 1 and np.isfinite(m['loss'])
    assert 0 <= m['freespace_miou'] <= 1                                    # radial.model.freespace is on by default
    assert {'bev_ap50_0_50', 'bev_ap70_0_50', 'bev_ap50_50_100', 'bev_ap70_50_100'} <= set(m) and np.isnan(m['bev_ap50_50_100'])   # no label beyond 50 m here

def test_freespace(radial, tmp_path):
    "The free-space target is FFTRadNet's crop + nearest resize of the mask; the head adds the BCE term; no masks -> a named error."
    _, p = radial
    ds = RadialFrames(p['radial']['convert']['out'], 'train', 'rd', freespace=True)
    seg = ds[0]['seg']
    assert tuple(seg.shape) == (64, 224) and set(seg.unique().tolist()) <= {0.0, 1.0} and 0 < float(seg.mean()) < 1
    import cv2
    mask = cv2.imread(str(ds.root / ds.files[0]['freespace']), cv2.IMREAD_UNCHANGED) == 255     # 128 x 900
    # PIL's nearest resize by 2 in range and in azimuth of the central 448 columns takes the pixel at 2 i + 1 (the cell's centre, rounded up)
    assert (mask[:, 226:674][1::2, 1::2] == seg.numpy().astype(bool)).all()
    net = build_model(p, ds)
    from drivenb.radial.task import radial_loss
    b = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ('x', 'target', 'seg')}
    total, parts = radial_loss(net, b)
    assert {'cls', 'reg', 'seg', 'total'} <= set(parts) and parts['seg'] > 0 and torch.isfinite(total)
    q = load_params(tiny_radial_params(tmp_path, convert={'root': p['radial']['convert']['root'], 'out': str(tmp_path / 'nofs'), 'freespace': 'none',
                                                         'representations': ['rd']}), study='radial')
    prepare(q)
    with pytest.raises(ValueError, match='radial.model.freespace: false'): build_datasets(q)
    q['radial']['model']['freespace'] = False
    tr, va = build_datasets(q)
    assert 'seg' not in tr[0] and 'Segmentation' not in build_model(q, tr)(tr[0]['x'][None])

@pytest.mark.parametrize('rep', ['rd', 'ra'])
def test_train_engine(radial, tmp_path, rep):
    root, _ = radial
    s = train(tiny_radial_params(root, tmp_path / 'run', rep, train={'iters': 6, 'val_every': 3}), study='radial', progress=False)
    assert s['steps'] == 6 and s['task'] == 'radial' and s['best_metric'] == 'f1' and METRICS <= set(s['val'])
    assert (tmp_path / 'run' / 'best.pt').is_file() and (tmp_path / 'run' / 'last.pt').is_file()
    lines = (tmp_path / 'run' / 'dvclive' / 'plots' / 'metrics' / 'train' / 'total.tsv').read_text().split('\n')[1:-1]
    loss = [float(x.split('\t')[-1]) for x in lines]
    assert loss[-1] < loss[0], loss
    assert get_task('radial').ckpt_sections == ('radial', 'train')
