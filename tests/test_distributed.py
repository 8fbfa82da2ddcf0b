"""DDP that is correct: W processes take the single-process step on the same global batch (gloo on CPU);
multi-node through torchrun's c10d rendezvous; the GPU paths (nccl, bf16), skipped without CUDA.

Tolerances. One forward/backward of 2 ranks against 1 process is checked in **float64**, where the
two are the same computation up to rounding at 1e-16: loss parts agree to 1e-10 and the gradient
(relative L2 over all parameters) to 1e-9 (measured: 1e-13); the naive DDP loss (per-rank masked
means) is off by 1e-1, so these are sharp. The training CLI runs in float32, where summing in
another order (a batch split over ranks, per-rank convolutions, all-reduced statistics) moves the
last bits: the step-1 loss agrees to ~1e-7 and the step-1 gradient norm to ~2e-5 (checked at 1e-5
and 1e-4; naive DDP: 4e-3 and 7e-3). After several AdamW steps weights do *not* agree elementwise
that well, whatever the implementation: AdamW's first steps are close to `lr * sign(grad)`, so every
weight whose gradient is within rounding noise of zero moves by +-lr at random. Measured on this tiny
setup (3 steps), the relative L2 distance between two K-step updates `w_K - w_0` is 0.14 (params) /
3e-3 (batch norm running statistics) between *one process at 1 and at 2 threads* (pure rounding),
0.11 / 2e-3 for this DDP, 0.48 / 1.8e-2 with the naive DDP loss and 1.2 / 0.1 without synchronised
batch norm. Hence 0.3 / 1e-2 there, and on the losses of later steps 2e-3 (total; rounding: 2e-4) and
2e-2 (the small parts, e.g. the centre term; rounding: 3e-3).
"""
import json, os, socket, subprocess
from pathlib import Path
import pytest, torch
from conftest import tiny_params, write_params, BIN

# ---------------------------------------------------------------------------------------------------
def run_cli(*args, check=True, timeout=300, env=None):
    "conftest's `run_cli` with an environment: run a console script of the venv, stdout+stderr in .stdout."
    r = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=env)
    if check and r.returncode != 0: raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-4000:]}")
    return r

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def ddp_params(tmp: Path, frames: Path, out: str, **train) -> dict:
    "Tiny params on the session's converted frames: resnet10t (batch norm), 2 x 2 micro-batches per step."
    p = tiny_params(tmp, Path('unused'))
    p['data']['frames'] = str(frames)
    p['model'].update(encoder='resnet10t', latent_dim=16, neck_channels=32, rand_flip=False)
    p['train'].update({**dict(iters=3, batch_size=2, grad_acc=2, lr=1e-3, val_every=3, ckpt_every=1, log_every=1, out=str(tmp / out)), **train})
    return p

def tsv(run: Path, name: str) -> list:
    "[(step, value)] of a dvclive metric."
    rows = (run / 'dvclive' / 'plots' / 'metrics' / f'{name}.tsv').read_text().splitlines()[1:]
    return [(int(r.split('\t')[0]), float(r.split('\t')[1])) for r in rows]

def rel(a, b) -> float: return abs(a - b) / max(abs(a), abs(b), 1e-12)

def update_distance(w0: dict, a: dict, b: dict, buffers: bool) -> float:
    "Relative L2 distance between the updates `a - w0` and `b - w0` over parameters or running statistics."
    num = den = 0.0
    for k, v in w0.items():
        if not v.is_floating_point() or ('running' in k) != buffers: continue
        da, db = a[k].double() - v.double(), b[k].double() - v.double()
        num += float(((da - db) ** 2).sum()); den += float((da ** 2).sum())
    return (num / den) ** 0.5

# ---------------------------------------------------------------------------------------------------
# One forward/backward in float64, 2 gloo ranks vs 1 process: loss parts, every gradient, running statistics.
def _batch(B=4, S=2, n=16, seed=0, dtype=torch.float64) -> dict:
    "A random batch in `FrameDataset`'s layout (floats in `dtype`) whose masks differ between its halves."
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[40., 0, 40], [0, 40, 24], [0, 0, 1]])
    b = dict(images=torch.rand(B, S, 3, 48, 80, generator=g), pix_T_cams=K.expand(B, S, 3, 3).clone(),
             cams_T_ref=torch.eye(4).expand(B, S, 4, 4).clone(), radar_occ=(torch.rand(B, 1, n, n, generator=g) > 0.9).float(),
             seg=(torch.rand(B, 1, n, n, generator=g) > 0.8).float(), center=torch.rand(B, 1, n, n, generator=g) ** 4,
             offset=torch.randn(B, 2, n, n, generator=g), valid=(torch.rand(B, 1, n, n, generator=g) > 0.1).float())
    b['valid'][0] = 1.0; b['seg'][3] = 0.0                        # masks differ a lot between the ranks' halves
    return {k: v.to(dtype) for k, v in b.items()}

def _net(dtype=torch.float64):
    from drivenb.geometry import VoxelGrid
    from drivenb.bev.model import Segnet
    torch.manual_seed(0)
    return Segnet(VoxelGrid(((-20, 20), (-20, 20), (0.5, 10.5)), (16, 2, 16)), encoder='resnet10t', latent_dim=8, neck_channels=16,
                  use_radar=True).to(dtype)

def _grads(m) -> dict:
    return {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}

def _worker(rank: int, world: int, init_file: str, out_dir: str):
    import torch.distributed as dist
    from drivenb.train import LossStep, get_task
    from drivenb.dist import sync_batchnorm
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    b = _batch(); half = {k: v[rank::world] for k, v in b.items()}  # a strided shard, as DistributedSampler's
    res = {}
    for name, exact in [('exact', True), ('naive', False)]:   # naive: per-rank masked means (the negative control)
        net = _net()
        model = torch.nn.parallel.DistributedDataParallel(sync_batchnorm(LossStep(net, get_task('bev'), distributed=exact), 'cpu'),
                                                          find_unused_parameters=True)
        total, parts = model(half); total.backward()
        res[name] = dict(parts=parts, grads=_grads(net), running_var=net.encoder.backbone.bn1.running_var.clone())
    if rank == 0: torch.save(res, Path(out_dir) / 'ddp.pt')
    dist.barrier(); dist.destroy_process_group()

def test_one_step_gradients_match(tmp_path):
    from drivenb.train import LossStep, get_task
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / 'store'), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / 'ddp.pt', weights_only=False)
    net = _net(); total, parts = LossStep(net, get_task('bev'))(_batch()); total.backward()
    one = _grads(net)
    for k in ('total', 'ce', 'center', 'offset'):
        assert rel(ddp['exact']['parts'][k], parts[k]) < 1e-10, (k, ddp['exact']['parts'][k], parts[k])
    def grad_dist(g):
        return (sum(float(((g[n] - one[n]) ** 2).sum()) for n in one) / sum(float((one[n] ** 2).sum()) for n in one)) ** 0.5
    assert set(ddp['exact']['grads']) == set(one)
    assert grad_dist(ddp['exact']['grads']) < 1e-9, grad_dist(ddp['exact']['grads'])
    for n in ('ce_weight', 'center_weight', 'offset_weight'):          # the learned loss weights, the W-split constant
        assert rel(float(ddp['exact']['grads'][n]), float(one[n])) < 1e-9, n
    torch.testing.assert_close(ddp['exact']['running_var'], net.encoder.backbone.bn1.running_var, rtol=1e-10, atol=1e-12)
    # the negative control: per-rank normalisation is measurably wrong, so the tolerances above can tell
    assert rel(ddp['naive']['parts']['total'], parts['total']) > 1e-3 and grad_dist(ddp['naive']['grads']) > 1e-3

# ---------------------------------------------------------------------------------------------------
def test_ddp_matches_single_process(tmp_path, frames):
    "torchrun with 2 gloo ranks vs 1 process, global batch 2, grad_acc 2 (3 epochs of the 4 train frames), K=3 steps."
    env = dict(os.environ, OMP_NUM_THREADS='1')
    p1 = write_params(tmp_path / 'one.yaml', ddp_params(tmp_path, frames, 'one'))
    run_cli('drivenb-train', '--params', p1, '--no_progress', env=env)
    p2 = write_params(tmp_path / 'two.yaml', ddp_params(tmp_path, frames, 'two'))
    r = run_cli('torchrun', '--standalone', '--nproc_per_node=2', '--no-python', BIN / 'drivenb-train', '--params', p2, '--no_progress',
                env=env, timeout=300)
    assert r.stdout.count('trained 3 steps') == 1 and r.stdout.count('step 3: val iou') == 1, r.stdout[-3000:]   # rank 0 alone reports
    one, two = tmp_path / 'one', tmp_path / 'two'
    s1, s2 = (json.loads((d / 'summary.json').read_text()) for d in (one, two))
    assert (s1['world_size'], s2['world_size'], s2['backend']) == (1, 2, 'gloo')
    # losses: step 1 sharp, later steps within the rounding floor
    for name in ('train/total', 'train/ce', 'train/center', 'train/offset'):
        a, b = tsv(one, name), tsv(two, name)
        assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3]
        assert rel(a[0][1], b[0][1]) < 1e-5, (name, a, b)
        tol = 2e-3 if name == 'train/total' else 2e-2     # the small parts are noisier than their sum (rounding: 3e-3)
        assert all(rel(x, y) < tol for (_, x), (_, y) in zip(a, b)), (name, a, b)
    assert rel(tsv(one, 'train/grad_norm')[0][1], tsv(two, 'train/grad_norm')[0][1]) < 1e-4
    assert tsv(one, 'train/lr') == tsv(two, 'train/lr')                          # the schedule does not depend on W
    # weights after 3 steps
    from drivenb.config import load_params
    from drivenb.bev.data import FrameDataset
    from drivenb.bev.model import build_model
    from drivenb.io import load_checkpoint
    from drivenb.dist import seed_everything
    pp = load_params(ddp_params(tmp_path, frames, 'one')); seed_everything(0)
    w0 = build_model(pp, FrameDataset(frames).grid).state_dict()
    a, b = load_checkpoint(one / 'last.pt'), load_checkpoint(two / 'last.pt')
    assert a['step'] == b['step'] == 3 and list(a['model']) == list(b['model'])    # same keys: SyncBatchNorm is unwrapped
    assert update_distance(w0, a['model'], b['model'], buffers=False) < 0.3
    assert update_distance(w0, a['model'], b['model'], buffers=True) < 1e-2
    assert abs(s1['val']['iou'] - s2['val']['iou']) < 5e-3

# ---------------------------------------------------------------------------------------------------
def test_two_nodes_c10d_rendezvous(tmp_path, frames):
    "Two torchrun launchers on localhost, 1 process each, meet through a c10d rendezvous: one world of 2 ranks."
    pf = write_params(tmp_path / 'p.yaml', ddp_params(tmp_path, frames, 'run', iters=2, val_every=2, grad_acc=1))
    port, env = free_port(), dict(os.environ, OMP_NUM_THREADS='1')
    cmd = lambda rank: [str(BIN / 'torchrun'), '--nnodes=2', f'--node_rank={rank}', '--nproc_per_node=1', '--max_restarts=0',
                        '--rdzv_backend=c10d', f'--rdzv_endpoint=127.0.0.1:{port}', '--rdzv_id=drivenb-test', '--rdzv_conf=join_timeout=60',
                        '--no-python', str(BIN / 'drivenb-train'), '--params', str(pf), '--no_progress']
    procs = [subprocess.Popen(cmd(r), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for r in (0, 1)]
    outs = []
    try:
        for pr in procs: outs.append(pr.communicate(timeout=180)[0])
    finally:
        for pr in procs:
            if pr.poll() is None: pr.kill(); pr.wait()
    assert [pr.returncode for pr in procs] == [0, 0], '\n----\n'.join(o[-3000:] for o in outs)
    s = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert (s['world_size'], s['backend'], s['steps']) == (2, 'gloo', 2)
    assert sum(o.count('trained 2 steps') for o in outs) == 1                    # rank 0 alone reports and writes
    assert sorted(f.name for f in (tmp_path / 'run').iterdir()) == ['.lock', 'best.pt', 'dvclive', 'environment.json', 'last.pt', 'summary.json', 'train.log']

def test_slurm_script_launches_one_torchrun_per_node():
    s = (Path(__file__).resolve().parents[1] / 'scripts' / 'slurm' / 'train.sbatch').read_text()
    assert s.startswith('#!/bin/bash') and '#SBATCH --ntasks-per-node=1' in s
    assert 'srun' in s and 'torchrun' in s and '--rdzv_backend=c10d' in s and 'drivenb-train' in s
    r = subprocess.run(['bash', '-n', str(Path(__file__).resolve().parents[1] / 'scripts' / 'slurm' / 'train.sbatch')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

# ---------------------------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (bf16 autocast and nccl paths)')

@cuda
def test_bf16_step_on_gpu(tmp_path, frames):
    from drivenb.train import train
    p = ddp_params(tmp_path, frames, 'gpu', device='cuda', amp='bf16', iters=2, val_every=2)
    s = train(p, progress=False)
    assert s['amp'] == 'bfloat16' and s['device'].startswith('cuda') and s['steps'] == 2 and 0 <= s['best_iou'] <= 1
    assert all(v == v for _, v in tsv(tmp_path / 'gpu', 'train/total'))        # finite, not NaN

@cuda
def test_nccl_process_group(tmp_path, frames):
    "torchrun on every GPU of the machine (1 or more): nccl, and with 2+ GPUs DDP with torch's SyncBatchNorm."
    n = min(2, torch.cuda.device_count())
    pf = write_params(tmp_path / 'p.yaml', ddp_params(tmp_path, frames, 'run', device='cuda', iters=2, val_every=2, batch_size=2, grad_acc=1))
    run_cli('torchrun', '--standalone', f'--nproc_per_node={n}', '--no-python', BIN / 'drivenb-train', '--params', pf, '--no_progress', timeout=300)
    s = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert (s['backend'], s['world_size'], s['amp']) == ('nccl', n, 'bfloat16')

# ---------------------------------------------------------------------------------------------------
# Every registered task gets the DDP equivalence: the trainer's toy task (MLP with batch norm) on 2 gloo ranks vs 1 process.
def toy_params(tmp: Path, out: str, **train) -> dict:
    "The trainer's toy task: a few dozen steps of a Gaussian-mixture MLP (batch norm in its backbone)."
    return {'train': {**dict(task='toy', iters=12, batch_size=16, grad_acc=2, lr=0.05, schedule='cosine', val_every=6, ckpt_every=4,
                             log_every=1, workers=0, device='cpu', out=str(tmp / out)), **train}}

def test_toy_task_ddp_equals_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for n, out in ((1, 'one'), (2, 'two')):
        pf = write_params(tmp_path / f'{out}.yaml', toy_params(tmp_path, out))
        run_cli('torchrun', '--standalone', f'--nproc_per_node={n}', '--no-python', BIN / 'drivenb-train', '--params', pf, '--no_progress', env=env)
    s1, s2 = (json.loads((tmp_path / d / 'summary.json').read_text()) for d in ('one', 'two'))
    assert (s1['world_size'], s2['world_size'], s2['task']) == (1, 2, 'toy')
    a, b = tsv(tmp_path / 'one', 'train/total'), tsv(tmp_path / 'two', 'train/total')
    assert rel(a[0][1], b[0][1]) < 1e-6 and all(rel(x, y) < 1e-3 for (_, x), (_, y) in zip(a, b)), (a, b)
    assert abs(s1['val']['accuracy'] - s2['val']['accuracy']) <= 2 / 256 and s2['best'] > 0.8
