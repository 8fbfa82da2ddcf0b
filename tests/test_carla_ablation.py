"Driving ablation: variant params, runs over seeds (one under papermill) scored on four splits, and the report, on the tiny CARLA fixture; the stages' commands (synth and index from params)."
import json, re, shutil
from pathlib import Path
import pytest
import torch
from conftest import ROOT, write_params, run_cli
from drivenb.config import load_params
from drivenb.carla.task import tiny_carla_params, prepare
from drivenb.carla.ablate import variant_params, run_variant, ablation_rows, summarize_runs, comparisons, SPLITS

VARIANTS = {'front': {'multi_view': False, 'with_lidar': False, 'smooth_l1': False},
            'front_smooth': {'multi_view': False, 'with_lidar': False, 'smooth_l1': True}}

@pytest.fixture(scope='module')
def study(tmp_path_factory) -> Path:
    "A throwaway study: tiny synthetic routes (towns 1, 5 x weathers 0, 14), an index of our own, two variants x two seeds at 2 steps, dvc.yaml (marks the root)."
    threads = torch.get_num_threads(); torch.set_num_threads(1)    # tiny tensors: one thread is far faster on a busy 2-core machine
    tmp = tmp_path_factory.mktemp('carla_ablation')
    p = tiny_carla_params(tmp / 'data', data={'index': str(tmp / 'index' / 'dataset_index.txt')},
                          ablation={'iters': 2, 'batch_size': 2, 'seeds': [0, 1], 'variants': VARIANTS, 'train_towns': [1], 'train_weathers': [0],
                                    'heldout_towns': [5], 'heldout_weathers': [14]})
    full = load_params(p)
    write_params(tmp / 'params.yaml', full)
    shutil.copy(ROOT / 'dvc.yaml', tmp / 'dvc.yaml')
    yield tmp
    torch.set_num_threads(threads)

def test_stage_commands(study):
    "carla_synth and carla_index as DVC runs them: every setting from params.yaml; the index selects exactly the requested routes."
    r = run_cli('drivenb-synth-carla', '--params', 'params.yaml', cwd=study)
    assert 'wrote 4 routes x 3 frames' in r.stdout, r.stdout
    r = run_cli('drivenb-synth-carla', '--params', 'params.yaml', '--width', '32', cwd=study, check=False)
    assert r.returncode != 0 and 'do not also give' in r.stdout
    r = run_cli('drivenb-carla-index', '--params', 'params.yaml', cwd=study)
    assert 'ablation_both 1 routes / 3 frames' in r.stdout, r.stdout
    s = json.loads((study / 'index' / 'splits.json').read_text())
    assert [re.search(r'weather-(\d+)/.*town(\d\d)', x).groups() for x in s['ablation_weather']['routes']] == [('14', '01')]
    assert (study / 'index' / 'dataset_index.txt').read_text() == (study / 'data' / 'data' / 'dataset_index.txt').read_text()   # the same lines as the generator's

def test_variant_params(study):
    p = variant_params(study / 'params.yaml', 'front_smooth', 1)
    assert (p['carla']['data']['multi_view'], p['carla']['model']['smooth_l1'], p['train']['iters'], p['train']['seed']) == (False, True, 2, 1)
    assert p['carla']['data']['image_size'] == 64 and p['carla']['data']['index'].endswith('index/dataset_index.txt')   # inherited from the study
    assert (p['carla']['data']['train_towns'], p['carla']['data']['val_towns'], p['carla']['data']['val_weathers']) == ([1], [5], [0])
    with pytest.raises(KeyError, match='not in params carla.ablation.variants'): variant_params(study / 'params.yaml', 'lidar')

def test_runs_and_report(study, monkeypatch):
    monkeypatch.chdir(study)
    prepare(load_params('params.yaml', study='carla'))
    for name, seed in [('front', 0), ('front', 1), ('front_smooth', 0)]:
        row = run_variant(variant_params('params.yaml', name, seed))
        assert (row['variant'], row['seed'], row['iters']) == (name, seed, 2)
        assert [row[f'{s}_frames'] for s in SPLITS] == [3, 3, 3, 3] and row['town_waypoint_ade'] > 0
        assert row['weather_gap_waypoint_ade'] == pytest.approx(row['both_waypoint_ade'] - row['town_waypoint_ade'])
    with pytest.raises(FileNotFoundError, match='carla_ablate@front_smooth-1'): ablation_rows('params.yaml')
    out = study / 'reports' / 'carla_ablation' / 'front_smooth' / 'seed1' / 'carla_variant.ipynb'; out.parent.mkdir(parents=True)
    run_cli('papermill', ROOT / 'nbs/carla/ablations/carla_variant.ipynb', out, '--cwd', study, '-p', 'variant', 'front_smooth', '-p', 'seed', '1',
            '--no-progress-bar', cwd=study)
    executed = json.loads(out.read_text())
    assert any('injected-parameters' in c['metadata'].get('tags', []) for c in executed['cells'])
    m = json.loads((out.parent / 'metrics.json').read_text())
    assert (m['variant'], m['multi_view'], m['smooth_l1'], m['seed']) == ('front_smooth', False, True, 1)
    s = summarize_runs(ablation_rows('params.yaml'))
    assert sorted((v['variant'], v['n']) for v in s) == [('front', 2), ('front_smooth', 2)]
    assert {(c['a'], c['b'], c['question']) for c in comparisons(s)} == {('front_smooth', 'front', 'smooth_l1')}
    r = run_cli('drivenb-carla-ablation-report', '--params', 'params.yaml', cwd=study)
    assert re.search(r'\| front \| front \| no \| L1 \|', r.stdout) and re.search(r'\| front_smooth \| front \| no \| smooth L1 \|', r.stdout), r.stdout
    md = (study / 'reports' / 'carla_ablation.md').read_text()
    assert ' ± ' in md and 'Generalisation gaps' in md and 'weather gap' in md and 'params-paper.yaml' in md
    assert set(json.loads((study / 'reports' / 'carla_ablation.json').read_text())) == {'front', 'front_smooth'}
    assert (study / 'reports' / 'carla_ablation.png').stat().st_size > 5_000
    assert (study / 'reports' / 'carla_ablation.csv').read_text().startswith('variant,multi_view,with_lidar,smooth_l1,seen_l1_error,seen_l1_error_std,')

@pytest.mark.parametrize('dialect', ['interfuser', 'lmdrive'])
def test_index_selects_exactly(tmp_path, dialect):
    "The index written from the folders selects exactly the routes of each split's towns x weathers, in both dialects."
    from drivenb.carla.routes import route_town_weather
    p = tiny_carla_params(tmp_path, synth={'towns': [1, 2, 5], 'weathers': [0, 10, 14], 'frames_per_route': 1, 'dialect': dialect},
                          data={'dialect': dialect, 'index': str(tmp_path / 'index.txt'), 'train_towns': [1, 2], 'val_towns': [5],
                                'train_weathers': [0, 10], 'val_weathers': [0, 10, 14]},
                          ablation={'train_towns': [1, 2], 'train_weathers': [0, 10], 'heldout_towns': [5], 'heldout_weathers': [14]})
    q = load_params(p, study='carla')
    prepare(q)                                             # synthesises the root, then writes the index from its folders
    s = json.loads((tmp_path / 'splits.json').read_text())
    root = Path(q['carla']['data']['root'])
    for name, v in s.items():
        got = sorted(route_town_weather(r, root, dialect) for r in v['routes'])
        assert got == sorted((t, w) for t in v['towns'] for w in v['weathers']), (name, got)
        assert v['frames'] == len(v['routes'])
    assert len(s['train']['routes']) == 4 and len(s['ablation_both']['routes']) == 1
