"Bad input stops early with an error that names the culprit."
import json, shutil
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
