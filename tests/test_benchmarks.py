"benchmarks/run.py: `--quick` runs every kind of measurement end to end and writes a complete report (no timing asserts)."
import importlib.util, re, subprocess, sys
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
    for row in ('| resnet18, camera |', '| resnet18, camera+radar |'):
        line = next(l for l in text.splitlines() if l.startswith(row))
        cells = [c.strip() for c in line.strip('|').split('|')][2:]   # train s, forward s, peak train, peak forward
        assert len(cells) == 4 and all(float(c) >= 0 for c in cells) and float(cells[2]) > 0, line   # parse; peak RSS > 0
    for row in ('| lean (`lift_cameras`) |', '| reference-style (`lift_cameras_reference`) |'):
        line = next(l for l in text.splitlines() if l.startswith(row))
        vals = [float(c) for c in line.strip('|').split('|')[1:]]
        assert len(vals) == 4 and min(vals) >= 0, line
    fps = re.findall(r'^\| (loader, frames converted here|conversion from [^|]+) \| \d+ \([^)]*\) \| ([\d.]+) \|', text, re.M)
    assert len(fps) == 2 and all(float(v) >= 0 for _, v in fps), fps
    assert '- met: loader not the bottleneck' in text or '- **missed**: loader not the bottleneck' in text

def test_quick_writes_nothing_unless_asked():
    mod = _module()
    assert mod.out_path(True, None) is None
    assert mod.out_path(False, None) == ROOT / 'docs' / 'benchmarks.md'
    assert mod.out_path(True, 'x.md') == Path('x.md')
