"Radar ablation: variant params, runs over seeds (one under papermill), and the report, on the tiny radial fixture."
import json, re, shutil
from pathlib import Path
import pytest
from conftest import ROOT, write_params, run_cli
from drivenb.config import load_params
from drivenb.radial.task import tiny_radial_params, prepare
from drivenb.radial.ablate import variant_params, run_variant, ablation_rows, summarize_runs, comparisons

VARIANTS = {'rd': {'representation': 'rd', 'camera': False}, 'ra': {'representation': 'ra', 'camera': False}}

@pytest.fixture(scope='module')
def study(tmp_path_factory) -> Path:
    "A throwaway study: tiny converted radial data, params.yaml with two variants x two seeds at 2 steps, dvc.yaml (marks the root)."
    tmp = tmp_path_factory.mktemp('radial_ablation')
    p = tiny_radial_params(tmp / 'data')
    prepare(load_params(p, study='radial'))
    p['radial']['ablation'] = {'iters': 2, 'batch_size': 2, 'lr': 2e-3, 'seeds': [0, 1], 'variants': VARIANTS}
    write_params(tmp / 'params.yaml', load_params(p))
    shutil.copy(ROOT / 'dvc.yaml', tmp / 'dvc.yaml')
    return tmp

def test_variant_params(study):
    p = variant_params(study / 'params.yaml', 'ra', 1, camera=True)
    assert (p['radial']['model']['representation'], p['radial']['model']['camera'], p['train']['iters'], p['train']['seed']) == ('ra', True, 2, 1)
    assert p['train']['task'] == 'radial' and p['radial']['model']['width'] == 0.125          # inherited from the study
    with pytest.raises(KeyError, match='not in params radial.ablation.variants'): variant_params(study / 'params.yaml', 'adc')

def test_runs_and_report(study, monkeypatch):
    monkeypatch.chdir(study)
    for name, seed in [('rd', 0), ('rd', 1), ('ra', 0)]:
        row = run_variant(variant_params('params.yaml', name, seed))
        assert (row['variant'], row['seed'], row['iters']) == (name, seed, 2) and 0 <= row['f1'] <= 1
    with pytest.raises(FileNotFoundError, match='radial_ablate@ra-1'): ablation_rows('params.yaml')
    out = study / 'reports' / 'radial_ablation' / 'ra' / 'seed1' / 'radial_variant.ipynb'; out.parent.mkdir(parents=True)
    run_cli('papermill', ROOT / 'nbs/radial/ablations/radial_variant.ipynb', out, '--cwd', study, '-p', 'variant', 'ra', '-p', 'seed', '1',
            '--no-progress-bar', cwd=study)
    executed = json.loads(out.read_text())
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in executed['cells'])
    m = json.loads((out.parent / 'metrics.json').read_text())
    assert (m['variant'], m['representation'], m['camera'], m['seed']) == ('ra', 'ra', False, 1)
    s = summarize_runs(ablation_rows('params.yaml'))
    assert sorted((v['variant'], v['n']) for v in s) == [('ra', 2), ('rd', 2)]   # params order (write_params sorts keys)
    assert [(c['a'], c['b'], c['question'], c['key']) for c in comparisons(s)] == [('ra', 'rd', 'representation', k) for k in ('f1', 'ap', 'bev_ap50')]
    r = run_cli('drivenb-radial-ablation-report', '--params', 'params.yaml', cwd=study)
    assert re.search(r'\| rd( \(not learned\))? \| rd \| no \|', r.stdout) and re.search(r'\| ra( \(not learned\))? \| ra \| no \|', r.stdout), r.stdout   # 2 steps: not learned
    md = (study / 'reports' / 'radial_ablation.md').read_text()
    assert ' ± ' in md and 'Which differences are resolved' in md and 'params-paper.yaml' in md
    assert set(json.loads((study / 'reports' / 'radial_ablation.json').read_text())) == {'rd', 'ra'}
    assert (study / 'reports' / 'radial_ablation.png').stat().st_size > 5_000
    assert (study / 'reports' / 'radial_ablation.csv').read_text().startswith('variant,representation,camera,f1,f1_std,')
