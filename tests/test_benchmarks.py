"benchmarks/run.py: `--quick` runs every kind of measurement end to end and writes a complete report (no timing asserts)."
import importlib.util, re, subprocess, sys
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'run.py'

def _module():
    spec = importlib.util.spec_from_file_location('drivenb_bench', SCRIPT)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_quick_run_writes_a_full_report(tmp_path):
    out = tmp_path / 'bench.md'
    r = subprocess.run([sys.executable, str(SCRIPT), '--quick', '--out', str(out)], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    text = out.read_text()
    assert r.stdout == text + '\n'                                   # printed and written: the same report
    assert not list(tmp_path.glob('.bench.md.*'))                    # no temp file left by the atomic write
    for heading in ('## Parameters', '## Train step, forward and peak memory', '## Lifting alone',
                    '## Data: loading and conversion', '## Targets', '## Not measured here'):
        assert heading in text, heading
    assert 'Load average' in text and 'no GPU' in text
    # the parameter table carries the official counts, and they agree
    assert '| resnet101 | 37,038,272 | 1,179,648 | 3,830,788 | 42,048,711 | 42,048,711 (equal) |' in text
    assert '| resnet101, radar |' in text and '**differs**' not in text
    # every measurement ran and gave positive numbers
    assert 'failed' not in text
    # no path of this machine in the report: the reference is cited from the repository root, temp folders are not named
    assert '(`../shared/reference-figures.md`)' in text
    for p in (str(ROOT), str(ROOT.parent) + '/', str(tmp_path), 'drivenb-bench-'):
        assert p not in text, p
    # every measurement ran and gave positive figures, in the documented tables
    def row(label):
        "The cells after the label of the one table row starting with `label`."
        lines = [l for l in text.splitlines() if l.startswith(label)]
        assert len(lines) == 1, (label, lines)
        return [c.strip() for c in lines[0].strip('|').split('|')[1:]]
    train_s = {}
    for name in ('resnet18, camera', 'resnet18, camera+radar'):
        cells = row(f'| {name} |')                         # params, train step s, forward s, peak train GiB, peak forward GiB
        assert len(cells) == 5 and int(cells[0].replace(',', '')) > 0, cells
        vals = [float(c) for c in cells[1:]]
        assert all(v > 0 for v in vals), (name, vals)      # times and peak RSS are positive (printed so: `_num`)
        train_s[name] = vals[0]
    for label in ('| lean (`lift_cameras`) |', '| reference-style (`lift_cameras_reference`) |'):
        vals = [float(c) for c in row(label)]               # forward s, forward+backward s, rise forward, rise both
        assert len(vals) == 4 and vals[0] > 0 and vals[1] > 0, (label, vals)
        assert vals[2] >= 0 and vals[3] >= 0, (label, vals)  # a rise of peak RSS: clamped at 0 when the peak was reached before
    fps = dict(re.findall(r'^\| (loader, frames converted here|conversion from [^|]+) \| \d+ \([^)]*\) \| ([\d.]+) \|', text, re.M))
    assert len(fps) == 2 and all(float(v) > 0 for v in fps.values()), fps
    # the loader's verdict follows from the figures printed beside it (whichever way it goes on this machine)
    loader = float(fps['loader, frames converted here'])
    m = re.search(r"x the fastest step's consumption \(([^:]+): ([\d.]+) frames/s\)", text)
    assert m, 'loader row without the train step it is compared with'
    fastest, consumed = m[1], float(m[2])
    # the printed times are rounded to 2 decimals: a tie there may name either step
    assert fastest in train_s and train_s[fastest] == min(train_s.values()), (fastest, train_s)
    assert consumed == pytest.approx(1 / train_s[fastest], rel=0.1, abs=0.01), (consumed, train_s)
    verdicts = re.findall(r'^- (met|\*\*missed\*\*): loader not the bottleneck, loader frames/s > fastest train step frames/s$', text, re.M)
    assert len(verdicts) == 1, verdicts
    if abs(loader - consumed) > 0.1:                        # outside the rounding of the printed figures
        assert verdicts[0] == ('met' if loader > consumed else '**missed**'), (verdicts, loader, consumed)

def test_quick_writes_nothing_unless_asked():
    mod = _module()
    assert mod.out_path(True, None) is None
    assert mod.out_path(False, None) == ROOT / 'docs' / 'benchmarks.md'
    assert mod.out_path(True, 'x.md') == Path('x.md')
