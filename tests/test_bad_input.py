"Bad input stops early with an error that names the culprit."
import json, shutil, sys
from pathlib import Path
import pytest
from conftest import tiny_params, write_params, run_cli

def test_missing_dataroot(tmp_path):
    p = tiny_params(tmp_path, tmp_path / 'no-such-root')
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode != 0 and 'no-such-root' in r.stdout and 'dataroot' in r.stdout

def test_missing_version(tmp_path, synth_root):
    p = tiny_params(tmp_path, synth_root); p['data']['version'] = 'v1.0-trainval'
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode != 0 and 'v1.0-trainval' in r.stdout and 'v1.0-synth' in r.stdout

def test_missing_image(tmp_path, synth_root):
    root = tmp_path / 'root'; shutil.copytree(synth_root, root)
    victim = sorted((root / 'samples' / 'CAM_BACK').glob('*.jpg'))[1]; victim.unlink()
    p = tiny_params(tmp_path, root)
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode != 0 and victim.name in r.stdout
    assert not (tmp_path / 'frames' / 'meta.json').exists()

def test_corrupt_image(tmp_path, synth_root):
    root = tmp_path / 'root'; shutil.copytree(synth_root, root)
    victim = sorted((root / 'samples' / 'CAM_FRONT').glob('*.jpg'))[0]; victim.write_bytes(b'not a jpeg')
    p = tiny_params(tmp_path, root)
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode != 0 and victim.name in r.stdout
    assert not (tmp_path / 'frames' / 'meta.json').exists()       # an unfinished conversion is never marked finished

def test_unknown_param(tmp_path, synth_root):
    p = tiny_params(tmp_path, synth_root); p['train']['lerning_rate'] = 0.1
    for script in ['drivenb-convert', 'drivenb-train', 'drivenb-evaluate']:
        r = run_cli(script, '--params', write_params(tmp_path / 'p.yaml', p), check=False)
        assert r.returncode != 0 and 'train.lerning_rate' in r.stdout, (script, r.stdout[-2000:])

def test_unknown_encoder(tmp_path, frames):
    p = tiny_params(tmp_path, Path('unused')); p['data']['frames'] = str(frames)
    p['model']['encoder'] = 'resnet_nonexistent'
    r = run_cli('drivenb-train', '--params', write_params(tmp_path / 'p.yaml', p), '--no_progress', check=False)
    assert r.returncode != 0 and 'resnet_nonexistent' in r.stdout
    assert not (tmp_path / 'run' / 'last.pt').exists()

def test_frames_missing(tmp_path):
    p = tiny_params(tmp_path, tmp_path); p['data']['frames'] = str(tmp_path / 'never-converted')
    r = run_cli('drivenb-train', '--params', write_params(tmp_path / 'p.yaml', p), '--no_progress', check=False)
    assert r.returncode != 0 and 'never-converted' in r.stdout and 'drivenb-convert' in r.stdout

def test_batch_not_divisible(tmp_path, frames):
    from drivenb.train import train
    p = tiny_params(tmp_path, Path('unused')); p['data']['frames'] = str(frames)
    import os
    os.environ.update(WORLD_SIZE='3')
    try:
        with pytest.raises(ValueError, match='batch_size=2 is not divisible by the world size 3'): train(p, progress=False)
    finally: del os.environ['WORLD_SIZE']

# --- more of the catalogue: each error names the culprit and comes before any frame or step ---------
def _frames_params(tmp_path, frames, **train):
    p = tiny_params(tmp_path, Path('unused')); p['data']['frames'] = str(frames); p['train'].update(train)
    return p

def test_dataroot_not_a_folder(tmp_path):
    f = tmp_path / 'nuscenes.tar'; f.write_bytes(b'not a folder')
    p = tiny_params(tmp_path, f)
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode == 2 and 'nuscenes.tar' in r.stdout and 'dataroot' in r.stdout

def test_missing_radar_file(tmp_path, synth_root):
    "A sample_data entry (here a keyframe's RADAR_FRONT sweep) whose file is gone."
    root = tmp_path / 'root'; shutil.copytree(synth_root, root)
    victim = sorted((root / 'samples' / 'RADAR_FRONT').glob('*.pcd'))[2]; victim.unlink()
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, root)), check=False)
    assert r.returncode == 2 and victim.name in r.stdout and 'sample_data' in r.stdout
    assert not list((tmp_path / 'frames').glob('frames/*.npz'))

def test_missing_calibration(tmp_path, synth_root):
    root = tmp_path / 'root'; shutil.copytree(synth_root, root)
    f = root / 'v1.0-synth' / 'calibrated_sensor.json'; cs = json.loads(f.read_text())
    victim = next(c for c in reversed(cs) if 'camera_intrinsic' in c and c['camera_intrinsic'])   # a camera of the last scene
    del victim['camera_intrinsic']; f.write_text(json.dumps(cs))
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, root)), check=False)
    assert r.returncode == 2 and victim['token'] in r.stdout and 'camera_intrinsic' in r.stdout, r.stdout[-2000:]
    assert not list((tmp_path / 'frames').glob('frames/*.npz'))           # found before the first frame is converted

def test_empty_split(tmp_path, synth_root, frames):
    from nuscenes.nuscenes import NuScenes
    scenes = [s['name'] for s in NuScenes('v1.0-synth', str(synth_root), verbose=False).scene]
    p = tiny_params(tmp_path, synth_root); p['data']['val_scenes'] = scenes
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode == 2 and 'train split is empty' in r.stdout
    fr = tmp_path / 'fr'; shutil.copytree(frames, fr); (fr / 'splits' / 'val.txt').write_text('')
    r = run_cli('drivenb-train', '--params', write_params(tmp_path / 'q.yaml', _frames_params(tmp_path, fr)), '--no_progress', check=False)
    assert r.returncode == 2 and "split 'val'" in r.stdout and 'empty' in r.stdout and str(fr / 'splits' / 'val.txt') in r.stdout
    assert not (tmp_path / 'run').exists()

@pytest.mark.parametrize('grid, culprit', [
    ({'shape': [32, 0, 32]}, 'grid.shape'),                   # a non-positive cell count
    ({'shape': [32, 2.5, 32]}, 'grid.shape'),                 # not whole cells
    ({'shape': [4, 2, 32]}, 'fewer than 9'),                  # too small a BEV for the decoder
    ({'bounds_x': [50.0, -50.0]}, 'grid.bounds_x'),           # min >= max
])
def test_bad_grid(tmp_path, synth_root, grid, culprit):
    p = tiny_params(tmp_path, synth_root); p['grid'].update(grid)
    for script in ('drivenb-convert', 'drivenb-train') if culprit == 'grid.bounds_x' else ('drivenb-train',):   # one check, in load_params
        r = run_cli(script, '--params', write_params(tmp_path / 'p.yaml', p), check=False)
        assert r.returncode == 2 and culprit in r.stdout, (script, r.stdout[-2000:])

def test_params_grid_is_not_the_frames_grid(tmp_path, frames):
    p = _frames_params(tmp_path, frames); p['grid']['shape'] = [40, 2, 40]
    r = run_cli('drivenb-train', '--params', write_params(tmp_path / 'p.yaml', p), '--no_progress', check=False)
    assert r.returncode == 2 and 'not the grid of the frames' in r.stdout and '(40, 2, 40)' in r.stdout
    assert not (tmp_path / 'run').exists()

def test_batch_not_divisible_under_torchrun(tmp_path, frames):
    "Two real ranks and a global batch of 3: both stop at once, naming the sizes (no hang)."
    p = _frames_params(tmp_path, frames, batch_size=3)
    r = run_cli('torchrun', '--standalone', '--nproc_per_node=2', '--max_restarts=0', '--no-python', Path(sys.executable).parent / 'drivenb-train',
                '--params', write_params(tmp_path / 'p.yaml', p), '--no_progress', check=False, timeout=120)
    assert r.returncode != 0 and 'train.batch_size=3 is not divisible by the world size 2' in r.stdout
    assert not (tmp_path / 'run').exists()

def test_misspelled_key_and_bad_values(tmp_path, frames):
    pf = write_params(tmp_path / 'p.yaml', _frames_params(tmp_path, frames))
    r = run_cli('drivenb-train', '--params', pf, '--set', 'train.ckpt_evry=2', check=False)
    assert r.returncode == 2 and "train.ckpt_evry" in r.stdout and "did you mean 'ckpt_every'" in r.stdout
    r = run_cli('drivenb-train', '--params', pf, '--set', 'train.grad_acc=0', check=False)
    assert r.returncode == 2 and 'params train.grad_acc: Input should be greater than or equal to 1, got 0' in r.stdout
    assert not (tmp_path / 'run').exists()
