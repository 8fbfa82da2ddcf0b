"""Simple-BEV's other sensor inputs (issue 10, section 2): meta-radar (16 radar fields per voxel, `model.use_metaradar`) and
lidar occupancy (`model.use_lidar`): the frames store their points, the dataset builds the voxels, `Segnet`'s BEV compressor
takes the official widths, training runs, ablation variants name them, and official checkpoints of each mode import."""
import json, shutil
from pathlib import Path
import numpy as np
import pytest, torch
from drivenb.geometry import VoxelGrid
from drivenb.testing import tiny_frames, bev_params, TINY_GRID
from drivenb.config import load_params
from drivenb.nusc import RADAR_META_FIELDS
from drivenb.bev.data import FrameDataset, radar_features, lidar_occupancy, radar_occupancy, model_inputs
from drivenb.bev.model import Segnet, build_model, forward_batch

GRID = VoxelGrid(((-10, 10), (-10, 10), (-2, 2)), (10, 4, 10))     # 2 m x 1 m x 2 m cells

def direct_cell(q, grid):
    "The official voxel of a point: mem coordinate (p - min) / cell - 0.5, rounded half up (`Vox_util.Ref2Mem` + `get_occupancy`)."
    return tuple(int(np.floor((q[a] - grid.dim_bounds(d)[0]) / grid.cell_size[d])) for d, a in enumerate(grid.axes))

def test_metaradar_voxels_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-12, 12, (200, 3)) * [1, 1, 0.3], [[3.1, 3.1, 0.6], [3.2, 3.3, 0.7]]])   # some outside, two sharing a voxel
    feats = rng.normal(size=(len(pts), 16)).astype(np.float32)
    want = np.zeros((16, *GRID.shape), np.float32)
    for q, f in zip(pts, feats):                       # in order: a later point in the same voxel overwrites
        c = direct_cell(q, GRID)
        if all(0 <= i < n for i, n in zip(c, GRID.shape)): want[(slice(None), *c)] = f
    got = radar_features(pts, feats, GRID)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[(slice(None), *direct_cell(pts[-1], GRID))], feats[-1])
    assert (np.abs(got).sum(0) > 0).sum() == len({direct_cell(q, GRID) for q in pts if all(0 <= i < n for i, n in zip(direct_cell(q, GRID), GRID.shape))})
    np.testing.assert_array_equal(radar_occupancy(pts, GRID)[0], (np.abs(want).sum((0, 2)) > 0).astype(np.float32))   # same voxels as the occupancy
    with pytest.raises(ValueError, match=r'\(P, D\) for the P = 202 points'): radar_features(pts, feats[:5], GRID)

def test_lidar_occupancy_marks_the_voxels_of_known_points():
    pts = np.array([[5.0, -5.0, 1.5], [-9.9, 9.9, -1.9], [0.5, 0.5, 0.2], [30, 0, 0], [0, 0, 3.0]], np.float32)
    occ = lidar_occupancy(pts, GRID)
    assert occ.shape == (1, 10, 4, 10) and occ.dtype == np.float32
    assert occ.sum() == 2                              # within 1 m of the origin, outside, above the band: dropped
    for q in pts[:2]: assert occ[(0, *direct_cell(q, GRID))] == 1
    assert lidar_occupancy(np.zeros((0, 3)), GRID).sum() == 0

def test_tiny_frames_hold_the_sensor_arrays():
    frames = tiny_frames()
    params = json.loads((frames / 'params.json').read_text())
    assert params['lidar_sweeps'] == 3 and params['radar_meta_fields'] == list(RADAR_META_FIELDS)
    ds = FrameDataset(frames, 'train', inputs=('radar_meta', 'lidar_occ'))
    with np.load(ds.path(0)) as z:
        assert z['lidar'].ndim == 2 and z['lidar'].shape[1] == 3 and len(z['lidar']) > 50 and z['lidar'].dtype == np.float32
        assert z['radar_meta'].shape == (len(z['radar']), 16)
        np.testing.assert_array_equal(z['radar_meta'][:, 2], z['radar'][:, 3])   # rcs, the same column of both
    x = ds[0]
    n0, n1, n2 = TINY_GRID['shape']
    assert x['radar_meta'].shape == (16, n0, n1, n2) and x['lidar_occ'].shape == (1, n0, n1, n2)
    assert x['lidar_occ'].sum() > 0 and x['radar_meta'].abs().sum() > 0
    assert 'lidar_occ' not in FrameDataset(frames, 'train')[0]
    assert model_inputs({'use_radar': True, 'use_metaradar': True}) == ('radar_meta',) and model_inputs({'use_lidar': True}) == ('lidar_occ',)
    assert model_inputs({'use_radar': True}) == ()

def test_frames_without_the_arrays_are_named(tmp_path):
    frames = tiny_frames()
    old = tmp_path / 'frames'; shutil.copytree(frames, old)
    ds = FrameDataset(old, 'train', inputs=('lidar_occ',))
    with np.load(ds.path(0)) as z: d = {k: z[k] for k in z.files if k != 'lidar'}
    np.savez(ds.path(0), **d)
    with pytest.raises(ValueError, match=r"has no \['lidar'\] array .*reconvert"): ds[0]
    # frames converted before lidar_sweeps existed: their params.json differs, so convert refuses to mix them
    p = json.loads((old / 'params.json').read_text()); del p['lidar_sweeps']
    (old / 'params.json').write_text(json.dumps(p))
    from drivenb.bev.convert import convert
    with pytest.raises(ValueError, match=r"other params \(differ: .*'lidar_sweeps'"):
        convert(p['dataroot'], 'v1.0-synth', old, image_size=(48, 80), grid=TINY_GRID, radar_sweeps=2, workers=0, progress=False)

MODES = {'lidar': dict(use_radar=False, use_lidar=True), 'metaradar': dict(use_radar=True, use_metaradar=True),
         'radar': dict(use_radar=True), 'camera': dict(use_radar=False)}

@pytest.mark.parametrize('mode', list(MODES))
def test_segnet_forward_backward_on_tiny_frames(tmp_path, mode):
    frames = tiny_frames()
    p = load_params(bev_params(frames, tmp_path, model=MODES[mode]))
    ds = FrameDataset(frames, 'train', inputs=model_inputs(p['model']))
    torch.manual_seed(0)
    model = build_model(p, ds.grid)
    C, (n0, n1, n2) = p['model']['latent_dim'], ds.grid.shape
    want = C * n1 + dict(lidar=n1, metaradar=16 * n1, radar=1, camera=0)[mode]
    assert model.bev_compressor[0].in_channels == want
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    out = forward_batch(model, batch)
    assert out['seg'].shape == (2, 1, n0, n2)
    total, _ = model.loss(out, batch)
    total.backward()
    g = model.bev_compressor[0].weight.grad
    assert g is not None and g[:, C * n1:].abs().sum() > 0 if mode != 'camera' else g is not None   # the sensor channels learn
    if mode in ('lidar', 'metaradar'):                 # a batch without the input is refused, naming it
        key = 'lidar_occ' if mode == 'lidar' else 'radar_meta'
        with pytest.raises(ValueError, match=f"no '{key}'.*model_inputs"): forward_batch(model, {k: v for k, v in batch.items() if k != key})

def test_camera_and_radar_paths_are_unchanged():
    "The default paths give the same tensors as before the sensor flags: radar occupancy from `radar`, forward with `radar_occ`."
    frames = tiny_frames()
    ds = FrameDataset(frames, 'val')
    with np.load(ds.path(0)) as z: radar = z['radar']
    np.testing.assert_array_equal(ds[0]['radar_occ'].numpy(), radar_occupancy(radar, ds.grid))
    torch.manual_seed(0)
    m = Segnet(ds.grid, encoder='resnet18', latent_dim=16, neck_channels=32, use_radar=True).eval()
    b = torch.utils.data.default_collate([ds[0]])
    with torch.no_grad():
        a, c = forward_batch(m, b, True), m(b['images'], b['pix_T_cams'], b['cams_T_ref'], b['radar_occ'])
    for k in a: assert torch.equal(a[k], c[k]), k
    with pytest.raises(ValueError, match='use_radar=False but the model has use_radar=True'): forward_batch(m, b, False)

@pytest.mark.parametrize('mode', ['lidar', 'metaradar'])
def test_two_training_steps(tmp_path, mode):
    from drivenb.train import train
    s = train(bev_params(tiny_frames(), tmp_path / 'run', model=MODES[mode], train={'iters': 2, 'val_every': 2}), progress=False)
    assert s['steps'] == 2, s
    ck = torch.load(tmp_path / 'run' / 'best.pt', weights_only=False)
    assert all(ck['params']['model'][k] == v for k, v in MODES[mode].items())

def test_variant_params_sensor_sets():
    from drivenb.bev.ablate import variant_params, SENSORS, sensors_of
    root = Path(__file__).resolve().parents[1]
    for s in ('camera', 'camera+radar', 'camera+lidar', 'camera+metaradar'):
        m = variant_params(root / 'params.yaml', 'x', 'resnet18', s)['model']
        assert sensors_of(m) == s and {k: m[k] for k in SENSORS[s]} == SENSORS[s]
    with pytest.raises(ValueError, match=r"sensors must be one of \['camera', 'camera\+radar', 'camera\+lidar', 'camera\+metaradar'\]"):
        variant_params(root / 'params.yaml', 'x', 'resnet18', 'lidar')

@pytest.mark.parametrize('mode', ['metaradar', 'lidar'])
def test_import_official_layout_of_each_width(tmp_path, mode):
    from drivenb.bev.simplebev import drivenb_to_official, load_official, official_architecture, import_official, COMPRESSOR
    grid = VoxelGrid(((-8, 8), (-8, 8), (-4.5, 5.5)), (16, 2, 16))
    torch.manual_seed(0)
    ours = Segnet(grid, encoder='resnet50', latent_dim=16, neck_channels=32, **MODES[mode]).eval()
    off = drivenb_to_official(ours.state_dict(), reverse_vertical=2)
    assert off[COMPRESSOR].shape[1] == 16 * 2 + (16 * 2 if mode == 'metaradar' else 2)
    arch = official_architecture(off, 2)
    assert {k: arch[k] for k in ('use_radar', 'use_metaradar', 'use_lidar')} == {**dict(use_radar=False, use_metaradar=False, use_lidar=False), **MODES[mode]}
    m = load_official(off, grid=grid)
    for k, v in ours.state_dict().items(): assert torch.equal(m.state_dict()[k], v), k
    # the official channel of sensor group g at vertical cell y is drivenb's at n1 - 1 - y
    assert torch.equal(off[COMPRESSOR][:, 32 + 0], ours.state_dict()[COMPRESSOR][:, 32 + 1])
    with pytest.raises(ValueError, match=r'3 vertical cells the official Segnet has 48 \(camera\), 49 \(camera\+radar\), 96 \(camera\+metaradar\) or 51 \(camera\+lidar\)'):
        load_official(off, grid=VoxelGrid(grid.bounds, (16, 3, 16)))
    torch.save({'model_state_dict': off}, tmp_path / 'model-000000100.pth')
    small = {'grid': {'bounds_x': [-8, 8], 'bounds_y': [-8, 8], 'shape': [16, 2, 16]}}
    r = import_official(tmp_path / 'model-000000100.pth', tmp_path / 'best.pt', overrides=small)
    assert all(r['model'][k] == v for k, v in MODES[mode].items()), r
    with pytest.raises(ValueError, match='contradicts the checkpoint'):
        import_official(tmp_path / 'model-000000100.pth', tmp_path / 'x.pt', overrides={**small, 'model': {'use_lidar': mode != 'lidar'}})
