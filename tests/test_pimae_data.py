"The PiMAE pairs cache on a tiny synthetic dataset: layout, determinism, sampling, refusals, and the SUN RGB-D export's round trip through PiMAE's projection."
import copy
import zipfile
import numpy as np
import pytest
import torch
from drivenb.config import load_params
from drivenb.nusc import CAMERAS, fixture_dir, keyframe_from_fixture, load_image
from drivenb.geometry import scale_intrinsics
from drivenb.viz import project_to_camera
from drivenb.pimae.data import (build_pairs, check_cache, PairDataset, collate_pairs, crop_points, export_sunrgbd,
                                sunrgbd_scan, SUNRGBD_HW)

HW, N = (18, 32), 256


def _params(root, out='pairs', **over):
    d = {'dataroot': str(root / 'ds'), 'out': str(root / out), 'image_hw': list(HW), 'n_points': N, **over}
    return {'pimae': {'data': d}}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    from drivenb.synth.writers import generate
    root = tmp_path_factory.mktemp('pimae-data')
    generate(root / 'ds', n_scenes=2, n_keyframes=2, width=64, height=36, lidar_azimuths=120, progress=False)
    meta = build_pairs(_params(root), quiet=True)
    return root, meta


def pimae_pixels(pc, Rtilt, K):
    "PiMAE `new_align` (Pretrain/models/pimae.py), scale 1, before the division by MAX_WIDTH / MAX_HEIGHT: Rtilt^T, (x, y, z) -> (x, -z, y), K, divide, -1, round."
    xyz = (Rtilt.T @ pc[:, :3].T).T
    cam = xyz[:, [0, 2, 1]]; cam[:, 1] *= -1
    uv = cam @ K.T
    return np.stack([(uv[:, 0] / uv[:, 2] - 1).round(), (uv[:, 1] / uv[:, 2] - 1).round()], 1)


def test_layout_and_batches(tiny):
    root, meta = tiny
    d = load_params(_params(root))['pimae']['data']
    assert (meta['keyframes'], meta['train'], meta['val']) == (4, 2, 2)
    assert 'out' not in meta['params'] and meta['params']['n_points'] == N and 'seconds' not in check_cache(root / 'pairs', d)
    assert (root / 'pairs' / 'meta.json').read_text().count(str(root)) == 1    # no paths but the dataroot param as given (relative in params.yaml)
    ds = PairDataset(root / 'pairs', 'train', N, train=True, params_data=d)
    a = ds.raw(0)
    assert a['points'].dtype == np.float32 and a['points'].shape[1] == 4 and len(a['points']) >= N
    assert a['images'].shape == (6, *HW, 3) and a['images'].dtype == np.uint8
    assert a['ego_T_cams'].shape == (6, 4, 4) and a['pix_T_cams'].shape == (6, 3, 3) and a['pix_T_cams'].dtype == np.float32
    lo, hi = np.array(d['point_range'][:3]), np.array(d['point_range'][3:])
    assert ((a['points'][:, :3] >= lo) & (a['points'][:, :3] <= hi)).all()
    seen = sum(project_to_camera(a['points'], a['pix_T_cams'][s], a['ego_T_cams'][s], HW[::-1], 0.1)[2].sum() for s in range(6))
    assert seen > 0
    s = ds[0]
    assert s['points'].shape == (N, 3) and s['points'].dtype == torch.float32
    assert s['images'].shape == (6, 3, *HW) and s['images'].dtype == torch.float32 and 0 <= s['images'].min() and s['images'].max() <= 1
    b = collate_pairs([ds[0], ds[1]])
    assert b['points'].shape == (2, N, 3) and b['images'].shape == (2, 6, 3, *HW)
    assert b['ego_T_cams'].shape == (2, 6, 4, 4) and b['pix_T_cams'].shape == (2, 6, 3, 3) and b['index'].tolist() == [0, 1]


def test_deterministic_build(tiny, tmp_path):
    root, _ = tiny
    build_pairs(_params(root, out=str(tmp_path / 'again')), quiet=True)
    for f in sorted((root / 'pairs' / 'frames').glob('*.npz')):
        assert f.read_bytes() == (tmp_path / 'again' / 'frames' / f.name).read_bytes(), f.name
        assert {i.date_time for i in zipfile.ZipFile(f).infolist()} == {(1980, 1, 1, 0, 0, 0)}
    for name in ('splits.json', 'meta.json'):
        assert (root / 'pairs' / name).read_bytes() == (tmp_path / 'again' / name).read_bytes()


def test_sampling(tiny):
    root, _ = tiny
    val = PairDataset(root / 'pairs', 'val', N, train=False)
    assert torch.equal(val[1]['points'], val[1]['points'])
    assert not torch.equal(val[0]['points'], PairDataset(root / 'pairs', 'val', N, train=False, seed=1)[0]['points'])
    tr = PairDataset(root / 'pairs', 'train', N, train=True)
    torch.manual_seed(3); p1, p2 = tr[0]['points'], tr[0]['points']
    torch.manual_seed(3); assert torch.equal(tr[0]['points'], p1)
    assert not torch.equal(p1, p2)
    assert len(np.unique(p1.numpy(), axis=0)) == N                           # without replacement


def test_refusals(tiny, tmp_path):
    root, meta = tiny
    bad = _params(root, out=str(tmp_path / 'none'), n_points=10**6)
    with pytest.raises(ValueError, match=f"only {meta['points_in_range']['min']} LIDAR_TOP points") as e:
        build_pairs(bad, quiet=True)
    assert 'keyframe ' in str(e.value) and 'scene-000' in str(e.value)
    assert not (tmp_path / 'none').exists()
    with pytest.raises(FileNotFoundError, match='nope'):
        build_pairs(_params(root, out=str(tmp_path / 'x'), dataroot=str(tmp_path / 'nope')), quiet=True)
    with pytest.raises(FileNotFoundError, match='v9'):
        build_pairs(_params(root, out=str(tmp_path / 'x'), version='v9'), quiet=True)
    d = load_params(_params(root))['pimae']['data']
    stale = copy.deepcopy(d); stale['point_range'] = [-30.0, -40.0, -3.0, 40.0, 40.0, 5.0]
    with pytest.raises(ValueError, match=r'pimae\.data\.point_range.*drivenb-pimae-data'):
        PairDataset(root / 'pairs', 'train', N, True, params_data=stale)
    with pytest.raises(FileNotFoundError, match='drivenb-pimae-data'):
        check_cache(tmp_path, d)


@pytest.mark.parametrize('calib_hw', [SUNRGBD_HW, None])
def test_sunrgbd_round_trip(tiny, tmp_path, calib_hw):
    root, _ = tiny
    summ = export_sunrgbd(root / 'pairs', tmp_path, 'val', max_frames=1, calib_hw=calib_hw)
    assert summ['scans'] == 6
    a = PairDataset(root / 'pairs', 'val', 1, train=False).raw(0)
    Hc, Wc = calib_hw or HW
    sx, sy = Wc / HW[1], Hc / HW[0]
    scans = tmp_path / summ['folder']
    for s in range(6):
        idx = f'{s:06d}'
        pc = np.load(scans / f'{idx}_pc.npz')['pc']
        assert pc.shape[1] == 6 and np.load(scans / f'{idx}_bbox.npy').shape == (0, 8)
        assert (0 <= pc[:, 3:]).all() and (pc[:, 3:] <= 1).all()
        lines = (tmp_path / 'calib' / f'{idx}.txt').read_text().splitlines()
        Rtilt = np.reshape([float(x) for x in lines[0].rstrip().split(' ')], (3, 3), 'F')     # the official reader
        K = np.reshape([float(x) for x in lines[1].rstrip().split(' ')], (3, 3), 'F')
        assert np.allclose(Rtilt @ Rtilt.T, np.eye(3), atol=1e-6) and K[0, 1] == 0 and K[2, 2] == 1
        uv, _, ok = project_to_camera(a['points'], a['pix_T_cams'][s], a['ego_T_cams'][s], HW[::-1], 0.1)
        assert len(pc) == ok.sum()
        back = (pimae_pixels(pc.astype(np.float64), Rtilt, K) + 0.5) / [sx, sy] - 0.5          # PiMAE pixel -> stored pixel
        if len(pc): assert np.abs(back - uv[ok]).max() <= 0.5 / min(sx, sy) + 1e-3 <= 1
        assert (tmp_path / 'image' / f'{idx}.jpg').is_file()
    import json
    ix = json.loads((tmp_path / 'index.json').read_text())
    assert [ix['scans'][f'{s:06d}']['camera'] for s in range(6)] == list(CAMERAS) and ix['scans']['000000']['token'] == str(a['token'])


def test_real_fixture_round_trip():
    fx = fixture_dir()
    if fx is None: pytest.skip('real nuScenes fixture absent')
    kf = keyframe_from_fixture(fx)
    pts = crop_points(kf.lidar, [-40, -40, -3, 40, 40, 5])
    H, W = 56, 100
    seen = 0
    for s in range(6):
        w, h = kf.image_sizes[s]
        K = scale_intrinsics(kf.pix_T_cams[s], W / w, H / h)
        sc = sunrgbd_scan(pts, load_image(kf.image_paths[s], (H, W)), kf.ego_T_cams[s], K)
        uv, _, ok = project_to_camera(pts, K, kf.ego_T_cams[s], (W, H), 0.1)
        back = (pimae_pixels(sc['pc'].astype(np.float64), sc['Rtilt'], sc['K']) + 0.5) / [730 / W, 530 / H] - 0.5
        assert np.abs(back - uv[ok]).max() <= 0.5 * W / 730 + 1e-3
        assert abs(np.degrees(np.arccos(np.clip(sc['Rtilt'][2, 2], -1, 1)))) < 5      # nuScenes cameras are nearly level
        seen += ok.sum()
    assert seen > 1000
