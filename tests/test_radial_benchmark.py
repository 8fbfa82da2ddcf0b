"benchmarks/radial_dsp.py at its `--quick` geometry: every (implementation, output) cell runs, agrees with the official path, and the report carries its tables (no timing asserts)."
import argparse, importlib.util
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'radial_dsp.py'


def _module():
    spec = importlib.util.spec_from_file_location('drivenb_radial_bench', SCRIPT)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_every_cell_runs_agrees_and_reports(tmp_path):
    mod = _module()
    frame = mod.prepare(tmp_path, quick=True)
    threads = torch.get_num_threads()
    try:   # in this process (a fresh process per cell, as the script does, costs ~2 s each): see the next test for that path
        res = {(i, m): mod.bench(dict(impl=i, method=m, threads=1, repeat=1, quick=True, dir=str(tmp_path)))
               for i in mod.IMPLS for m in mod.METHODS}
    finally: torch.set_num_threads(threads)
    assert all(r['seconds'] > 0 and r['rise'] >= 0 for r in res.values()), res
    assert res[('official', 'PC')]['points'] > 3 and len({r['points'] for (i, m), r in res.items() if m == 'PC'}) == 1
    agree = mod.agreement(tmp_path)
    assert set(agree) == {'float64-direct', 'float64', 'complex64'} and all(r['ok'] for r in agree.values()), agree
    assert agree['float64']['RA'] < 1e-12 and agree['float64']['PC'] == 'equal'
    text = mod.report(res, frame, agree, argparse.Namespace(quick=True, threads=1, repeat=1), 'today', ((0, 0, 0), (0, 0, 0)), 1.)
    for h in ('## Time per frame (s) and speed-up over the official CPU path', '## Peak memory of one call',
              '## Agreement with the official CPU path', '## Target', '`tests/test_radial_dsp.py`', '**1 thread(s)**'):
        assert h in text, h
    assert 'failed' not in text and '**no**' not in text
    rows = [l for l in text.splitlines() if l.startswith('| drivenb complex64 (RA slot-FFT) |')]
    assert len(rows) == 4, rows                                    # time, speed-up, memory, agreement
    assert str(tmp_path) not in text


def test_a_cell_runs_in_a_fresh_process(tmp_path):
    mod = _module()
    mod.prepare(tmp_path, quick=True)
    r = mod.run_fresh(dict(impl='complex64', method='RA', threads=1, repeat=1, quick=True, dir=str(tmp_path)), timeout=300)
    assert 'error' not in r and r['seconds'] > 0, r
    assert (tmp_path / 'complex64_RA.npy').is_file()


def test_quick_writes_nothing_unless_asked():
    mod = _module()
    assert mod.out_path(True, None) is None
    assert mod.out_path(False, None) == ROOT / 'docs' / 'benchmarks-radial.md'
    assert mod.out_path(True, 'x.md') == Path('x.md')
