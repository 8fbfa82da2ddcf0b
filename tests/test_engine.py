"""The shared engine's reliability, tried as a new user would (issue 9, section 6), on the trainer's toy task so each
check takes seconds: one writer per run folder, workers that die with their launcher, SIGTERM / Ctrl-C that save and
exit cleanly, bad clip values and blank params refused, `train.iters` changed on resume, a damaged `last.pt`, weights
that explode without a NaN, a changed thread count, and errors that name the file. Each test failed on the code before
that issue."""
import json, os, signal, subprocess, time
from pathlib import Path
import pytest, torch, yaml
from conftest import write_params, BIN, tiny_params

ENV = dict(os.environ, OMP_NUM_THREADS='1')

def toy(tmp: Path, out: str = 'run', **train) -> dict:
    return {'train': {**dict(task='toy', iters=40, batch_size=16, grad_acc=1, lr=0.05, schedule='onecycle', val_every=10,
                             ckpt_every=5, log_every=5, workers=0, device='cpu', out=str(tmp / out)), **train}}

def cli(*args, env=ENV, timeout=300):
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, env=env)

def slow_toy(tmp, out='run', **train):
    "A toy run that takes a few seconds: a wide MLP on many samples."
    p = toy(tmp, out, **{**dict(iters=100000, ckpt_every=50, val_every=100000, log_every=50), **train})
    p['toy'] = {'n_train': 4096, 'hidden': 256, 'dim': 64}
    return p

def wait_for(path: Path, proc, t=120):
    t0 = time.time()
    while not path.exists() and proc.poll() is None and time.time() - t0 < t: time.sleep(0.05)
    assert path.exists(), proc.communicate()[0][-3000:] if proc.poll() is not None else 'timeout'

def test_second_run_into_the_same_folder_is_refused(tmp_path):
    pf = write_params(tmp_path / 'p.yaml', slow_toy(tmp_path))
    first = subprocess.Popen([str(BIN / 'drivenb-train'), '--params', str(pf), '--no_progress'], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(tmp_path / 'run' / 'last.pt', first)
        (tmp_path / 'run' / '.last.pt.tmp99999').write_bytes(b'a live writer of another run would own this')   # must survive
        r = cli('drivenb-train', '--params', pf, '--no_progress')
        assert r.returncode == 2 and f"{tmp_path / 'run'} is in use by a running training (pid {first.pid}" in r.stdout, r.stdout[-2000:]
        assert (tmp_path / 'run' / '.last.pt.tmp99999').exists()
    finally:
        first.send_signal(signal.SIGTERM); out = first.communicate(timeout=300)[0]
    assert first.returncode == 128 + signal.SIGTERM, out[-2000:]
    rows = (tmp_path / 'run' / 'dvclive' / 'plots' / 'metrics' / 'train' / 'total.tsv').read_text().splitlines()[1:]
    assert len(rows) == len({r.split('\t')[0] for r in rows}) > 0                   # every step once: one writer

def test_workers_die_with_the_launcher(tmp_path):
    pf = write_params(tmp_path / 'p.yaml', slow_toy(tmp_path, ckpt_every=20))
    launcher = subprocess.Popen([str(BIN / 'torchrun'), '--standalone', '--nproc_per_node=2', '--no-python', str(BIN / 'drivenb-train'),
                                 '--params', str(pf), '--no_progress'], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(tmp_path / 'run' / 'last.pt', launcher)
        workers = subprocess.run(['pgrep', '-f', f'drivenb-train --params {pf}'], capture_output=True, text=True).stdout.split()
        workers = [int(w) for w in workers if int(w) != launcher.pid]
        assert len(workers) >= 2, workers
        launcher.send_signal(signal.SIGKILL); launcher.wait()
        t0 = time.time()
        alive = lambda: [w for w in workers if Path(f'/proc/{w}').exists() and 'Z' not in Path(f'/proc/{w}/stat').read_text().split()[2]]
        while alive() and time.time() - t0 < 20: time.sleep(0.1)
        assert not alive(), f"workers {alive()} outlived their launcher"
    finally:
        if launcher.poll() is None: launcher.kill()
        subprocess.run(['pkill', '-9', '-f', f'drivenb-train --params {pf}'])

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_and_exit_cleanly(tmp_path, sig):
    pf = write_params(tmp_path / 'p.yaml', slow_toy(tmp_path))
    proc = subprocess.Popen([str(BIN / 'drivenb-train'), '--params', str(pf), '--no_progress'], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(tmp_path / 'run' / 'last.pt', proc)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig and 'Traceback' not in out, out[-3000:]
    from drivenb.io import load_checkpoint
    step = load_checkpoint(tmp_path / 'run' / 'last.pt')['step']
    assert f"stopped by {signal.Signals(sig).name} after step {step}" in out and 'run the same command to resume' in out, out[-2000:]
    r = cli('drivenb-train', '--params', pf, '--no_progress', '--set', 'train.iters=' + str(step + 5))
    assert r.returncode == 0 and f'at step {step}' in r.stdout, r.stdout[-2000:]

@pytest.mark.parametrize('key, value, expect', [
    ('grad_clip', -1, 'train.grad_clip'), ('grad_clip', 0, 'train.grad_clip'),     # ascent / zeroed gradients, both exited 0
    ('lr', None, 'params train.lr: Input should be a valid number, got None'),       # `lr:` with no value
    ('amp', 'fp16', "train.amp='fp16' needs CUDA"),
])
def test_bad_train_params_are_refused_by_name(tmp_path, key, value, expect):
    if expect.startswith('train.amp') and torch.cuda.is_available(): pytest.skip('fp16 runs on CUDA')
    pf = tmp_path / 'p.yaml'
    p = toy(tmp_path); p['train'][key] = value
    pf.write_text(yaml.safe_dump(p).replace('lr: null', 'lr:'))
    r = cli('drivenb-train', '--params', pf, '--no_progress')
    assert r.returncode == 2 and expect in r.stdout and 'Traceback' not in r.stdout, r.stdout[-2000:]

def test_changing_iters_on_resume(tmp_path):
    from drivenb.train import train
    from drivenb.io import load_checkpoint
    train(toy(tmp_path, iters=20), progress=False)
    s = train(toy(tmp_path, iters=30), progress=False)                               # one-cycle extended: crashed before
    assert s['steps'] == 30
    lr_end = float((tmp_path / 'run' / 'dvclive' / 'plots' / 'metrics' / 'train' / 'lr.tsv').read_text().splitlines()[-1].split('\t')[1])
    assert lr_end < 1e-4                                                             # the new schedule ran to its end
    train(toy(tmp_path, 'short', iters=30), progress=False)
    s = train(toy(tmp_path, 'short', iters=20), progress=False)                      # shrunk below the checkpoint: nothing to do
    assert s['steps'] == 30 and load_checkpoint(tmp_path / 'short' / 'last.pt')['step'] == 30

def test_damaged_last_pt_is_refused(tmp_path):
    from drivenb.train import train
    train(toy(tmp_path, iters=10), progress=False)
    import zipfile
    ck = tmp_path / 'run' / 'last.pt'; b = bytearray(ck.read_bytes())
    with zipfile.ZipFile(ck) as z: rec = next(i for i in z.infolist() if '/data/' in i.filename)   # a tensor record (CRC-checked)
    h = rec.header_offset                                                                          # its local header: 30 bytes + name + extra
    b[h + 30 + int.from_bytes(b[h + 26:h + 28], 'little') + int.from_bytes(b[h + 28:h + 30], 'little')] ^= 0xFF
    ck.write_bytes(bytes(b))                 # (a byte in the zip's alignment padding would go unnoticed: no CRC covers it)
    with pytest.raises(ValueError, match='last.pt is damaged'): train(toy(tmp_path, iters=20), progress=False)

def test_exploding_weights_are_not_a_good_state(tmp_path, monkeypatch):
    from drivenb.train import train, get_task
    from drivenb.io import load_checkpoint
    tk = get_task('toy'); orig = tk.loss; calls = [0]
    def blow_up(model, batch, distributed=False):
        calls[0] += 1
        if calls[0] == 7:
            with torch.no_grad(): model.head.weight.mul_(1e13)                      # finite, absurd
        return orig(model, batch, distributed)
    monkeypatch.setattr(tk, 'loss', blow_up)
    with pytest.raises(FloatingPointError, match=r'parameter head.weight reached .* at step 10 .*last.pt keeps the state of step 5'):
        train(toy(tmp_path, iters=20, lr=1e-4), progress=False)
    assert load_checkpoint(tmp_path / 'run' / 'last.pt')['step'] == 5

def test_thread_count_recorded_and_change_warned(tmp_path):
    pf = write_params(tmp_path / 'p.yaml', toy(tmp_path, iters=10))
    cli('drivenb-train', '--params', pf, '--no_progress', '--set', 'train.iters=5', env=dict(ENV, OMP_NUM_THREADS='1'))
    from drivenb.io import load_checkpoint
    assert load_checkpoint(tmp_path / 'run' / 'last.pt')['threads'] == 1
    r = cli('drivenb-train', '--params', pf, '--no_progress', env=dict(ENV, OMP_NUM_THREADS='2'))
    assert r.returncode == 0 and 'made with 1 torch threads per process, this run has 2' in r.stdout, r.stdout[-2000:]

def test_full_disk_and_read_only_folder_name_the_file(tmp_path):
    from drivenb.io import save_checkpoint, atomic_write_json
    if Path('/dev/full').exists():
        import drivenb.io as dio
        real_open = open
        def full_open(path, mode='r', *a, **k):                                      # every write lands on a full disk
            return real_open('/dev/full', mode, *a, **k) if '.tmp' in str(path) else real_open(path, mode, *a, **k)
        try:
            dio.open = full_open
            with pytest.raises(OSError, match=r'No space left on device while writing .*last.pt'):
                save_checkpoint(tmp_path / 'last.pt', {'w': torch.zeros(1000)})
        finally: del dio.open
    # a folder nobody may write (root included): /sys is a read-only file system
    with pytest.raises(OSError, match=r'(not permitted|Read-only file system|Permission denied) while creating the folder of /sys/drivenb-test'):
        atomic_write_json('/sys/drivenb-test/m.json', {})
    r = cli('drivenb-train', '--params', write_params(tmp_path / 'p.yaml', toy(tmp_path, iters=2, out='/sys/drivenb-test')))
    assert r.returncode == 2 and '/sys/drivenb-test' in r.stdout and 'Traceback' not in r.stdout, r.stdout[-2000:]   # one line, naming it

def test_metrics_json_never_holds_bare_nan(tmp_path):
    from drivenb.io import atomic_write_json
    atomic_write_json(tmp_path / 'metrics.json', {'iou': float('nan')})
    assert json.loads((tmp_path / 'metrics.json').read_text()) == {'iou': None}

def test_evaluate_refuses_frames_of_other_bounds(tmp_path, frames):
    from drivenb.train import train
    from drivenb.bev.evaluate import evaluate
    import shutil
    p = tiny_params(tmp_path, Path('unused')); p['data']['frames'] = str(frames); p['train']['iters'] = 1; p['train']['val_every'] = 1
    train(p, progress=False)
    other = tmp_path / 'other'; shutil.copytree(frames, other)
    meta = json.loads((other / 'meta.json').read_text()); meta['params']['grid']['bounds'][0] = [-40.0, 40.0]
    (other / 'meta.json').write_text(json.dumps(meta))
    p['data']['frames'] = str(other)
    with pytest.raises(ValueError, match='is not the grid of the frames'): evaluate(p, progress=False)

def test_truncated_split_file_is_refused(tmp_path, frames):
    from drivenb.bev.data import FrameDataset
    import shutil
    other = tmp_path / 'f'; shutil.copytree(frames, other)
    toks = (other / 'splits' / 'train.txt').read_text().split()
    (other / 'splits' / 'train.txt').write_text('\n'.join(toks[:-1]) + '\n')
    with pytest.raises(ValueError, match='train.txt is truncated or edited'): FrameDataset(other, 'train')
    (other / 'meta.json').write_text((frames / 'meta.json').read_text()[:40])
    with pytest.raises(ValueError, match='meta.json: not valid JSON'): FrameDataset(other, 'train')

def test_resume_from_a_named_checkpoint(tmp_path):
    "`drivenb-train --resume PATH` continues another folder's checkpoint (same params) in this run's folder; a missing one is named."
    from drivenb.io import load_checkpoint
    pa = write_params(tmp_path / 'a.yaml', toy(tmp_path, 'a', iters=10))
    assert cli('drivenb-train', '--params', pa, '--no_progress').returncode == 0
    pb = write_params(tmp_path / 'b.yaml', toy(tmp_path, 'b', iters=20))
    r = cli('drivenb-train', '--params', pb, '--no_progress', '--resume', tmp_path / 'a' / 'last.pt')
    assert r.returncode == 0 and f"resumed from {tmp_path / 'a' / 'last.pt'} at step 10" in r.stdout, r.stdout[-2000:]
    assert load_checkpoint(tmp_path / 'b' / 'last.pt')['step'] == 20 and load_checkpoint(tmp_path / 'a' / 'last.pt')['step'] == 10
    r = cli('drivenb-train', '--params', write_params(tmp_path / 'b.yaml', toy(tmp_path, 'b', iters=25)), '--no_progress',
            '--resume', tmp_path / 'a' / 'last.pt')                                # requeued: b's own last.pt wins
    assert r.returncode == 0 and f"resumed from {tmp_path / 'b' / 'last.pt'} at step 20" in r.stdout, r.stdout[-2000:]
    r = cli('drivenb-train', '--params', pb, '--no_progress', '--resume', tmp_path / 'nope.pt')
    assert r.returncode == 2 and 'nope.pt' in r.stdout and 'train.resume' in r.stdout, r.stdout[-2000:]

@pytest.mark.parametrize('task', ['bev', 'toy'])
def test_bad_input_refused_for_every_task(tmp_path, frames, task):
    "The engine's bad-input checks hold whatever the task: an unknown key, a batch that the world size does not divide."
    from drivenb.train import train
    p = toy(tmp_path, iters=2) if task == 'toy' else tiny_params(tmp_path, Path('unused'), data={'frames': str(frames)})
    bad = {**p, 'train': {**p['train'], 'ckpt_evry': 2}}
    pf = write_params(tmp_path / 'p.yaml', bad)
    r = cli('drivenb-train', '--params', pf, '--no_progress')
    assert r.returncode == 2 and "did you mean 'ckpt_every'" in r.stdout, r.stdout[-2000:]
    os.environ['WORLD_SIZE'] = '3'
    try:
        with pytest.raises(ValueError, match=r'batch_size=\d+ is not divisible by the world size 3'): train(p, progress=False)
    finally: del os.environ['WORLD_SIZE']
    assert not (tmp_path / 'run').exists()                                           # refused before the run folder exists
