"Conversion faults: a damaged radar file, a dangling table row, a damaged frame on rerun, and the params entry point; each names the culprit."
import json, shutil
from pathlib import Path
import numpy as np
import pytest
from conftest import tiny_params, write_params, run_cli

def _copy_root(tmp_path, synth_root) -> Path:
    root = tmp_path / 'root'; shutil.copytree(synth_root, root); return root

def _convert(root, out, **kw):
    "`convert` with the arguments the `frames` fixture used."
    from drivenb.bev.convert import convert
    p = tiny_params(Path(out).parent, root)
    return convert(root, 'v1.0-synth', out, image_size=p['convert']['image_size'], grid=p['grid'], radar_sweeps=2, workers=0,
                   progress=False, **kw)

def _table(root, name):
    f = Path(root) / 'v1.0-synth' / f'{name}.json'
    return f, json.loads(f.read_text())

def _keyframe_sd(root, channel):
    "The first keyframe sample_data row of `channel`."
    _, sd = _table(root, 'sample_data')
    return next(r for r in sd if r['is_key_frame'] and f'/{channel}/' in r['filename'])

# --- 1. a truncated radar .pcd -------------------------------------------------------------------------
@pytest.mark.parametrize('folder', ['samples', 'sweeps'])
def test_truncated_radar_file(tmp_path, synth_root, folder):
    "A keyframe's radar file, or an earlier sweep the devkit aggregates with it, cut short: `ValueError` naming the file."
    root = _copy_root(tmp_path, synth_root)
    victim = sorted((root / folder / 'RADAR_FRONT').glob('*.pcd'))[1]
    victim.write_bytes(victim.read_bytes()[:-40])
    with pytest.raises(ValueError, match='truncated or damaged') as e: _convert(root, tmp_path / 'frames')
    assert str(victim) in str(e.value)
    assert not (tmp_path / 'frames' / 'meta.json').exists()

def test_truncated_radar_file_cli(tmp_path, synth_root):
    root = _copy_root(tmp_path, synth_root)
    victim = sorted((root / 'samples' / 'RADAR_BACK_LEFT').glob('*.pcd'))[0]
    victim.write_bytes(victim.read_bytes()[:200])                  # cut inside the header
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, root)), check=False)
    assert r.returncode == 2 and str(victim) in r.stdout and 'truncated' in r.stdout, r.stdout[-2000:]
    assert 'Traceback' not in r.stdout                             # one line, no devkit traceback

def test_load_radar_names_the_file(tmp_path, synth_root):
    from drivenb.nusc import open_nuscenes, load_radar
    root = _copy_root(tmp_path, synth_root)
    sd = _keyframe_sd(root, 'RADAR_FRONT_RIGHT'); victim = root / sd['filename']
    victim.write_bytes(b'')
    nusc = open_nuscenes(root, 'v1.0-synth')
    with pytest.raises(ValueError, match='truncated or damaged') as e: load_radar(nusc, nusc.get('sample', sd['sample_token']), 2)
    assert str(victim) in str(e.value)

# --- 2. a sample_data row pointing at a missing calibrated_sensor / ego_pose row ----------------------
def test_missing_calibrated_sensor_row(tmp_path, synth_root):
    root = _copy_root(tmp_path, synth_root)
    sd = _keyframe_sd(root, 'CAM_BACK')
    f, cs = _table(root, 'calibrated_sensor')
    f.write_text(json.dumps([c for c in cs if c['token'] != sd['calibrated_sensor_token']]))
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, root)), check=False)
    assert r.returncode == 2, r.stdout[-2000:]
    for part in [str(f), sd['calibrated_sensor_token'], 'sample_data', 'CAM_BACK']: assert part in r.stdout, (part, r.stdout[-2000:])
    from drivenb.nusc import open_nuscenes
    with pytest.raises(KeyError) as e: open_nuscenes(root, 'v1.0-synth')
    assert str(f) in str(e.value) and sd['calibrated_sensor_token'] in str(e.value)
    assert not list((tmp_path / 'frames').glob('frames/*.npz'))

@pytest.mark.parametrize('channel', ['CAM_FRONT_LEFT', 'RADAR_FRONT', 'LIDAR_TOP'])
def test_missing_ego_pose_row(tmp_path, synth_root, channel):
    "The devkit loads fine (it never follows ego_pose while indexing); `convert` checks before the first frame."
    root = _copy_root(tmp_path, synth_root)
    sd = _keyframe_sd(root, channel)
    t, rows = _table(root, 'sample_data')                            # synth shares poses between sensors: point one row elsewhere
    for r in rows:
        if r['token'] == sd['token']: r['ego_pose_token'] = 'f' * 32
    t.write_text(json.dumps(rows))
    with pytest.raises(KeyError) as e: _convert(root, tmp_path / 'frames')
    msg = str(e.value)
    for part in [str(root / 'v1.0-synth' / 'ego_pose.json'), 'f' * 32, f"sample_data {sd['token']} ({channel}"]: assert part in msg, (part, msg)
    assert not list((tmp_path / 'frames').glob('frames/*.npz'))

def test_missing_ego_pose_of_a_radar_sweep(tmp_path, synth_root):
    "A row only an earlier radar sweep (sweeps/) refers to."
    root = _copy_root(tmp_path, synth_root)
    _, sd = _table(root, 'sample_data')
    sw = next(r for r in sd if r['filename'].startswith('sweeps/RADAR_FRONT_LEFT/'))
    sw['ego_pose_token'] = 'e' * 32; (root / 'v1.0-synth' / 'sample_data.json').write_text(json.dumps(sd))
    with pytest.raises(KeyError) as e: _convert(root, tmp_path / 'frames')
    msg = str(e.value)
    for part in [str(root / 'v1.0-synth' / 'ego_pose.json'), 'e' * 32, f"sample_data {sw['token']} (RADAR_FRONT_LEFT"]: assert part in msg, (part, msg)

# --- 3. damaged frames are converted again on rerun ---------------------------------------------------
def _damage(frames_dir):
    "Truncate one frame, overwrite one with junk, drop a key from a third; returns their paths."
    from drivenb.bev.convert import save_frame
    fs = sorted((frames_dir / 'frames').glob('*.npz'))
    b = fs[0].read_bytes(); fs[0].write_bytes(b[:len(b) // 3])
    fs[1].write_bytes(b'\x00' * 100)
    with np.load(fs[2]) as z: d = {k: z[k] for k in z.files if k != 'seg'}
    save_frame(fs[2], d)
    return fs[:3]

def test_rerun_reconverts_damaged_frames(tmp_path, synth_root, frames):
    from drivenb.bev.convert import frame_ok, FRAME_KEYS
    out = tmp_path / 'frames'; shutil.copytree(frames, out)
    n = len(list((out / 'frames').glob('*.npz')))
    bad = _damage(out)
    assert not any(frame_ok(f) for f in bad)
    meta = _convert(synth_root, out)
    assert (meta['reconverted'], meta['converted'], meta['skipped']) == (3, 0, n - 3), meta
    for f in bad:
        assert frame_ok(f)
        with np.load(f) as z: assert set(FRAME_KEYS) <= set(z.files)
    assert json.loads((out / 'meta.json').read_text())['reconverted'] == 3
    assert _convert(synth_root, out)['skipped'] == n                 # all whole now

def test_rerun_reconverts_damaged_frames_cli(tmp_path, frames, synth_root):
    out = tmp_path / 'frames'; shutil.copytree(frames, out)
    _damage(out)
    r = run_cli('drivenb-convert', '--params', write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, synth_root)))
    assert 'reconverted 3 damaged' in r.stdout, r.stdout[-2000:]

def test_truncated_params_json_is_named(tmp_path, synth_root, frames):
    out = tmp_path / 'frames'; shutil.copytree(frames, out)
    pf = out / 'params.json'; pf.write_text(pf.read_text()[:30])
    with pytest.raises(ValueError) as e: _convert(synth_root, out)
    assert str(pf) in str(e.value) and 'truncated' in str(e.value)

# --- 4. the stage as a function of params -------------------------------------------------------------
def test_convert_params_matches_convert(tmp_path, synth_root, frames):
    "`convert_params` on the params that made the `frames` fixture finds nothing to do: the same mapping as `convert`'s arguments."
    from drivenb.bev.convert import convert_params
    from drivenb.io import read_json
    out = tmp_path / 'frames'; shutil.copytree(frames, out)
    pf = write_params(tmp_path / 'p.yaml', tiny_params(tmp_path, synth_root))
    meta = convert_params(pf, progress=False)
    assert meta['skipped'] == meta['frames'] and meta['converted'] == meta['reconverted'] == 0, meta
    assert meta['params'] == read_json(frames / 'meta.json')['params']
    meta = convert_params(str(pf), {'data': {'frames': str(tmp_path / 'f2')}}, limit=2, progress=False)
    assert meta['converted'] == 2 and len(list((tmp_path / 'f2' / 'frames').glob('*.npz'))) == 2
    with pytest.raises(KeyError, match='convert.wrkers'): convert_params(pf, {'convert': {'wrkers': 1}})

def test_main_calls_convert_params(tmp_path, monkeypatch, capsys):
    "The CLI only maps flags to params overrides and calls `convert_params`."
    import drivenb.bev.convert as C
    calls = []
    def fake(params, overrides=None, **kw):
        calls.append((params, overrides, kw))
        return dict(converted=1, reconverted=2, skipped=3, frames=6, seconds=0.1, frames_per_s=30.0, splits={'train': 4, 'val': 2})
    monkeypatch.setattr(C, 'convert_params', fake)
    C.main(params='x.yaml', out='/tmp/out', workers=0, limit=5)
    assert calls == [('x.yaml', {'data': {'frames': '/tmp/out'}, 'convert': {'workers': 0}}, {'limit': 5, 'overwrite': False})]
    assert 'reconverted 2 damaged' in capsys.readouterr().out
