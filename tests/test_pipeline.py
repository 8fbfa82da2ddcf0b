"End to end through the console scripts, as a user runs the study: convert -> train -> evaluate."
import json
from pathlib import Path
import pytest
from conftest import tiny_params, write_params, run_cli

@pytest.mark.parametrize('script', ['drivenb-synth', 'drivenb-convert', 'drivenb-train', 'drivenb-evaluate'])
def test_help(script):
    r = run_cli(script, '--help')
    assert 'usage' in r.stdout.lower() and '--' in r.stdout

def test_convert_train_evaluate(tmp_path, synth_root):
    p = tiny_params(tmp_path, synth_root)
    pf = write_params(tmp_path / 'params.yaml', p)
    r = run_cli('drivenb-convert', '--params', pf)
    assert 'converted 8' in r.stdout, r.stdout
    meta = json.loads((tmp_path / 'frames' / 'meta.json').read_text())
    assert meta['splits'] == {'train': 4, 'val': 4}
    r = run_cli('drivenb-convert', '--params', pf)                   # idempotent: nothing to do
    assert 'converted 0, reconverted 0 damaged and skipped 8' in r.stdout, r.stdout
    run_cli('drivenb-train', '--params', pf, '--no_progress')
    for f in ['best.pt', 'last.pt', 'summary.json', 'dvclive/metrics.json']: assert (tmp_path / 'run' / f).is_file(), f
    s = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert s['steps'] == 3 and 0 <= s['best_iou'] <= 1
    r = run_cli('drivenb-train', '--params', pf, '--no_progress')    # resumes from last.pt: nothing left to do
    assert 'resumed from' in r.stdout and 'trained 3 steps' in r.stdout, r.stdout
    r = run_cli('drivenb-evaluate', '--params', pf)
    m = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert {'iou', 'iou_0_20m', 'iou_20_35m', 'iou_35_50m', 'frames'} <= set(m) and m['frames'] == 4
    assert (tmp_path / 'eval' / 'figures' / 'frame_00.png').stat().st_size > 10_000
    assert len((tmp_path / 'eval' / 'per_frame.csv').read_text().splitlines()) == 5

def test_cpu_runs_reproduce(tmp_path, frames):
    "Same params, same seed on CPU -> the same losses and metrics."
    from drivenb.train import train
    outs = []
    for k in range(2):
        p = tiny_params(tmp_path / str(k), Path('unused'))
        p['data']['frames'] = str(frames)
        outs.append(train(p, progress=False))
    assert outs[0]['val'] == outs[1]['val'] and outs[0]['best_iou'] == outs[1]['best_iou']
    a = json.loads((tmp_path / '0' / 'run' / 'dvclive' / 'metrics.json').read_text())
    b = json.loads((tmp_path / '1' / 'run' / 'dvclive' / 'metrics.json').read_text())
    assert a == b
