"Ablations: the variant notebook under papermill, the summary report, and DVC's per-variant caching, on tiny frames."
import json, shutil, subprocess
from pathlib import Path
import pytest, yaml
from conftest import ROOT, BIN, tiny_params, write_params, run_cli

TINY_BUDGET = {'iters': 2, 'batch_size': 2, 'lr': 0.001, 'seeds': [0], 'image_height': 40, 'image_width': 72, 'nproc': 1}

def study(tmp: Path, synth_root: Path, variants: dict) -> Path:
    "A throwaway study folder: the repo's dvc.yaml, the variant notebook, tiny params naming `variants`."
    for f in ['dvc.yaml', 'nbs/bev/ablations/bev_variant.ipynb']:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy(ROOT / f, tmp / f)
    shutil.copytree(ROOT / 'drivenb', tmp / 'drivenb', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(synth_root, tmp / 'data' / 'nuscenes-synth')      # dvc.yaml's convert stage reads data/nuscenes-synth
    p = tiny_params(tmp, Path('data/nuscenes-synth'))
    p['data']['frames'] = 'build/frames'
    p['convert']['workers'] = 0
    p['train'].pop('out'); p['evaluate'] = {'bands': [[0, 20], [20, 35], [35, 50]], 'batch_size': 2}
    p['ablation'] = dict(TINY_BUDGET, variants={})
    from drivenb.config import load_params
    full = load_params(p); full['ablation']['variants'] = variants   # as written, even a bad variant (load_params would refuse it)
    write_params(tmp / 'params.yaml', full)                          # complete: dvc.yaml interpolates keys of every stage
    return tmp

def run(cmd, cwd, timeout=900):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       env={**__import__('os').environ, 'PATH': f"{BIN}:{__import__('os').environ['PATH']}"})
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-5000:]}"
    return r.stdout

def test_variant_notebook_and_report(tmp_path, synth_root, frames):
    "papermill runs the variant notebook with its parameters (variant, seed); the report summarizes the variants over seeds."
    st = study(tmp_path, synth_root, {'cam': {'encoder': 'resnet18', 'sensors': 'camera'},
                                      'radar': {'encoder': 'resnet18', 'sensors': 'camera+radar'}})
    shutil.copytree(frames, st / 'build' / 'frames')
    p = yaml.safe_load((st / 'params.yaml').read_text()); p['ablation']['seeds'] = [0, 3]; write_params(st / 'params.yaml', p)
    for name, sensors, seed in [('cam', 'camera', 0), ('radar', 'camera+radar', 0), ('cam', 'camera', 3), ('radar', 'camera+radar', 3)]:
        out = st / 'reports' / 'ablation' / name / f'seed{seed}' / 'bev_variant.ipynb'; out.parent.mkdir(parents=True)
        args = [str(BIN / 'papermill'), str(st / 'nbs/bev/ablations/bev_variant.ipynb'), str(out), '--cwd', str(st / 'nbs'),
                '-p', 'variant', name, '-p', 'seed', str(seed), '--no-progress-bar']   # encoder, sensors, budget come from params.yaml
        run(args, st)                                  # the kernel starts in nbs/: the notebook finds the project root itself
        m = json.loads((st / 'reports' / 'ablation' / name / f'seed{seed}' / 'metrics.json').read_text())
        assert (m['variant'], m['sensors'], m['iters'], m['image_size'], m['seed']) == (name, sensors, 2, [40, 72], seed)
        assert 0 <= m['iou'] <= 1 and m['params_count'] > 1e6
        executed = json.loads(out.read_text())
        assert any('injected-parameters' in c['metadata'].get('tags', []) for c in executed['cells'])
        assert any(o.get('data', {}).get('image/png') for c in executed['cells'] for o in c.get('outputs', [])), 'no figure in the executed notebook'
        assert (st / 'runs' / 'ablation' / name / f'seed{seed}' / 'best.pt').is_file()
    meta = json.loads((st / 'build' / 'frames' / 'meta.json').read_text())            # as `make repro` converts: data inside the clone
    meta['params']['dataroot'] = str((st / 'data' / 'nuscenes-synth').resolve()); (st / 'build' / 'frames' / 'meta.json').write_text(json.dumps(meta))
    r = run_cli('drivenb-ablation-report', '--params', 'params.yaml', cwd=st)
    assert '| radar | resnet18 | camera+radar |' in r.stdout, r.stdout
    md = (st / 'reports' / 'ablation.md').read_text()
    assert 'data `data/nuscenes-synth`' in md and str(tmp_path) not in md, md       # no machine's path in the committed report
    md = (st / 'reports' / 'ablation.md').read_text()
    assert 'embedded budget' in md and 'params-paper.yaml' in md and md.count('| resnet18 |') == 2 and ' ± ' in md
    assert 'Which differences are resolved' in md and 'By scene condition' in md
    assert set(json.loads((st / 'reports' / 'ablation.json').read_text())) == {'cam', 'radar'}
    assert (st / 'reports' / 'ablation.png').stat().st_size > 10_000
    assert (st / 'reports' / 'ablation.csv').read_text().startswith('variant,encoder,sensors,iou,')

def test_report_names_missing_variant(tmp_path, synth_root):
    st = study(tmp_path, synth_root, {'never_ran': {'encoder': 'resnet18', 'sensors': 'camera'}})
    r = run_cli('drivenb-ablation-report', '--params', 'params.yaml', cwd=st, check=False)
    assert r.returncode == 2 and "'never_ran' seed 0" in r.stdout and 'metrics.json' in r.stdout, r.stdout

@pytest.mark.parametrize('bad,msg', [({'x': {'encoder': 'resnet18', 'sensors': 'lidar'}}, 'sensors'),
                                     ({'a/b': {'encoder': 'resnet18', 'sensors': 'camera'}}, "'a/b'")])
def test_bad_variant_fails_before_training(tmp_path, synth_root, frames, bad, msg):
    from drivenb.bev.ablate import variant_params
    st = study(tmp_path, synth_root, bad)
    (name, v), = bad.items()
    with pytest.raises(ValueError, match=msg.replace('/', '.')):
        variant_params(st / 'params.yaml', name, v['encoder'], v['sensors'])

def test_dvc_caches_each_variant(tmp_path, synth_root):
    "dvc repro runs convert, every variant x seed and the report; unchanged, nothing reruns; editing one variant reruns only its runs; a new seed runs only the new runs."
    st = study(tmp_path, synth_root, {'r18': {'encoder': 'resnet18', 'sensors': 'camera'},
                                      'r18_radar': {'encoder': 'resnet18', 'sensors': 'camera+radar'}})
    dvc = str(BIN / 'dvc')
    run([dvc, 'init', '--no-scm', '-q'], st)
    out = run([dvc, 'repro', 'ablation_report'], st)
    for s in ['convert', 'ablate@r18-0', 'ablate@r18_radar-0', 'ablation_report']: assert f"Running stage '{s}'" in out, (s, out[-3000:])
    assert "Running stage 'train'" not in out                         # the ablation does not need the main model
    assert 'up to date' in run([dvc, 'status', 'ablation_report'], st)
    assert 'Running stage' not in run([dvc, 'repro', 'ablation_report'], st)
    p = yaml.safe_load((st / 'params.yaml').read_text())
    p['ablation']['variants']['r18_radar']['encoder'] = 'efficientnet_b0'
    write_params(st / 'params.yaml', p)
    out = run([dvc, 'repro', 'ablation_report'], st)
    ran = sorted(l.split("'")[1] for l in out.splitlines() if l.startswith('Running stage'))
    assert ran == ['ablate@r18_radar-0', 'ablation_report'], out[-3000:]
    m = json.loads((st / 'reports' / 'ablation' / 'r18_radar' / 'seed0' / 'metrics.json').read_text())
    assert m['encoder'] == 'efficientnet_b0'
    assert 'efficientnet_b0' in (st / 'reports' / 'ablation.md').read_text()
    p['ablation']['seeds'] = [0, 1]                                     # a second seed: only the new runs and the report
    write_params(st / 'params.yaml', p)
    out = run([dvc, 'repro', 'ablation_report'], st)
    ran = sorted(l.split("'")[1] for l in out.splitlines() if l.startswith('Running stage'))
    assert ran == ['ablate@r18-1', 'ablate@r18_radar-1', 'ablation_report'], out[-3000:]
