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
    assert (st / 'reports' / 'ablation.csv').read_text().startswith('variant,encoder,sensors,pretrained,iou,')

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

# --- transfer variants: pretrained (PiMAE) vs random init ---------------------------------------------------------------

VIT = {'encoder': 'vit_tiny_p8_d3', 'sensors': 'camera+radar'}
TRANSFER = {'vit': VIT, 'vit_pimae': {**VIT, 'pretrained': 'pimae'}}

def vit_weights(path: Path) -> Path:
    "A plain timm ViT state dict as the PiMAE study exports it (ViT-Tiny, patch 8, 3 blocks, no class token, 56 x 104 input)."
    import timm, torch
    torch.manual_seed(0)
    vit = timm.create_model('vit_tiny_patch16_224', patch_size=8, depth=3, img_size=(56, 104), class_token=False, global_pool='',
                            num_classes=0, dynamic_img_pad=True)
    path.parent.mkdir(parents=True, exist_ok=True); torch.save(vit.state_dict(), path)
    return path

def transfer_study(frames: Path, weights: Path) -> dict:
    "Tiny study params with the two transfer variants and `ablation.pretrained.pimae` -> `weights`."
    from drivenb.config import load_params
    from drivenb.testing import TINY_GRID
    return load_params({'data': {'frames': str(frames)}, 'grid': TINY_GRID, 'model': {'latent_dim': 16, 'neck_channels': 32},
                        'train': {'device': 'cpu', 'workers': 0},
                        'ablation': {**TINY_BUDGET, 'transfer': TRANSFER, 'pretrained': {'pimae': str(weights)}}})

def test_transfer_variant_params(tmp_path):
    "A transfer variant with `pretrained: pimae` starts from the weights file; the scratch one inherits model.weights (null); bad names and a missing file fail before training."
    from drivenb.bev.ablate import variant_params
    f = vit_weights(tmp_path / 'pimae' / 'image_encoder.pth')
    st = transfer_study(tmp_path / 'frames', f)
    p = variant_params(st, 'vit_pimae', runs=str(tmp_path / 'runs'), seed=0)
    assert (p['model']['encoder'], p['model']['weights'], p['model']['use_radar'], p['ablation']['pretrained']) == ('vit_tiny_p8_d3', str(f), True, {'pimae': str(f)})
    assert (p['train']['iters'], p['train']['out']) == (2, f"{tmp_path / 'runs'}/vit_pimae/seed0")
    assert variant_params(st, 'vit')['model']['weights'] is None
    assert variant_params(st, 'vit', pretrained='pimae')['model']['weights'] == str(f)          # by hand
    with pytest.raises(KeyError, match=r"pretrained 'mae' is not in params ablation.pretrained \(known: \['pimae'\]\)"):
        variant_params(st, 'vit', pretrained='mae')
    with pytest.raises(KeyError, match=r"nor ablation.transfer \(\['vit', 'vit_pimae'\]\)"):
        variant_params(st, 'nope')
    st['ablation']['pretrained']['pimae'] = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match=r"missing.pth not found.*dvc repro pimae_evaluate"):
        variant_params(st, 'vit_pimae')
    st['ablation']['variants'] = {'vit': VIT}
    with pytest.raises(ValueError, match='in both ablation.variants and ablation.transfer'):
        variant_params(st, 'vit')

def test_transfer_variant_trains_from_pretrained(tmp_path):
    "The pretrained ViT's weights reach the BEV encoder (the model as built), and run_variant's row names them."
    import torch
    from drivenb.bev.ablate import variant_params, run_variant
    from drivenb.bev.model import build_model
    from drivenb.geometry import VoxelGrid
    from drivenb.testing import tiny_frames
    f = vit_weights(tmp_path / 'pimae' / 'image_encoder.pth')
    sd = torch.load(f, map_location='cpu')
    st = transfer_study(tiny_frames(), f)
    kw = dict(runs=str(tmp_path / 'runs'), reports=str(tmp_path / 'reports'), seed=0)
    p = variant_params(st, 'vit_pimae', **kw)
    grid = VoxelGrid.from_params(p['grid'])
    enc = {k: v for k, v in build_model(p, grid).state_dict().items()}
    for k in ['patch_embed.proj.weight', 'blocks.2.mlp.fc2.weight', 'norm.weight']:   # the file's tensors, wherever the encoder nests its ViT
        hit = [n for n in enc if n.endswith('.' + k) and enc[n].shape == sd[k].shape]
        assert hit and all(torch.equal(enc[n], sd[k]) for n in hit), (k, hit)
    scratch = build_model(variant_params(st, 'vit', **kw), grid).state_dict()
    assert not torch.equal(next(v for n, v in scratch.items() if n.endswith('.patch_embed.proj.weight')), sd['patch_embed.proj.weight'])
    row = run_variant(p, echo=False)
    assert (row['variant'], row['encoder'], row['pretrained'], row['iters'], row['seed']) == ('vit_pimae', 'vit_tiny_p8_d3', 'pimae', 2, 0)
    assert json.loads((tmp_path / 'reports' / 'vit_pimae' / 'seed0' / 'metrics.json').read_text()) == row

def metrics_row(variant, seed, iou, encoder='vit_tiny_p8_d3', sensors='camera+radar', pretrained='none'):
    "A fake `run_variant` row (what metrics.json holds)."
    return dict(variant=variant, encoder=encoder, sensors=sensors, pretrained=pretrained, params_count=6_000_000, iou=iou,
                iou_0_20m=iou + 0.1, iou_20_35m=iou, iou_35_50m=iou - 0.05, iou_day=iou, iou_night=iou - 0.02,
                iou_day_35_50m=iou - 0.05, iou_night_35_50m=iou - 0.07, iters=2, batch_size=2, image_size=[40, 72], seed=seed, nproc=1,
                device='cpu', train_s=3.0, samples_per_s=1.0, wall_s=4.0, val_frames=4, frames_by_condition={'day': 2, 'night': 2})

def test_report_with_transfer_variants(tmp_path):
    "The report lists the transfer variants after the others with their pretrained weights and compares PiMAE with random init, resolved or not."
    from drivenb.bev.ablate import ablation_report, ablation_rows
    st = transfer_study(tmp_path / 'frames', tmp_path / 'image_encoder.pth')
    st['ablation'].update(seeds=[0, 1], variants={'r18_radar': {'encoder': 'resnet18', 'sensors': 'camera+radar'}})
    ious = {'r18_radar': ([0.05, 0.07], 'none'), 'vit': ([0.10, 0.12], 'none'), 'vit_pimae': ([0.20, 0.22], 'pimae')}
    for v, (xs, pre) in ious.items():
        for sd, x in zip([0, 1], xs):
            r = metrics_row(v, sd, x, encoder='resnet18' if v == 'r18_radar' else 'vit_tiny_p8_d3', pretrained=pre)
            if v == 'r18_radar': r.pop('pretrained')                       # a row written before `pretrained` existed
            f = tmp_path / 'reports' / v / f'seed{sd}' / 'metrics.json'; f.parent.mkdir(parents=True); f.write_text(json.dumps(r))
    assert [r['pretrained'] for r in ablation_rows(st, tmp_path / 'reports')] == ['none'] * 4 + ['pimae'] * 2
    summary = ablation_report(st, tmp_path / 'reports', tmp_path / 'out')
    assert [v['variant'] for v in summary] == ['r18_radar', 'vit', 'vit_pimae']
    md = (tmp_path / 'out' / 'ablation.md').read_text()
    table = [l for l in md.splitlines() if l.startswith('| ')]
    assert table[0].startswith('| rank | variant | encoder | sensors | pretrained |'), table[0]
    assert [l.split(' | ')[1] for l in table[1:4]] == ['r18_radar', 'vit_pimae', 'vit'], table      # transfer variants after the others
    assert '| vit_pimae | vit_tiny_p8_d3 | camera+radar | pimae |' in md and '| r18_radar | resnet18 | camera+radar | none |' in md
    sec = md[md.index('## Pretraining (PiMAE) vs random init'):]
    assert '**vit_pimae vs vit**' in sec and 'beats random init beyond the seed spread (resolved)' in sec, sec
    assert '0.210 ± 0.014 vs 0.110 ± 0.014' in sec and 'vit_pimae vs vit, overall' in sec, sec
    assert (tmp_path / 'out' / 'ablation.csv').read_text().splitlines()[0].startswith('variant,encoder,sensors,pretrained,iou,')
    for sd, x in zip([0, 1], [0.11, 0.14]):                                  # PiMAE within the seed spread of random init
        (tmp_path / 'reports' / 'vit_pimae' / f'seed{sd}' / 'metrics.json').write_text(json.dumps(metrics_row('vit_pimae', sd, x, pretrained='pimae')))
    ablation_report(st, tmp_path / 'reports', tmp_path / 'out')
    assert 'is not resolved from random init at this budget' in (tmp_path / 'out' / 'ablation.md').read_text()
