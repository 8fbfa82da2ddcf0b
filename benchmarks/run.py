#!/usr/bin/env python
"""Costs of drivenb's Simple-BEV on this machine, beside the official release's (../shared/reference-figures.md from the repository root).

Measures, each configuration in a fresh subprocess with `--threads` torch threads (2 by default):
- the train step (forward + seg/center/offset loss + backward + grad clip 5 + AdamW, batch 1, 6 cameras),
  the forward pass (eval mode, no_grad) and the peak memory (ru_maxrss of the process: imports, model,
  warm-up and steps included) for resnet18/50/101 at 224x400 with the 200x8x200 grid, latent 128,
  camera only and camera + radar; median of `--steps` steps after one warm-up step;
- the lifting alone, (1, 6, 128, 28, 50) features into 128 x 200 x 8 x 200: `lift_cameras` (lean) and
  `lift_cameras_reference` (the official all-cameras formulation), forward (no_grad) and forward + backward,
  time and the rise of peak RSS over the RSS just before the first call;
- the data loader (`FrameDataset` + `DataLoader`, batch 1, in-process as `train.workers: 0`) in frames/s,
  on `build/frames` if present and on frames converted here at the benchmark size, against the frames/s a
  train step consumes;
- conversion (`drivenb.convert.convert`, one process) in frames/s, from `data/nuscenes-synth` if present,
  else from a small dataset made with `drivenb.synth.generate` in a temporary folder.

Prints a markdown report and writes it atomically to `--out` (default `docs/benchmarks.md`; with `--quick`,
which runs tiny configurations in seconds to check that everything works, nothing is written unless `--out`
is given). Exit status 1 if any measurement failed.

Usage: .venv/bin/python benchmarks/run.py [--quick] [--out PATH] [--threads 2] [--steps 3] [--only SUBSTRING]
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
REFERENCE_DOC = '../shared/reference-figures.md'   # relative to the repository root: no path of one machine in the report

# Official Simple-BEV (commit be46f0e) on 2 CPU cores, torch 2.14, 2 threads, batch 1, 6 cameras, 200x8x200:
# `REFERENCE_DOC`. Keys: (encoder, radar).
REFERENCE = {
    ('resnet101', False): dict(params=42_048_711, train_s=18.6, forward_s=6.7, train_gib=6.17, forward_gib=4.20),
    ('resnet101', True): dict(params=42_049_863, train_s=19.6, forward_s=6.7, train_gib=6.26, forward_gib=4.20),
    ('resnet50', False): dict(params=23_056_583, train_s=14.8, forward_s=5.7, train_gib=5.56, forward_gib=4.21),
}
REFERENCE_LIFT = dict(forward_s=3.1, train_s=4.6, rise_gib=4.4)   # official lifting alone, (6,128,28,50) -> 128x200x8x200
OFFICIAL_PARAMS = {'resnet50': 23_056_583, 'resnet101': 42_048_711, 'resnet101, radar': 42_049_863,
                   'efficientnet_b0, neck 128': 6_201_319}
OFFICIAL_PARTS = dict(encoder=37_038_272, compressor=1_179_648, decoder=3_830_788)   # resnet101, camera only
TARGET_TIME, TARGET_MEM = 0.8, 0.6     # train step <= 0.8 x reference time; peak RSS <= 0.6 x reference

# ---------------------------------------------------------------------------------------------- configurations
def plan(quick:bool, steps:int)->dict:
    "The measurements to run: lists of worker configs (dicts) for models, lifting, conversion and loading."
    if quick:
        size, grid, latent, encoders, C, feat_hw, frames, conv_size, conv_grid = (64, 112), (32, 4, 32), 16, ['resnet18'], 16, (8, 14), 4, (48, 80), (32, 2, 32)
        steps = 1
    else:
        size, grid, latent, encoders, C, feat_hw, frames, conv_size, conv_grid = (224, 400), (200, 8, 200), 128, ['resnet18', 'resnet50', 'resnet101'], 128, (28, 50), 40, (224, 400), (200, 8, 200)
    models = [dict(kind='model', encoder=e, size=size, grid=grid, latent=latent, radar=r, mode=m, steps=steps, warmup=1)
              for e in encoders for r in (False, True) for m in ('train', 'forward')]
    lifting = [dict(kind='lifting', formulation=f, mode=m, C=C, feat_hw=feat_hw, size=size, grid=grid, steps=steps, warmup=1)
               for f in ('lean', 'reference') for m in ('forward', 'train')]
    convert = dict(kind='convert', frames=frames, size=conv_size, grid=conv_grid, quick=quick)
    return dict(models=models, lifting=lifting, convert=convert, loader_frames=frames)

def model_name(c:dict)->str: return f"{c['encoder']}, {'camera+radar' if c['radar'] else 'camera'}"

# ---------------------------------------------------------------------------------------------- workers (subprocess side)
def _peak_gib()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB   # ru_maxrss: KiB on Linux
def _rss_gib()->float: return int(Path('/proc/self/statm').read_text().split()[1]) * os.sysconf('SC_PAGE_SIZE') / GIB

def _rig(size):
    "(1, 6, 3, 3) intrinsics at `size` (H, W) and (1, 6, 4, 4) cams_T_ego of the synthetic nuScenes rig, float32."
    import numpy as np, torch
    from drivenb.synth.rig import sensor_rig
    from drivenb.nusc import CAMERAS
    from drivenb.geometry import invert_T
    rig = sensor_rig(size[1], size[0])
    K = torch.tensor(np.stack([rig[c]['K'] for c in CAMERAS]), dtype=torch.float32)[None]
    T = torch.tensor(np.stack([invert_T(rig[c]['ego_T_sensor']) for c in CAMERAS]), dtype=torch.float32)[None]
    return K, T

def _grid(shape):
    from drivenb.geometry import VoxelGrid
    return VoxelGrid(((-50, 50), (-50, 50), (-4.5, 5.5)), tuple(shape))

def _timed(fn, warmup:int, steps:int)->list:
    "Wall seconds of `steps` calls of `fn` after `warmup` calls."
    out = []
    for i in range(warmup + steps):
        t0 = time.perf_counter(); fn(); dt = time.perf_counter() - t0
        if i >= warmup: out.append(dt)
    return out

def bench_model(c:dict)->dict:
    "Train step or no_grad forward of a Segnet: median seconds, params, peak RSS (GiB) of this process."
    import torch
    from drivenb.bev.model import Segnet
    K, T = _rig(c['size'])
    F, _, L = c['grid']
    torch.manual_seed(0)
    kw = {'recompute': tuple(c['recompute'])} if 'recompute' in c else {}        # default: the library's
    net = Segnet(_grid(c['grid']), encoder=c['encoder'], latent_dim=c['latent'], use_radar=c['radar'], **kw)
    params = sum(p.numel() for p in net.parameters())
    imgs = torch.rand(1, 6, 3, *c['size'])                                      # B,S,3,H,W in [0, 1]
    occ = (torch.rand(1, 1, F, L) > 0.97).float() if c['radar'] else None       # B,1,F,L radar occupancy
    tg = dict(seg=(torch.rand(1, 1, F, L) > 0.9).float(), center=torch.rand(1, 1, F, L),
              offset=torch.randn(1, 2, F, L), valid=torch.ones(1, 1, F, L))
    if c['mode'] == 'train':
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-7)
        def once():
            opt.zero_grad(set_to_none=True)
            total, _ = net.loss(net(imgs, K, T, occ), tg)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
    else:
        net.eval()
        def once():
            with torch.no_grad(): net(imgs, K, T, occ)
    times = _timed(once, c['warmup'], c['steps'])
    return dict(params=params, seconds=statistics.median(times), times=times, peak_gib=_peak_gib())

def bench_lifting(c:dict)->dict:
    "Lifting alone, forward (no_grad) or forward + backward: median seconds and the rise of peak RSS over the RSS before it."
    import torch
    from drivenb.bev.lifting import lift_cameras, lift_cameras_reference, fold_vertical
    K, T = _rig(c['size'])
    grid = _grid(c['grid'])
    fn = lift_cameras if c['formulation'] == 'lean' else lift_cameras_reference
    torch.manual_seed(0)
    feats = torch.randn(1, 6, c['C'], *c['feat_hw'])                            # B,S,C,Hf,Wf
    n0, n1, n2 = grid.shape
    w = torch.randn(1, c['C'] * n1, n0, n2) if c['mode'] == 'train' else None  # the gradient a BEV compressor sends back
    def once():
        if c['mode'] == 'train':
            x = feats.clone().requires_grad_()
            fold_vertical(fn(x, K, c['size'], T, grid)).backward(w)
        else:
            with torch.no_grad(): fn(feats, K, c['size'], T, grid)
    base = _rss_gib()
    times = _timed(once, c['warmup'], c['steps'])
    return dict(seconds=statistics.median(times), times=times, rise_gib=max(0.0, _peak_gib() - base), peak_gib=_peak_gib())

def bench_convert(c:dict)->dict:
    "Convert `frames` keyframes (one process) into `c['out']`; frames/s includes opening the dataset tables."
    from drivenb.bev.convert import convert
    src, version = ROOT / 'data' / 'nuscenes-synth', 'v1.0-synth'
    if c['quick'] or not (src / version / 'sample.json').is_file():
        from drivenb.synth.writers import generate
        src = Path(c['out']).parent / 'raw'
        generate(src, n_scenes=2, n_keyframes=max(2, c['frames'] // 2), seed=1, width=128 if c['quick'] else 256,
                 height=72 if c['quick'] else 144, progress=False)
    t0 = time.perf_counter()
    meta = convert(src, version, c['out'], image_size=tuple(c['size']), grid=_grid(c['grid']), radar_sweeps=3,
                   workers=0, limit=c['frames'], progress=False)
    dt = time.perf_counter() - t0
    return dict(source=str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else 'synthetic (drivenb.synth.generate, temporary)',
                frames=meta['converted'], seconds=dt, fps=meta['converted'] / dt)

def bench_loader(c:dict)->dict:
    "Read `frames` converted frames through FrameDataset + DataLoader (batch 1, in-process); frames/s after a 2-frame warm-up."
    from torch.utils.data import DataLoader, Subset
    from drivenb.bev.data import FrameDataset
    ds = None
    for split in ('train', 'val'):
        try: ds = FrameDataset(c['root'], split); break
        except ValueError: continue                                             # empty split
    if ds is None: raise ValueError(f"no non-empty split in {c['root']}")
    n = min(len(ds), c['frames'])
    for _ in DataLoader(Subset(ds, range(min(2, n))), batch_size=1): pass
    t0 = time.perf_counter()
    for _ in DataLoader(Subset(ds, range(n)), batch_size=1, num_workers=0): pass
    dt = time.perf_counter() - t0
    p = ds.meta['params']
    return dict(frames=n, seconds=dt, fps=n / dt, image_size=p['image_size'], grid=p['grid']['shape'])

WORKERS = dict(model=bench_model, lifting=bench_lifting, convert=bench_convert, loader=bench_loader)

def worker(cfg_json:str):
    "Subprocess entry: run one measurement and print `RESULT <json>`."
    c = json.loads(cfg_json)
    import torch
    torch.set_num_threads(c['threads'])
    print('RESULT ' + json.dumps(WORKERS[c['kind']](c)), flush=True)

# ---------------------------------------------------------------------------------------------- parent side
def run_fresh(c:dict, threads:int, timeout:int=900)->dict:
    "Run one config in a fresh Python process with `threads` threads; returns its result dict, or {'error': ...}."
    c = dict(c, threads=threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(c)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f'timed out after {timeout} s')
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode != 0 or not lines:
        return dict(error=f'exit {r.returncode}: ' + (r.stderr.strip().splitlines() or ['no output'])[-1][:300])
    return dict(json.loads(lines[-1][7:]), wall=time.time() - t0)

def param_rows()->list:
    "Parameter counts per part of Segnet on the 200x8x200 grid, latent 128 (built on the meta device), with the official totals."
    import torch
    from drivenb.bev.model import Segnet
    count = lambda m: sum(p.numel() for p in m.parameters())
    rows = []
    for name, kw in [('resnet18', {}), ('resnet50', {}), ('resnet101', {}), ('resnet101, radar', dict(use_radar=True)),
                     ('efficientnet_b0', {}), ('efficientnet_b0, neck 128', dict(neck_channels=128)), ('convnext_tiny', {})]:
        with torch.device('meta'): net = Segnet(_grid((200, 8, 200)), encoder=name.split(',')[0], **kw)
        rows.append(dict(name=name, encoder=count(net.encoder), compressor=count(net.bev_compressor), decoder=count(net.decoder),
                         total=count(net), official=OFFICIAL_PARAMS.get(name)))
    return rows

def _ratio(ours, ref): return None if ref is None or ours is None else ours / ref

def _num(v:float|None)->str:
    "Two decimals, or two significant digits below 0.1, so that a positive figure never prints as 0.00 (`--quick` sizes)."
    return '—' if v is None else f'{v:.2f}' if v == 0 or abs(v) >= 0.1 else f'{v:.2g}'

def _cell(ours, ref=None, target=None)->str:
    "`ours` or `ours / ref = ratio x` with a verdict against `target` (a maximum ratio)."
    if ours is None: return '—'
    if ref is None: return _num(ours)
    r = ours / ref
    verdict = '' if target is None else (' ok' if r <= target else ' **missed**')
    return f"{_num(ours)} / {_num(ref)} = {r:.2f}x{verdict}"

def _machine()->str:
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor())
    mem = next((int(l.split()[1]) * 1024 / GIB for l in Path('/proc/meminfo').read_text().splitlines() if l.startswith('MemTotal')), 0)
    return f"{os.cpu_count()} CPU cores ({cpu}), {mem:.0f} GiB RAM, no GPU used"

def _git()->str:
    try:
        h = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'drivenb'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return h + (' + uncommitted changes in drivenb/' if dirty else '')
    except OSError: return 'unknown'

def report(res:dict, quick:bool, args, load_before, load_after, started:str, seconds:float)->str:
    "The markdown report."
    import torch
    L = []
    models, lifts = res['models'], res['lifting']
    get = lambda enc, radar, mode: next(({'seconds': None, **r} if 'error' in r else r for c, r in models
                                         if c['encoder'] == enc and c['radar'] == radar and c['mode'] == mode), {})
    c0 = models[0][0]
    size, grid = 'x'.join(map(str, c0['size'])), 'x'.join(map(str, c0['grid']))
    L += ['# Benchmarks', '',
          f"> Written by `benchmarks/run.py{' --quick' if quick else ''}` (`make bench`) on {started}; do not edit by hand, run it again.",
          *(['> Tiny configurations (`--quick`): a smoke test, not a measurement.'] if quick else []), '',
          f"Machine: {_machine()}; Python {platform.python_version()}, torch {torch.__version__}, {args.threads} threads per "
          f"process; drivenb {_git()}. **Load average** (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {', '.join(f'{x:.2f}' for x in load_after)} (other jobs share this machine: figures vary by up to ~1.5x "
          f"between runs, and the reference's were measured on another day). Whole run: {seconds / 60:.1f} min.", '',
          'Reference = the official Simple-BEV release (commit be46f0e) measured the same way on this kind of machine '
          f'(`{REFERENCE_DOC}`). Each configuration runs in a fresh process: one warm-up step, then the '
          f'median of {models[0][0]["steps"]}; peak RSS = `ru_maxrss` of that process (imports, model, warm-up included; '
          'importing torch + timm alone is about 0.8 GiB). Targets: train step at most '
          f'{TARGET_TIME}x the reference time, peak memory at most {TARGET_MEM}x the reference, the loader never the bottleneck.', '']
    # parameters
    L += ['## Parameters', '',
          "Segnet on the 200x8x200 grid, latent 128 (built on the meta device). \"Official\" is the official release's count "
          "where it has that encoder (it has no resnet18 or convnext; its EfficientNet-b0 encoder has a 128-channel neck).", '',
          '| encoder | image encoder | BEV compressor | decoder + heads | total (with 3 loss weights) | official total |',
          '|---|---:|---:|---:|---:|---:|']
    for r in res['params']:
        off = f"{r['official']:,}" + (' (equal)' if r['official'] == r['total'] else ' (**differs**)') if r['official'] else '—'
        L.append(f"| {r['name']} | {r['encoder']:,} | {r['compressor']:,} | {r['decoder']:,} | {r['total']:,} | {off} |")
    L += ['', f"Official resnet101 parts: encoder {OFFICIAL_PARTS['encoder']:,}, BEV compressor {OFFICIAL_PARTS['compressor']:,}, "
          f"decoder + heads {OFFICIAL_PARTS['decoder']:,}: equal part by part.", '']
    # models
    L += [f'## Train step, forward and peak memory ({size} images, 6 cameras, {grid} grid, latent {c0["latent"]}, batch 1)', '',
          'Cells read `ours / reference = ratio`. Train step: forward + seg/center/offset loss + backward + grad clip 5 + AdamW. '
          'Forward: eval mode, `no_grad`. A train step consumes 1 / (train step s) frames/s.', '',
          '| config | params | train step s | forward s | peak RSS train GiB | peak RSS forward GiB |', '|---|---:|---:|---:|---:|---:|']
    verdicts = []
    for enc, radar in dict.fromkeys((c['encoder'], c['radar']) for c, _ in models):
        tr, fw = get(enc, radar, 'train'), get(enc, radar, 'forward')
        ref = REFERENCE.get((enc, radar)) if not quick else None
        rg = lambda k: ref[k] if ref else None
        L.append(f"| {enc}, {'camera+radar' if radar else 'camera'} | {tr.get('params', fw.get('params', 0)):,} | "
                 f"{_cell(tr.get('seconds'), rg('train_s'), target=TARGET_TIME)} | {_cell(fw.get('seconds'), rg('forward_s'))} | "
                 f"{_cell(tr.get('peak_gib'), rg('train_gib'), target=TARGET_MEM)} | {_cell(fw.get('peak_gib'), rg('forward_gib'), target=TARGET_MEM)} |")
        if ref:
            for what, ours, k, t in (('train step time', tr.get('seconds'), 'train_s', TARGET_TIME),
                                     ('peak RSS (train)', tr.get('peak_gib'), 'train_gib', TARGET_MEM),
                                     ('peak RSS (forward)', fw.get('peak_gib'), 'forward_gib', TARGET_MEM)):
                verdicts.append((f"{enc}, {'camera+radar' if radar else 'camera'}: {what}", ours is not None and ours / ref[k] <= t,
                                 f"{_ratio(ours, ref[k]) or float('nan'):.2f}x (target <= {t}x)"))
    L += ['', '`resnet18` and `resnet50, camera+radar` have no reference figure.' if not quick else '', '']
    # lifting
    lc = lifts[0][0]
    L += [f"## Lifting alone ((1, 6, {lc['C']}, {lc['feat_hw'][0]}, {lc['feat_hw'][1]}) features into {lc['C']} x {grid})", '',
          '`lean` is `lift_cameras` (what Segnet uses); `reference-style` is `lift_cameras_reference`, the official all-cameras '
          'formulation ported into drivenb; `official` is the official release (reference-figures.md). Memory is the rise of '
          'peak RSS over the RSS just before the first call.', '',
          '| formulation | forward s (no_grad) | forward + backward s | peak rise forward GiB | peak rise forward + backward GiB |',
          '|---|---:|---:|---:|---:|']
    lget = lambda f, m: next((r for c, r in lifts if c['formulation'] == f and c['mode'] == m), {})
    for f, label in (('lean', 'lean (`lift_cameras`)'), ('reference', 'reference-style (`lift_cameras_reference`)')):
        fw, tr = lget(f, 'forward'), lget(f, 'train')
        L.append(f"| {label} | {_num(fw.get('seconds'))} | {_num(tr.get('seconds'))} | {_num(fw.get('rise_gib'))} | {_num(tr.get('rise_gib'))} |")
    if not quick:
        L.append(f"| official (reference-figures.md) | {REFERENCE_LIFT['forward_s']} | {REFERENCE_LIFT['train_s']} | "
                 f"{REFERENCE_LIFT['rise_gib']} (forward or both: not stated) | |")
    L.append('')
    # data
    trains = [(model_name(c), r['seconds']) for c, r in models if c['mode'] == 'train' and 'seconds' in r]
    fastest = min(trains, key=lambda x: x[1]) if trains else None
    L += ['## Data: loading and conversion', '',
          'Loader: `FrameDataset` + `DataLoader` (batch 1, `num_workers=0`, i.e. in the training process, as `train.workers: 0`), '
          'files in the page cache (160 training frames fit in it). Conversion: `drivenb.convert.convert` in one process '
          '(`convert.workers` spreads it over processes), from the source named; frames/s includes opening the tables.', '',
          '| what | frames (image size, grid) | frames/s | ms per frame | against the train step |', '|---|---|---:|---:|---|']
    load_ok = None
    for key, label in (('loader_bench', 'loader, frames converted here'), ('loader_build', 'loader, `build/frames` (the study\'s params)')):
        r = res.get(key)
        if r is None: continue
        if 'error' in r: L.append(f"| {label} | | failed: {r['error']} | | |"); load_ok = False; continue
        vs = ''
        if fastest and key == 'loader_bench':
            cons = 1 / fastest[1]
            vs = f"{r['fps'] / cons:.0f}x the fastest step's consumption ({fastest[0]}: {cons:.2f} frames/s); in-process it adds {1000 / r['fps']:.0f} ms = {100 / r['fps'] / fastest[1]:.1f} % to that step"
            load_ok = r['fps'] > cons
        elif fastest:
            vs = '(smaller frames than the configurations above)'
        L.append(f"| {label} | {r['frames']} ({'x'.join(map(str, r['image_size']))}, {'x'.join(map(str, r['grid']))}) | {r['fps']:.1f} | {1000 / r['fps']:.0f} | {vs} |")
    cv = res['convert']
    if 'error' in cv: L.append(f"| conversion | | failed: {cv['error']} | | |")
    else:
        cc = res['plan']['convert']
        L.append(f"| conversion from `{cv['source']}` | {cv['frames']} ({'x'.join(map(str, cc['size']))}, {'x'.join(map(str, cc['grid']))}) | "
                 f"{cv['fps']:.1f} | {1000 / cv['fps']:.0f} | one-off, before training |")
    if load_ok is not None:
        verdicts.append(('loader not the bottleneck', load_ok, 'loader frames/s > fastest train step frames/s'))
    L.append('')
    # verdicts
    L += ['## Targets', '']
    if quick: L.append('(`--quick`: no reference at these sizes; only the loader is judged.)')
    for what, ok, detail in verdicts: L.append(f"- {'met' if ok else '**missed**'}: {what}, {detail}")
    failed = [model_name(c) + ' ' + c['mode'] for c, r in models if 'error' in r] + \
             [f"lifting {c['formulation']} {c['mode']}" for c, r in lifts if 'error' in r]
    if failed: L.append(f"- **failed measurements**: {', '.join(failed)}")
    L += ['', STATIC_NOTES, '']
    return '\n'.join(L)

STATIC_NOTES = '''## How the memory target is met

Where a resnet101 train step's memory went (224x400, camera only) before the changes below: importing torch +
timm (about 0.8 GiB, mostly shared libraries), model + gradients + AdamW state (0.67 GiB), and at the end of
the forward pass about 2.1 GiB of activations kept for the backward: 1.47 GiB in the image encoder (stem 0.09,
`layer1` 0.33, `layer2` 0.24, `layer3` 0.67, neck 0.15), 0.2 GiB in the BEV compressor (its input is the
164 MB `(1, 1024, 200, 200)` folded voxel tensor), 0.3 GiB in the decoder and heads, and 0.17 GiB of
per-camera lifting samples. glibc's heap keeps freed memory, so the RSS rose another ~0.5 GiB above the live
tensors: 3.9-4.1 GiB, 0.63-0.66x the reference. Two changes, neither of which changes a number of the model:

- `lift_cameras` has its own backward (`_LiftFunction`, 45_lifting): it keeps only the features and the
  per-camera sampling grids (autograd through `index_add_` kept every camera's `(C, Nv)` samples), and its
  backward makes no `(B, C, N)` temporary. Outputs and gradients are bit-identical to before (also checked
  at this size); the lifting alone got faster too.
- The image encoder's stride-4 and stride-8 stages (resnet `layer1`, `layer2`: 0.57 GiB of activations, 12 %
  of the encoder's FLOPs) recompute their activations in the backward pass (`Segnet(recompute=(4, 8))`, the
  default; 50_model). Batch-norm running statistics are put back after the recomputation, so outputs,
  gradients and statistics are bit-identical (checked in 50_model). Measured A/B on this machine (resnet101,
  camera, two runs each): 3.25 against 3.8 GiB peak RSS for 9.5 against 9.1 s per step. `recompute=()` keeps
  every activation.

Tried and not kept: a fixed glibc mmap threshold (`mallopt(M_MMAP_THRESHOLD, 1 MiB)`, which the library could
set) stops the heap growth (-0.5 GiB) but costs ~3.5 s per resnet101 step in page faults; `MALLOC_ARENA_MAX=1`
and `malloc_trim` once per step did not help.

## Not measured here

- GPU: this session had no GPU, so nothing here says how drivenb compares with the official code on a GPU
  (the paper's setting: 448x800, batch 8, bf16). The lifting and the recomputation run on CUDA unchanged;
  on a GPU with memory to spare `recompute=()` is likely the faster choice.
- 448x800 images and EfficientNet encoders (in the reference table) are not in this run.'''

def out_path(quick:bool, out:str|None)->Path|None:
    "Where the report goes: `out` if given, else docs/benchmarks.md for a full run and nowhere for `--quick`."
    return Path(out) if out else (None if quick else ROOT / 'docs' / 'benchmarks.md')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='tiny configurations (seconds): checks that the script works')
    ap.add_argument('--out', default=None, help='markdown file to write (default docs/benchmarks.md; with --quick: none)')
    ap.add_argument('--threads', type=int, default=2, help='torch threads per measurement process')
    ap.add_argument('--steps', type=int, default=3, help='timed steps per configuration (after one warm-up)')
    ap.add_argument('--only', default=None, help='run only model configs whose "encoder, camera[+radar] mode" contains this')
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker: return worker(args.worker)
    out = out_path(args.quick, args.out)
    started = datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    load_before, t_start = os.getloadavg(), time.time()
    p = plan(args.quick, args.steps)
    res = dict(plan=p, params=param_rows(), models=[], lifting=[])
    say = lambda *a: print(*a, file=sys.stderr, flush=True)
    for c in p['models']:
        if args.only and args.only not in f"{model_name(c)} {c['mode']}": continue
        r = run_fresh(c, args.threads); res['models'].append((c, r))
        say(f"{model_name(c)} {c['mode']}: " + (r['error'] if 'error' in r else f"{r['seconds']:.2f} s, peak {r['peak_gib']:.2f} GiB"))
    if not res['models']: raise SystemExit(f"--only {args.only!r} matches no configuration")
    for c in p['lifting'] if not args.only else []:
        r = run_fresh(c, args.threads); res['lifting'].append((c, r))
        say(f"lifting {c['formulation']} {c['mode']}: " + (r['error'] if 'error' in r else f"{r['seconds']:.2f} s, rise {r['rise_gib']:.2f} GiB"))
    if args.only: res['lifting'] = [(c, {'error': 'skipped (--only)'}) for c in p['lifting']]
    with tempfile.TemporaryDirectory(prefix='drivenb-bench-') as tmp:
        res['convert'] = run_fresh(dict(p['convert'], out=str(Path(tmp) / 'frames')), args.threads)
        say('conversion: ' + (res['convert'].get('error') or f"{res['convert']['fps']:.1f} frames/s"))
        if 'error' not in res['convert']:
            res['loader_bench'] = run_fresh(dict(kind='loader', root=str(Path(tmp) / 'frames'), frames=p['loader_frames']), args.threads)
        build = ROOT / 'build' / 'frames'
        if (build / 'meta.json').is_file() and not args.quick:
            res['loader_build'] = run_fresh(dict(kind='loader', root=str(build), frames=p['loader_frames']), args.threads)
        for k in ('loader_bench', 'loader_build'):
            if k in res: say(f"{k}: " + (res[k].get('error') or f"{res[k]['fps']:.1f} frames/s"))
    text = report(res, args.quick, args, load_before, os.getloadavg(), started, time.time() - t_start)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f'.{out.name}.', suffix='.tmp')
        with os.fdopen(fd, 'w') as f: f.write(text)
        os.replace(tmp, out)
        say(f'wrote {out}')
    bad = [r for _, r in res['models'] + res['lifting'] if 'error' in r and not r['error'].startswith('skipped')]
    bad += [r for k in ('convert', 'loader_bench', 'loader_build') if k in res for r in [res[k]] if 'error' in r]
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main())
