"""Faults: a run killed with SIGKILL anywhere (mid-step, inside a checkpoint write, at a random moment) and
resumed from last.pt ends bit-identical to an uninterrupted run; non-finite losses and gradients; resume
refused under other params or data.

The kills use the `DRIVENB_FAULT=<point>:<step>` hook of `drivenb.train` (the process SIGKILLs itself at
that point, see nbs/10_train.ipynb) and, once, a SIGKILL sent from outside after a random delay. The
tiny run (5 steps, 4 train frames: 2.5 epochs, so resumes land mid-epoch) writes last.pt at steps 2
(ckpt_every), 3 (validation), 4, 5, logs every step and uses random flips, so the RNG states matter.
"""
import json, os, random, shutil, signal, subprocess, time
from pathlib import Path
import pytest, torch
from conftest import tiny_params, write_params, BIN
from test_distributed import run_cli

TASKS = ('bev', 'toy')     # every registered task gets the kill/resume and NaN tests

def fault_params(tmp: Path, frames: Path, out: str, task: str = 'bev', **train) -> dict:
    if task == 'toy':      # 5 steps of 16 of 512 samples; the same checkpoint schedule as the BEV run
        return {'train': {**dict(task='toy', iters=5, batch_size=16, grad_acc=1, lr=0.05, val_every=3, ckpt_every=2, log_every=1,
                                 workers=0, device='cpu', out=str(tmp / out)), **train}}
    p = tiny_params(tmp, Path('unused'))
    p['data']['frames'] = str(frames)
    p['model'].update(encoder='resnet10t', latent_dim=16, neck_channels=32, rand_flip=True)
    p['train'].update({**dict(iters=5, batch_size=2, grad_acc=1, val_every=3, ckpt_every=2, log_every=1, out=str(tmp / out)), **train})
    return p

ENV = dict(os.environ, OMP_NUM_THREADS='1')

def train_cli(pf: Path, check=True, fault=None):
    env = dict(ENV, **({'DRIVENB_FAULT': fault} if fault else {}))
    return run_cli('drivenb-train', '--params', pf, '--no_progress', check=check, env=env)

def equal(a, b) -> bool:
    "Exact equality of nested checkpoint contents (tensors bitwise, arrays, numbers, dicts, lists)."
    import numpy as np
    if torch.is_tensor(a): return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray): return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return type(a) == type(b) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b

def assert_same_run(a: Path, b: Path):
    "Runs `a` and `b` ended in the same state: checkpoints bitwise, dvclive files byte for byte, summary less timings."
    from drivenb.io import load_checkpoint
    for name in ('last.pt', 'best.pt'):
        ca, cb = load_checkpoint(a / name), load_checkpoint(b / name)
        for k in ('model', 'optimizer', 'scheduler', 'step', 'best', 'bad_steps', 'val', 'live', 'rng_ranks', 'data_version'):
            assert equal(ca[k], cb[k]), (name, k)
    la, lb = a / 'dvclive', b / 'dvclive'
    fa = sorted(str(f.relative_to(la)) for f in la.rglob('*') if f.is_file())
    assert fa == sorted(str(f.relative_to(lb)) for f in lb.rglob('*') if f.is_file())
    for f in fa: assert (la / f).read_bytes() == (lb / f).read_bytes(), f
    sa, sb = (json.loads((d / 'summary.json').read_text()) for d in (a, b))
    for s in (sa, sb): s.pop('seconds'); s.pop('samples_per_s')
    assert sa == sb
    assert not list(b.glob('.*.tmp*')), list(b.glob('.*.tmp*'))           # no temporary file left behind

@pytest.fixture(scope='module', params=TASKS)
def baseline(request, tmp_path_factory, frames):
    "The uninterrupted run of each task: (task, run folder)."
    tmp = tmp_path_factory.mktemp('baseline')
    train_cli(write_params(tmp / 'p.yaml', fault_params(tmp, frames, 'run', request.param)))
    return request.param, tmp / 'run'

@pytest.mark.parametrize('fault, ckpt_step', [
    ('after_step:1', None),      # before the first checkpoint: the rerun starts afresh
    ('after_step:4', 3),         # step 4's rows are logged, its checkpoint is not: they must not appear twice
    ('in_ckpt:4', 3),            # dies in last.pt's write of step 4 (temp file complete, not renamed)
    ('in_ckpt:3', 2),            # dies in best.pt's write at the step-3 validation: neither best.pt nor last.pt of step 3
])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, frames, baseline, fault, ckpt_step):
    from drivenb.io import load_checkpoint
    task, baseline = baseline
    pf = write_params(tmp_path / 'p.yaml', fault_params(tmp_path, frames, 'run', task))
    r = train_cli(pf, check=False, fault=fault)
    assert r.returncode == -signal.SIGKILL, r.stdout[-3000:]
    run = tmp_path / 'run'
    if ckpt_step is None: assert not (run / 'last.pt').exists()
    else: assert load_checkpoint(run / 'last.pt')['step'] == ckpt_step
    if fault.startswith('in_ckpt'): assert list(run.glob('.*.pt.tmp*'))          # the interrupted write left only a temp file
    r = train_cli(pf)
    assert (f'resumed from {run / "last.pt"} at step {ckpt_step}' in r.stdout) == (ckpt_step is not None), r.stdout
    assert_same_run(baseline, run)

def test_sigkill_at_a_random_moment(tmp_path, frames, baseline):
    "SIGKILL from outside, a random delay after the first last.pt appears (wherever the run then is)."
    task, baseline = baseline
    pf = write_params(tmp_path / 'p.yaml', fault_params(tmp_path, frames, 'run', task))
    run = tmp_path / 'run'
    proc = subprocess.Popen([str(BIN / 'drivenb-train'), '--params', str(pf), '--no_progress'], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.time()
        while not (run / 'last.pt').exists() and proc.poll() is None and time.time() - t0 < 120: time.sleep(0.02)
        delay = random.uniform(0, 1.0); time.sleep(delay)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        out = proc.communicate(timeout=60)[0]
    print(f"killed after {delay:.2f} s: {killed}; last.pt at step "
          f"{torch.load(run / 'last.pt', weights_only=False)['step'] if (run / 'last.pt').exists() else None}")
    assert not killed or proc.returncode == -signal.SIGKILL, out[-3000:]
    train_cli(pf)
    assert_same_run(baseline, run)

# ---------------------------------------------------------------------------------------------------
def test_resume_refused_under_other_params_or_data(tmp_path, frames, baseline):
    task, baseline = baseline
    if task == 'toy':      # the toy task has no data version: its params are what must agree
        shutil.copytree(baseline, tmp_path / 'run')
        p = fault_params(tmp_path, frames, 'run', 'toy', iters=7); p['toy'] = {'hidden': 16}
        r = train_cli(write_params(tmp_path / 'p.yaml', p), check=False)
        assert r.returncode == 2 and 'toy.hidden' in r.stdout and 'train.iters' not in r.stdout, r.stdout[-2000:]
        return
    shutil.copytree(baseline, tmp_path / 'run')
    p = fault_params(tmp_path, frames, 'run'); p['train']['iters'] = 7; p['model']['latent_dim'] = 8
    r = train_cli(write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode == 2 and 'model.latent_dim' in r.stdout and 'train.iters' not in r.stdout, r.stdout[-2000:]
    other = tmp_path / 'frames'; shutil.copytree(frames, other)
    (other / 'splits' / 'val.txt').write_text((frames / 'splits' / 'val.txt').read_text().split()[0] + '\n')   # another val split ...
    meta = json.loads((other / 'meta.json').read_text()); meta['splits']['val'] = 1                               # ... made consistently
    (other / 'meta.json').write_text(json.dumps(meta))
    p = fault_params(tmp_path, other, 'run'); p['train']['iters'] = 7
    r = train_cli(write_params(tmp_path / 'p.yaml', p), check=False)
    assert r.returncode == 2 and 'data version' in r.stdout and 'data.frames' not in r.stdout, r.stdout[-2000:]
    from drivenb.io import load_checkpoint
    ck = load_checkpoint(baseline / 'last.pt')                               # what a checkpoint records
    assert ck['code']['version'] and 'git' in ck['code'] and len(ck['data_version']) == 16 and ck['params']['model']['latent_dim'] == 16

# ---------------------------------------------------------------------------------------------------
# Non-finite steps, injected in-process.
def _patch_loss(monkeypatch, on_call: int, what: str, task: str = 'bev'):
    "Make the `on_call`-th loss of the run NaN ('loss') or its gradient NaN ('grad'), through the task's loss."
    from drivenb.train import get_task
    tk = get_task(task)
    orig, calls = tk.loss, [0]
    def loss(model, batch, distributed=False):
        total, parts = orig(model, batch, distributed); calls[0] += 1
        if calls[0] == on_call:
            if what == 'loss': total, parts = total * float('nan'), {**parts, 'total': float('nan')}
            else: total.register_hook(lambda g: g * float('nan'))
        return total, parts
    monkeypatch.setattr(tk, 'loss', loss)

def _finite(sd: dict) -> bool: return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())

@pytest.mark.parametrize('task', TASKS)
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, frames, monkeypatch, task):
    from drivenb.train import train
    from drivenb.io import load_checkpoint
    _patch_loss(monkeypatch, 3, 'loss', task)
    p = fault_params(tmp_path, frames, 'run', task, ckpt_every=1)
    with pytest.raises(FloatingPointError, match=r'non-finite loss or gradient at step 3 .*last\.pt keeps the state of step 2'):
        train(p, progress=False)
    ck = load_checkpoint(tmp_path / 'run' / 'last.pt')
    assert ck['step'] == 2 and _finite(ck['model'])
    monkeypatch.undo()
    s = train(p, progress=False)                                             # the last good state resumes
    assert s['steps'] == 5 and s['bad_steps'] == 0

@pytest.mark.parametrize('task', TASKS)
def test_nan_gradient_skipped_when_allowed(tmp_path, frames, monkeypatch, task):
    from drivenb.train import train
    from drivenb.io import load_checkpoint
    _patch_loss(monkeypatch, 2, 'grad', task)
    s = train(fault_params(tmp_path, frames, 'run', task, max_bad_steps=1), progress=False)
    assert s['steps'] == 5 and s['bad_steps'] == 1
    ck = load_checkpoint(tmp_path / 'run' / 'last.pt')
    assert _finite(ck['model']) and all(_finite({k: v for k, v in st.items() if torch.is_tensor(v)}) for st in ck['optimizer']['state'].values())
    rows = (tmp_path / 'run' / 'dvclive' / 'plots' / 'metrics' / 'train' / 'total.tsv').read_text().splitlines()
    assert [r.split('\t')[0] for r in rows[1:]] == ['1', '3', '4', '5']      # the skipped step logs no loss

def test_nan_activations_do_not_poison_batch_norm(tmp_path, frames, monkeypatch):
    "NaN images at step 2: the skipped step's batch norm statistics are put back, so the run ends finite."
    import drivenb.train as T, drivenb.bev.task as bev_task
    from drivenb.io import load_checkpoint
    orig, calls = bev_task.forward_batch, [0]
    def fwd(model, batch, use_radar):
        calls[0] += model.training
        if calls[0] == 2 and model.training: batch = {**batch, 'images': batch['images'] * float('nan')}
        return orig(model, batch, use_radar)
    monkeypatch.setattr(bev_task, 'forward_batch', fwd)
    s = T.train(fault_params(tmp_path, frames, 'run', max_bad_steps=1), progress=False)
    assert s['bad_steps'] == 1 and 0 <= s['best_iou'] <= 1
    assert _finite(load_checkpoint(tmp_path / 'run' / 'last.pt')['model'])

def test_too_many_bad_steps_stop(tmp_path, frames, monkeypatch):
    from drivenb.train import train
    from drivenb.train import get_task
    tk = get_task('bev'); orig = tk.loss
    def always_nan(model, batch, distributed=False):
        total, parts = orig(model, batch, distributed); return total * float('nan'), {**parts, 'total': float('nan')}
    monkeypatch.setattr(tk, 'loss', always_nan)
    with pytest.raises(FloatingPointError, match=r'at step 3 .*stopping after 3 bad step\(s\) \(params train.max_bad_steps=2\); no checkpoint'):
        train(fault_params(tmp_path, frames, 'run', max_bad_steps=2, ckpt_every=0), progress=False)
