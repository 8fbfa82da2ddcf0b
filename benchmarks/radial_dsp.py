#!/usr/bin/env python
"""Per-frame cost of drivenb's RADIal signal processing (`drivenb.radial.dsp`) beside the official CPU path, run the same way.

At the official geometry (512 samples x 256 chirps x 16 Rx, 12 Tx, a 751 x 11 calibration table) on one synthetic
frame (`synth_adc`: targets, static clutter, noise), for each implementation and each output:
- RD (raw chips -> range-Doppler spectrum), PC (chips -> point cloud), RA (chips -> range-azimuth map), each from
  the raw chips as the official `RadarSignalProcessing.run()` does, and the chain (chips -> RD once -> PC and RA);
- the median wall time of `--repeat` calls after one warm-up call, with `--threads` threads (torch, OpenMP, MKL and
  OpenBLAS, set before the process starts);
- the peak memory of the call: the rise of the process's peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`
  before the call; else `ru_maxrss`) over its RSS just before the call.
Implementations: "official CPU path" = the independent numpy version of the official `SignalProcessing/rpl.py` steps in
`tests/test_radial_dsp.py` (`ref_rd`, `ref_pc`, `ref_ra` with the whole (n_az, S C) product as `rpl.py` does): the
official library itself is not vendored (it also needs CuPy and mkl_fft); drivenb float64 with the RA map computed
directly (the official operand order), drivenb float64 (default: RA by the slot-FFT identity) and drivenb complex64.
Each (implementation, output) runs in a fresh process; the parent then compares every output with the official path's.

Prints a markdown report; writes it atomically to `--out` (default `docs/benchmarks-radial.md`; with `--quick`, a
tiny geometry that checks the script in seconds, nothing is written unless `--out` is given). Exit status 1 if a
measurement failed or an output differs from the official path's beyond the stated tolerance.

Usage: .venv/bin/python benchmarks/radial_dsp.py [--quick] [--out PATH] [--threads 1] [--repeat 5]
"""
from __future__ import annotations
import argparse, importlib.util, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_TESTS = ROOT / 'tests' / 'test_radial_dsp.py'     # the numpy version of the official steps
MIB = 2**20
OFFICIAL_NOTEBOOK = dict(RD=0.11, PC=0.26, RA=3.4)           # s per frame, CPU, the official notebook (shared/formats.md)
TARGET_SPEEDUP = 3.0                                          # chain, RA included: at least 3x faster than the official path
# implementation -> (label, RadarProcessor options or None for the official path)
IMPLS = {
    'official': ('official CPU path (numpy version of `rpl.py`)', None),
    'float64-direct': ('drivenb float64, RA direct (`ra_method="direct"`)', dict(dtype='complex128', ra_method='direct')),
    'float64': ('drivenb float64 (default, RA slot-FFT)', dict(dtype='complex128', ra_method='fft')),
    'complex64': ('drivenb complex64 (RA slot-FFT)', dict(dtype='complex64', ra_method='fft')),
}
METHODS = ('RD', 'PC', 'RA', 'chain')
# agreement with the official path asked of each implementation: max |a - b| / max |b| for RD and RA
TOLERANCE = {'float64-direct': 1e-9, 'float64': 1e-9, 'complex64': 1e-5}
TARGETS = [[30.2, 5.0, 0.17, 0.0, 50.0], [12.0, 4.0, -0.35, 0.0, 60.0], [71.7, -12.0, -0.42, 0.0, 30.0]]   # m, m/s, rad, rad, amplitude

# ---------------------------------------------------------------------------------------------- worker (subprocess side)
def _rss()->int: return int(Path('/proc/self/statm').read_text().split()[1]) * os.sysconf('SC_PAGE_SIZE')

def _reset_peak()->bool:
    "Reset the kernel's peak RSS of this process (Linux >= 4.0); False where not allowed."
    try: Path('/proc/self/clear_refs').write_text('5'); return True
    except OSError: return False

def _peak(reset_ok:bool)->int:
    if reset_ok:
        for l in Path('/proc/self/status').read_text().splitlines():
            if l.startswith('VmHWM:'): return int(l.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def reference_module():
    "tests/test_radial_dsp.py as a module: its `ref_rd`, `ref_pc`, `ref_ra` are the official CPU path here."
    spec = importlib.util.spec_from_file_location('radial_dsp_reference', REFERENCE_TESTS)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def _geometry(quick:bool):
    from drivenb.radial.radar import RadarGeometry
    return RadarGeometry() if quick else RadarGeometry.official()

def bench(c:dict)->dict:
    "One implementation, one output: median seconds, peak-RSS rise (bytes), number of points; saves the output in `c['dir']`."
    import numpy as np, torch
    from drivenb.radial.radar import load_calibration_table
    torch.set_num_threads(c['threads'])
    g, d = _geometry(c['quick']), Path(c['dir'])
    tab = load_calibration_table(d / 'CalibrationTable.npy')
    chips = dict(np.load(d / 'chips.npz'))
    opts = IMPLS[c['impl']][1]
    if opts is None:                                     # the official CPU path
        ref = reference_module()
        rd_of = lambda: ref.ref_rd(chips, g)[2]
        fns = dict(RD=rd_of, PC=lambda: ref.ref_pc(rd_of(), g, tab), RA=lambda: ref.ref_ra(rd_of(), g, tab, rows=None),
                   chain=lambda: (lambda rd: (ref.ref_pc(rd, g, tab), ref.ref_ra(rd, g, tab, rows=None)))(rd_of()))
    else:
        from drivenb.radial.dsp import RadarProcessor
        rp = RadarProcessor(tab, g, **opts)
        fns = dict(RD=lambda: rp(chips, 'RD'), PC=lambda: rp(chips, 'PC'), RA=lambda: rp(chips, 'RA'),
                   chain=lambda: (lambda rd: (rp.point_cloud(rd), rp.range_azimuth(rd)))(rp.rd(chips)))
    fn = fns[c['method']]
    times, rises = [], []
    for i in range(1 + c['repeat']):
        base = _rss(); ok = _reset_peak()
        t0 = time.perf_counter(); out = fn(); dt = time.perf_counter() - t0
        rises.append(max(0, _peak(ok) - base))
        if i: times.append(dt)
        if i < c['repeat']: del out
    if c['method'] != 'chain':
        out = out.cpu().numpy() if torch.is_tensor(out) else out
        np.save(d / f"{c['impl']}_{c['method']}.npy", out)
    n = len(out[0] if c['method'] == 'chain' else out) if c['method'] in ('PC', 'chain') else None
    return dict(seconds=statistics.median(times), times=times, rise=max(rises), points=n, peak_reset=ok)

def worker(cfg_json:str):
    "Subprocess entry: run one measurement and print `RESULT <json>`."
    print('RESULT ' + json.dumps(bench(json.loads(cfg_json))), flush=True)

# ---------------------------------------------------------------------------------------------- parent side
def run_fresh(c:dict, timeout:int=900)->dict:
    "Run one measurement in a fresh Python process with `c['threads']` threads everywhere; its result, or {'error': ...}."
    t = str(c['threads'])
    env = dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, PYTHONUNBUFFERED='1')
    try:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(c)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f'timed out after {timeout} s')
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode != 0 or not lines:
        return dict(error=f'exit {r.returncode}: ' + (r.stderr.strip().splitlines() or ['no output'])[-1][:300])
    return json.loads(lines[-1][7:])

def prepare(d:Path, quick:bool)->dict:
    "Write the frame (`chips.npz`) and the calibration table into `d`; returns a description of the frame."
    import numpy as np
    from drivenb.radial.radar import calibration_table, save_calibration_table, synth_adc
    g = _geometry(quick)
    tab = calibration_table(g, n_az=151 if quick else 751)
    save_calibration_table(tab, d / 'CalibrationTable.npy')
    targets = [t for t in TARGETS if t[0] < 0.9 * g.max_range]                  # the --quick geometry reaches 51.5 m
    np.savez(d / 'chips.npz', **synth_adc(g, targets, noise=8., seed=0, clutter=20, dc=20.))
    return dict(geometry=g, n_az=tab['Signal'].shape[0], n_el=tab['Signal'].shape[2], targets=len(targets))

def agreement(d:Path)->dict:
    "impl -> {RD, RA: max |x - official| / max |official|, PC: 'equal' or what differs}, from the saved outputs."
    import numpy as np
    res = {}
    ld = lambda i, m: np.load(d / f'{i}_{m}.npy') if (d / f'{i}_{m}.npy').is_file() else None
    for impl in TOLERANCE:
        r = {}
        for m in ('RD', 'RA'):
            a, b = ld(impl, m), ld('official', m)
            r[m] = None if a is None or b is None else float(np.abs(a - b).max() / np.abs(b).max())
        a, b = ld(impl, 'PC'), ld('official', 'PC')
        if a is None or b is None: r['PC'] = None
        elif a.shape != b.shape: r['PC'] = f'{len(a)} points against {len(b)}'
        else:
            same = (a[:, :2] == b[:, :2]).all()
            dang = float(np.abs(a[:, 2:] - b[:, 2:]).max()) if len(a) else 0.
            r['PC'] = 'equal' if same and dang <= 1e-12 else f"same cells: {bool(same)}, max angle difference {np.rad2deg(dang):.2g} deg"
        r['ok'] = all(v is not None and v <= TOLERANCE[impl] for v in (r['RD'], r['RA'])) and r['PC'] is not None and \
            (r['PC'] == 'equal' or impl == 'complex64' and r['PC'].startswith('same cells: True'))
        res[impl] = r
    return res

def _s(v): return '—' if v is None else f'{v:.3f}' if v < 10 else f'{v:.1f}'
def _mib(v): return '—' if v is None else f'{v / MIB:.0f}'

def report(res:dict, frame:dict, agree:dict, args, started:str, load:tuple, seconds:float)->str:
    "The markdown report."
    import torch, numpy as np
    g = frame['geometry']
    get = lambda i, m: res.get((i, m), {})
    L = ['# Benchmarks: RADIal signal processing', '',
         f"> Written by `benchmarks/radial_dsp.py{' --quick' if args.quick else ''}` on {started}; do not edit by hand, run it again.",
         *(['> Tiny geometry (`--quick`): a smoke test, not a measurement.'] if args.quick else []), '',
         f"Machine: {os.cpu_count()} CPU cores ({_cpu()}), no GPU used; Python {platform.python_version()}, torch {torch.__version__}, "
         f"numpy {np.__version__}; **{args.threads} thread(s)** per process (torch, OpenMP, MKL, OpenBLAS). Load average (1, 5, 15 min) "
         f"before / after: {', '.join(f'{x:.2f}' for x in load[0])} / {', '.join(f'{x:.2f}' for x in load[1])} (other jobs share "
         f"this machine; figures vary between runs). Whole run: {seconds / 60:.1f} min.", '',
         f"One synthetic frame (`synth_adc`: {frame['targets']} targets, 20 static clutter scatterers, noise 8 counts rms) at "
         f"{g.samples} samples x {g.chirps} chirps x {g.n_rx} Rx, {g.tx} Tx; calibration table {frame['n_az']} azimuths x "
         f"{frame['n_el']} elevations (synthetic, the official table's size). Each cell: median of {args.repeat} calls after "
         "one warm-up, each call from the raw chips (as the official `run()`), in a fresh process per cell. **The official "
         "CPU path is stood for by the independent numpy version of the `rpl.py` steps in `tests/test_radial_dsp.py`** "
         "(numpy FFTs where `rpl.py` calls `mkl_fft`, the whole `(n_az, S C)` RA product at once as `rpl.py`); the official "
         "library itself is not run here. Chain = chips -> RD once -> point cloud and RA map.", '',
         '## Time per frame (s) and speed-up over the official CPU path', '',
         '| implementation | RD | PC | RA | chain | chain speed-up |', '|---|---:|---:|---:|---:|---:|']
    ref = {m: get('official', m).get('seconds') for m in METHODS}
    for impl, (label, _) in IMPLS.items():
        cells = [_s(get(impl, m).get('seconds')) if 'error' not in get(impl, m) else 'failed' for m in METHODS]
        ours = get(impl, 'chain').get('seconds')
        sp = f'{ref["chain"] / ours:.1f}x' if ours and ref['chain'] else '—'
        L.append(f"| {label} | {' | '.join(cells)} | {'1.0x' if impl == 'official' else sp} |")
    if not args.quick:
        L.append(f"| official notebook (CPU, its machine, threads not stated) | {OFFICIAL_NOTEBOOK['RD']} | "
                 f"{OFFICIAL_NOTEBOOK['PC']} | {OFFICIAL_NOTEBOOK['RA']} | — | |")
    L += ['', 'Speed-up per output (official path time / drivenb time):', '', '| implementation | RD | PC | RA | chain |',
          '|---|---:|---:|---:|---:|']
    for impl in TOLERANCE:
        sp = [f"{ref[m] / get(impl, m)['seconds']:.1f}x" if ref[m] and get(impl, m).get('seconds') else '—' for m in METHODS]
        L.append(f"| {IMPLS[impl][0]} | {' | '.join(sp)} |")
    direct = {m: get('float64-direct', m).get('seconds') for m in ('RA', 'chain')}
    nb_chain = OFFICIAL_NOTEBOOK['PC'] + OFFICIAL_NOTEBOOK['RA'] - OFFICIAL_NOTEBOOK['RD']     # one RD, its PC and RA steps
    L += ['', "numpy here calls OpenBLAS (Haswell kernels) for the RA product, where the official notebook's machine ran "
          f"{OFFICIAL_NOTEBOOK['RA']} s (threads not stated): two more yardsticks, less flattering:"]
    for impl in ('float64', 'complex64'):
        s_ra, s_ch = get(impl, 'RA').get('seconds'), get(impl, 'chain').get('seconds')
        if not (s_ra and s_ch): continue
        vs_direct = f"RA {direct['RA'] / s_ra:.1f}x, chain {direct['chain'] / s_ch:.1f}x" if direct['RA'] and direct['chain'] else '—'
        vs_nb = '' if args.quick else f"; against the official notebook's figures (its CPU; chain = PC + RA - RD = {nb_chain:.2f} s): " \
            f"RA {OFFICIAL_NOTEBOOK['RA'] / s_ra:.1f}x, chain {nb_chain / s_ch:.1f}x"
        L.append(f"- {IMPLS[impl][0]}: against drivenb's direct RA (the official operand order, MKL, this machine): {vs_direct}{vs_nb}.")
    L += ['', '## Peak memory of one call (MiB, rise of peak RSS over the RSS before the call)', '',
          '| implementation | RD | PC | RA | chain |', '|---|---:|---:|---:|---:|']
    for impl, (label, _) in IMPLS.items():
        L.append(f"| {label} | {' | '.join(_mib(get(impl, m).get('rise')) for m in METHODS)} |")
    n = get('official', 'PC').get('points')
    L += ['', f"Points in the cloud: {n}. The input cube alone is {g.samples * g.chirps * g.n_rx * 16 / MIB:.0f} MiB in complex128.", '',
          '## Agreement with the official CPU path', '',
          'RD and RA: max |x - official| / max |official| over the whole output; PC: the same (range, Doppler) cells and angles.', '',
          '| implementation | RD | RA | point cloud | tolerance (RD, RA) | within |', '|---|---:|---:|---|---:|---|']
    for impl, r in agree.items():
        f = lambda v: '—' if v is None else f'{v:.1e}'
        L.append(f"| {IMPLS[impl][0]} | {f(r['RD'])} | {f(r['RA'])} | {r['PC']} | {TOLERANCE[impl]:.0e} | {'yes' if r['ok'] else '**no**'} |")
    L += ['', '## Target', '']
    for impl, s in ((i, get(i, 'chain').get('seconds')) for i in ('float64', 'complex64')):   # the direct RA is the literal reference
        if s and ref['chain']:
            ok = ref['chain'] / s >= TARGET_SPEEDUP
            L.append(f"- {'met' if ok else '**missed**'}: {IMPLS[impl][0]}, chain {ref['chain'] / s:.1f}x faster than the official "
                     f"CPU path (target >= {TARGET_SPEEDUP:.0f}x{', not judged at the --quick size' if args.quick else ''})")
    failed = [f'{i} {m}' for (i, m), r in res.items() if 'error' in r]
    if failed: L.append(f"- **failed measurements**: {', '.join(failed)}")
    L += ['', NOTES]
    return '\n'.join(L)

NOTES = '''## How the RA map got faster

The official RA map correlates the 192-value MIMO vector of every (range, Doppler) cell with the table's elevation-5
rows, `sum_doppler |W x|` (about 1.9e10 complex multiply-adds per frame). The MIMO vector of Doppler bin `d = B a + b`
takes Tx k from bin `B ((a + s_k) mod 16) + b`, so over the slot index `a` the product is a circular correlation of
length 16; a 16-point FFT over the slots turns it into one (n_az, 16 Rx) product per slot frequency, and an inverse
16-point FFT gives back every `W x` exactly (an identity, not an approximation): 16 complex multiply-adds per output
instead of 192 (`drivenb.radial.dsp.range_azimuth_slots`, chapter `nbs/radial/20_dsp.ipynb`). `ra_method="direct"`
keeps the official operand order.'''

def _cpu()->str:
    return next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')),
                platform.processor())

def out_path(quick:bool, out:str|None)->Path|None:
    "Where the report goes: `out` if given, else docs/benchmarks-radial.md for a full run and nowhere for `--quick`."
    return Path(out) if out else (None if quick else ROOT / 'docs' / 'benchmarks-radial.md')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='tiny geometry (seconds): checks that the script works')
    ap.add_argument('--out', default=None, help='markdown file to write (default docs/benchmarks-radial.md; with --quick: none)')
    ap.add_argument('--threads', type=int, default=1, help='threads per measurement process (torch, OpenMP, MKL, OpenBLAS)')
    ap.add_argument('--repeat', type=int, default=5, help='timed calls per cell (after one warm-up call)')
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker: return worker(args.worker)
    if args.threads < 1 or args.repeat < 1: ap.error('--threads and --repeat must be >= 1')
    out = out_path(args.quick, args.out)
    started = datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    load0, t_start = os.getloadavg(), time.time()
    say = lambda *a: print(*a, file=sys.stderr, flush=True)
    res = {}
    with tempfile.TemporaryDirectory(prefix='drivenb-radial-bench-') as tmp:
        d = Path(tmp)
        frame = prepare(d, args.quick)
        for impl in IMPLS:
            for m in METHODS:
                r = run_fresh(dict(impl=impl, method=m, threads=args.threads, repeat=args.repeat, quick=args.quick, dir=tmp))
                res[(impl, m)] = r
                say(f'{impl} {m}: ' + (r['error'] if 'error' in r else f"{r['seconds']:.3f} s, peak rise {r['rise'] / MIB:.0f} MiB"))
        agree = agreement(d)
    text = report(res, frame, agree, args, started, (load0, os.getloadavg()), time.time() - t_start)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmpf = tempfile.mkstemp(dir=out.parent, prefix=f'.{out.name}.', suffix='.tmp')
        with os.fdopen(fd, 'w') as f: f.write(text + '\n')
        os.replace(tmpf, out)
        say(f'wrote {out}')
    bad = [k for k, r in res.items() if 'error' in r] + [i for i, r in agree.items() if not r['ok']]
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main())
