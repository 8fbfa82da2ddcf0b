"Tests of drivenb.radial.convert on a tiny synthetic RADIal root (nbs/radial/35_convert.ipynb)."
import json
from pathlib import Path
import numpy as np
import pytest
import torch
from drivenb.radial.convert import convert_radial, frame_files
from drivenb.radial.dsp import RadarProcessor
from drivenb.radial.radar import RadarGeometry, load_calibration_table
from drivenb.radial.records import SyncReader, read_labels_csv
from drivenb.radial.synth import write_radial_dataset

G = RadarGeometry()
CHIPS = ('radar_ch0', 'radar_ch1', 'radar_ch2', 'radar_ch3')

@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('radial') / 'root'
    write_radial_dataset(r, n_records=3, frames_per_record=2)
    return r

@pytest.fixture(scope='module')
def kitti(root, tmp_path_factory):
    out = tmp_path_factory.mktemp('kitti') / 'out'
    m = convert_radial(root, out, representations=('adc', 'rd', 'pcd', 'ra'), workers=2, progress=False)
    return out, m

def _tree(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob('*')) if p.is_file() and p.name != 'convert.json'}

def test_echofusion_files(root, kitti):
    out, m = kitti
    assert (m['frames'], m['converted'], m['reconverted'], m['skipped']) == (6, 6, 0, 0)
    assert not (out / 'radars_rt').exists()                                # only the requested representations
    labels = read_labels_csv(root / 'labels.csv')
    for fid in range(6):
        fs = frame_files('echofusion', ('adc', 'rd', 'pcd', 'ra'), fid)
        assert all((out / p).is_file() for p in fs.values())
        assert (out / 'freespace' / f'{fid:06d}.png').read_bytes() == (root / 'radar_Freespace' / f'freespace_{fid:06d}.png').read_bytes()
        assert np.fromfile(out / fs['rd'], np.complex128).size == int(np.prod(G.cube_shape))
        assert np.fromfile(out / fs['adc'], np.complex128).size == int(np.prod(G.cube_shape))
        assert (out / fs['ra']).stat().st_size == G.samples * 151 * 8             # float64 (S, n_az)
        assert (out / fs['pcd']).stat().st_size % 16 == 0                        # float32 (N, 4)
        assert (out / fs['lidar']).stat().st_size % 44 == 0                      # float32 (N, 11)
        assert (out / fs['image']).read_bytes()[:4] == b'\x89PNG'
        lines = (out / fs['labels']).read_text().splitlines()
        assert len(lines) == max(1, len(labels[fid].objects)) and all(len(ln.split()) == 17 for ln in lines)
        assert lines[0].split()[0] == str(fid)
    assert (out / 'CalibrationTable.npy').read_bytes() == (root / 'CalibrationTable.npy').read_bytes()

def test_rd_equals_processor(root, kitti):
    out, _ = kitti
    labels = read_labels_csv(root / 'labels.csv')
    fr = labels[3]
    smp = SyncReader(root / fr.dataset)[fr.dataset_index]
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try: ref = RadarProcessor(load_calibration_table(root / 'CalibrationTable.npy'), G).rd({k: smp[k]['data'] for k in CHIPS}).numpy()
    finally: torch.set_num_threads(n)
    rd = np.fromfile(out / 'radars_rd' / '000003.bin', np.complex128).reshape(G.cube_shape)
    np.testing.assert_array_equal(rd, ref)

def test_splits_once_sorted(kitti):
    out, m = kitti
    ids = {n: (out / 'ImageSets' / f'{n}.txt').read_text().split() for n in ('train', 'val', 'test')}
    every = sum(ids.values(), [])
    assert sorted(every) == [f'{i:06d}' for i in range(6)] and len(every) == len(set(every))
    assert ids == {'train': ['000000', '000001'], 'val': ['000002', '000003'], 'test': ['000004', '000005']}
    assert m['splits'] == {'train': 2, 'val': 2, 'test': 2}

def test_rerun_noop_and_repair(root, kitti):
    out, _ = kitti
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*.bin')}
    m = convert_radial(root, out, representations=('adc', 'rd', 'pcd', 'ra'), workers=1, progress=False)
    assert (m['converted'], m['reconverted'], m['skipped']) == (0, 0, 6) and m['message'].startswith('nothing to convert')
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*.bin')} == before
    rd = out / 'radars_rd' / '000002.bin'; good = rd.read_bytes()
    rd.write_bytes(good[:1000])                                           # truncated
    pcd = out / 'radars_pcd' / '000004.bin'; pgood = pcd.read_bytes()
    pcd.write_bytes(pgood[:-16] if len(pgood) >= 16 else b'')             # cut at a whole point: caught by convert.json sizes
    m = convert_radial(root, out, representations=('adc', 'rd', 'pcd', 'ra'), workers=1, progress=False)
    assert (m['converted'], m['reconverted'], m['skipped']) == (0, 2, 4)
    assert rd.read_bytes() == good and pcd.read_bytes() == pgood

def test_workers_identical(root, kitti, tmp_path):
    out, _ = kitti
    convert_radial(root, tmp_path / 'w1', representations=('adc', 'rd', 'pcd', 'ra'), workers=1, progress=False)
    assert _tree(tmp_path / 'w1') == _tree(out)

def test_fftradnet_layout(root, tmp_path):
    out = tmp_path / 'ready'
    m = convert_radial(root, out, layout='fftradnet', workers=2, freespace=True, dtype='complex64', progress=False)
    assert m['converted'] == 6
    assert (out / 'labels.csv').read_bytes() == (root / 'labels.csv').read_bytes()
    rd = np.load(out / 'radar_FFT' / 'fft_000001.npy')
    assert rd.shape == G.cube_shape and rd.dtype == np.complex64
    pcl = np.load(out / 'radar_PCL' / 'pcl_000001.npy')
    assert pcl.ndim == 2 and pcl.shape[0] == 9 and pcl.dtype == np.float64
    np.testing.assert_allclose(np.hypot(pcl[5], pcl[6]), pcl[0] * np.cos(pcl[2]), atol=1e-9)
    lid = np.load(out / 'laser_PCL' / 'pcl_000001.npy')
    assert lid.ndim == 2 and lid.shape[1] == 11 and lid.dtype == np.float32
    jpg = (out / 'camera' / 'image_000001.jpg').read_bytes()
    assert jpg[:2] == b'\xff\xd8' and jpg[-2:] == b'\xff\xd9'
    import cv2
    fs = cv2.imread(str(out / 'radar_Freespace' / 'freespace_000001.png'), cv2.IMREAD_UNCHANGED)
    assert fs.shape == (G.samples, 900) and fs.dtype == np.uint8 and set(np.unique(fs)) <= {0, 255}
    for fid in range(6):                                                   # copied byte for byte from the root's masks
        name = f'freespace_{fid:06d}.png'
        assert (out / 'radar_Freespace' / name).read_bytes() == (root / 'radar_Freespace' / name).read_bytes()
    assert not (out / 'ImageSets').exists()

def test_bad_inputs(root, tmp_path):
    with pytest.raises(FileNotFoundError, match='labels'): convert_radial(tmp_path, tmp_path / 'o', progress=False)
    bad = tmp_path / 'bad'; bad.mkdir()
    (bad / 'labels.csv').write_bytes((root / 'labels.csv').read_bytes())
    with pytest.raises(FileNotFoundError, match='CalibrationTable.npy'): convert_radial(bad, tmp_path / 'o', progress=False)
    (bad / 'CalibrationTable.npy').write_bytes((root / 'CalibrationTable.npy').read_bytes())
    rec = read_labels_csv(root / 'labels.csv')[0].dataset
    with pytest.raises(FileNotFoundError, match=r'record folder .*' + rec.replace('.', r'\.')): convert_radial(bad, tmp_path / 'o', progress=False)
    with pytest.raises(ValueError, match='geometry does not match'):
        convert_radial(root, tmp_path / 'o', geometry=RadarGeometry(samples=64), progress=False)
    with pytest.raises(ValueError, match='representations'): convert_radial(root, tmp_path / 'o', layout='fftradnet', representations=('ra',), progress=False)
    with pytest.raises(ValueError, match='layout'): convert_radial(root, tmp_path / 'o', layout='kitti', progress=False)
    with pytest.raises(ValueError, match='dtype'): convert_radial(root, tmp_path / 'o', dtype='float32', progress=False)
    assert not (tmp_path / 'o').exists()                                  # nothing written before the checks pass

def test_other_params_refused(root, kitti):
    out, _ = kitti
    with pytest.raises(ValueError, match='other params'):
        convert_radial(root, out, dtype='complex64', workers=1, progress=False)
    assert json.loads((out / 'convert.json').read_text())['params']['dtype'] == 'complex128'

def test_freespace_sources(root, tmp_path):
    "'none' writes no mask; a missing or misshapen mask stops the run before any frame, naming the file."
    m = convert_radial(root, tmp_path / 'nofs', representations=('rd',), freespace='none', workers=0, progress=False)
    assert m['params']['freespace'] is None and not (tmp_path / 'nofs' / 'freespace').exists()
    with pytest.raises(FileNotFoundError, match='not found'): convert_radial(root, tmp_path / 'o1', freespace=tmp_path / 'nowhere', progress=False)
    import shutil, cv2
    fs = tmp_path / 'fs'; shutil.copytree(root / 'radar_Freespace', fs)
    (fs / 'freespace_000004.png').unlink()
    with pytest.raises(FileNotFoundError, match='freespace_000004.png: missing free-space mask of numSample 4'):
        convert_radial(root, tmp_path / 'o2', freespace=fs, progress=False)
    cv2.imwrite(str(fs / 'freespace_000004.png'), np.zeros((512, 900), np.uint8))
    with pytest.raises(ValueError, match=r'freespace_000004.png: free-space mask of 512 x 900 pixels .*expected 128 x 900'):
        convert_radial(root, tmp_path / 'o3', freespace=fs, progress=False)
    assert not (tmp_path / 'o2').exists() and not (tmp_path / 'o3').exists()
