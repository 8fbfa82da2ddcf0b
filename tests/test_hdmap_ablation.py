"Map-element ablation: variant params, runs over seeds (one under papermill) on the tiny map fixture, the report, and the stages' params list."
import json
import shutil
from pathlib import Path
import pytest
import torch
import yaml
from conftest import ROOT, write_params, run_cli
from drivenb.config import load_params
from drivenb.hdmap.task import tiny_hdmap_params, prepare_tiny
from drivenb.hdmap.ablate import variant_params, run_variant, ablation_rows, summarize_runs, comparisons, INHERITED, TRAIN_INHERITED, BUDGET

VARIANTS = {'base': {}, 'no_llm': {'llm': 'none'}}


@pytest.fixture(scope='module')
def study(tmp_path_factory) -> Path:
    "A throwaway study: the tiny map dataset and GT cache, two variants x two seeds at 2 steps, dvc.yaml (marks the root)."
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp('hdmap_ablation')
    p = tiny_hdmap_params(tmp / 'data', ablation={'iters': 2, 'batch_size': 2, 'seeds': [0, 1], 'variants': VARIANTS})
    prepare_tiny(tmp / 'data')
    write_params(tmp / 'params.yaml', load_params(p))
    shutil.copy(ROOT / 'dvc.yaml', tmp / 'dvc.yaml')
    yield tmp
    torch.set_num_threads(threads)


def test_stage_params_are_what_a_run_reads():
    "The hdmap_ablate stage lists exactly the keys a run inherits, its budget and its variant (so a changed knob reruns it)."
    st = yaml.safe_load((ROOT / 'dvc.yaml').read_text())['stages']['hdmap_ablate']['params']
    want = {'hdmap.ablation.variants.${item.variant}', *[f'hdmap.ablation.{k}' for k in BUDGET], *INHERITED, *[f'hdmap.train.{k}' for k in TRAIN_INHERITED]}
    assert set(st) == want, (set(st) - want, want - set(st))


def test_variant_params(study):
    p = variant_params(study / 'params.yaml', 'no_llm', 1)
    assert (p['hdmap']['model']['llm'], p['train']['iters'], p['train']['seed'], p['train']['freeze']) == ('none', 2, 1, [])
    assert p['hdmap']['data']['image_hw'] == [32, 64] and p['hdmap']['model']['qformer_hidden'] == 32      # inherited from the study
    with pytest.raises(KeyError, match='not in params hdmap.ablation.variants'): variant_params(study / 'params.yaml', 'queries_20')


def test_runs_and_report(study, monkeypatch):
    monkeypatch.chdir(study)
    for name, seed in [('base', 0), ('base', 1), ('no_llm', 0)]:
        row = run_variant(variant_params('params.yaml', name, seed))
        assert (row['variant'], row['seed'], row['iters'], row['frames']) == (name, seed, 2, 2) and 0 <= row['mAP'] <= 1
    with pytest.raises(FileNotFoundError, match='hdmap_ablate@no_llm-1'): ablation_rows('params.yaml')
    out = study / 'reports' / 'hdmap_ablation' / 'no_llm' / 'seed1' / 'hdmap_variant.ipynb'; out.parent.mkdir(parents=True)
    run_cli('papermill', ROOT / 'nbs/hdmap/ablations/hdmap_variant.ipynb', out, '--cwd', study, '-p', 'variant', 'no_llm', '-p', 'seed', '1',
            '--no-progress-bar', cwd=study)
    m = json.loads((out.parent / 'metrics.json').read_text())
    assert (m['variant'], m['llm'], m['seed']) == ('no_llm', 'none', 1)
    s = summarize_runs(ablation_rows('params.yaml'))
    assert sorted((v['variant'], v['n']) for v in s) == [('base', 2), ('no_llm', 2)]
    assert {(c['a'], c['b'], c['question']) for c in comparisons(s)} == {('base', 'no_llm', 'llm')}
    r = run_cli('drivenb-hdmap-ablation-report', '--params', 'params.yaml', cwd=study)
    assert '| no_llm | 1e-05 | none | 8 |' in r.stdout and '| base | 1e-05 | gpt2 | 8 |' in r.stdout, r.stdout
    md = (study / 'reports' / 'hdmap_ablation.md').read_text()
    assert ' ± ' in md and 'Frozen LLM vs none' in md
    assert set(json.loads((study / 'reports' / 'hdmap_ablation.json').read_text())) == {'base', 'no_llm'}
