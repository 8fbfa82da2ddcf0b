"The carla task on the shared trainer: batch shapes, bad input named before training, a short run writing best.pt / last.pt with a finite l1_error, evaluate and its command line."
import json, math, os, subprocess, sys
from pathlib import Path
import pytest
import torch
import yaml
from drivenb.config import load_params
from drivenb.carla.task import (CARLA, prepare, tiny_carla_params, build_datasets, build_model, carla_loss, carla_validate, data_version,
                                evaluate)
from drivenb.train import train, get_task

METRICS = {'l1_error', 'waypoint_ade', 'waypoint_fde', 'junction_acc', 'traffic_light_acc', 'stop_sign_acc', 'density_l1', 'density_f1'}

@pytest.fixture(scope='module')
def carla(tmp_path_factory):
    "A tiny synthetic InterFuser root (towns 1 and 5 x weathers 0 and 14 x 3 frames) and its params."
    threads = torch.get_num_threads(); torch.set_num_threads(1)    # tiny tensors: one thread is far faster on a busy 2-core machine
    root = tmp_path_factory.mktemp('carla')
    raw = tiny_carla_params(root)
    p = load_params(raw, study='carla')
    prepare(p)
    yield root, raw, p
    torch.set_num_threads(threads)

def test_shapes_and_loss(carla):
    _, _, p = carla
    tr, va = build_datasets(p)
    assert (len(tr), len(va)) == (6, 6) and tr.scale == (0.9, 1.1) and va.scale is None
    b = {k: torch.stack([tr[i][k] for i in range(2)]) for k in tr.keys}
    assert tuple(b['rgb'].shape) == (2, 3, 64, 64) and tuple(b['rgb_left'].shape) == (2, 3, 32, 32) and tuple(b['lidar'].shape) == (2, 3, 224, 224)
    assert tuple(b['det_data'].shape) == (2, 400, 7) and tuple(b['command_waypoints'].shape) == (2, 10, 2) and b['is_junction'].dtype == torch.int64
    torch.manual_seed(0)
    net = build_model(p, tr)
    total, parts = carla_loss(net, b)
    assert torch.isfinite(total) and set(parts) == {'traffic', 'velocity', 'waypoints', 'junction', 'traffic_light', 'stop_sign', 'total'}
    v = carla_validate(net, va, 'cpu', p)
    assert set(v) == METRICS and math.isfinite(v['l1_error']) and v['waypoint_ade'] > 0
    assert all(0 <= v[k] <= 1 for k in ('junction_acc', 'traffic_light_acc', 'stop_sign_acc'))
    assert len(data_version(p)) == 16 and CARLA.metric == 'l1_error' and CARLA.mode == 'min'

def test_lmdrive_heads(carla):
    "LMDrive's targets and loss: a 50 x 50 x 8 logit map and 5 waypoints."
    _, raw, _ = carla
    p = load_params(raw, {'carla': {'data': {'targets': 'lmdrive', 'multi_view': False, 'with_lidar': False}, 'model': {'loss': 'lmdrive'}}}, study='carla')
    tr, va = build_datasets(p)
    b = {k: torch.stack([tr[i][k] for i in range(2)]) for k in tr.keys}
    net = build_model(p, tr)
    out = net(b)
    assert tuple(out['traffic'].shape) == (2, 2500, 8) and tuple(out['waypoints'].shape) == (2, 5, 2) and 'lidar' not in b
    assert torch.isfinite(carla_loss(net, b)[0])

def test_bad_input(carla, tmp_path):
    _, raw, p = carla
    with pytest.raises(ValueError, match='carla.model.name'):
        build_datasets(load_params(raw, {'carla': {'model': {'name': 'memfuser_huge'}}}, study='carla'))
    with pytest.raises(FileNotFoundError, match='dataset_index.txt'):
        build_datasets(load_params(raw, {'carla': {'data': {'root': str(tmp_path / 'empty')}}}, study='carla'))
    with pytest.raises(ValueError, match=r'no route of towns \[7\]'):
        build_datasets(load_params(raw, {'carla': {'data': {'val_towns': [7]}}}, study='carla'))
    with pytest.raises(ValueError, match='in both train and val'):
        build_datasets(load_params(raw, {'carla': {'data': {'val_towns': [1, 5]}}}, study='carla'))
    with pytest.raises(ValueError, match='carla.train.lr'):
        load_params(raw, {'carla': {'train': {'lr': -1.0}}}, study='carla')
    with pytest.raises(KeyError, match="did you mean 'view_size'"):
        load_params(raw, {'carla': {'data': {'veiw_size': 32}}})
    with pytest.raises(ValueError, match='carla.data.scale'):
        load_params(raw, {'carla': {'data': {'scale': [1.1, 0.9]}}})
    with pytest.raises(FileNotFoundError, match='no.pt'):
        evaluate(p, tmp_path / 'no.pt')

def test_train_evaluate_cli(carla):
    root, raw, p = carla
    assert get_task('carla') is CARLA
    s = train(raw, study='carla', progress=False)
    out = Path(p['train']['out'])
    assert s['steps'] == 4 and math.isfinite(s['val']['l1_error']) and (out / 'best.pt').is_file() and (out / 'last.pt').is_file()
    ev = evaluate(p)
    assert ev['frames'] == 6 and ev['step'] == 4 and set(ev) == METRICS | {'split', 'frames', 'checkpoint', 'step'}
    f = root / 'params.yaml'; f.write_text(yaml.safe_dump(raw))
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([str(Path(sys.executable).parent / 'drivenb-evaluate-carla'), '--params', str(f), '--set', 'carla.evaluate.split=train'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((Path(p['carla']['evaluate']['out']) / 'metrics.json').read_text())
    assert m['split'] == 'train' and m['frames'] == 6 and 'l1_error' in r.stdout
