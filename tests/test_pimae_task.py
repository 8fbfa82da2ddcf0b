"The pimae task on tiny data: the seed's distributed recipe under torchrun with 2 processes (total batch split per rank, lr x batch x grad_acc / 256, a named error for an indivisible batch), train + resume + evaluate, stale and missing caches refused."
import csv, json, sys
from pathlib import Path
import pytest, yaml, torch
from conftest import run_cli
from drivenb.config import load_params
from drivenb.train import train
from drivenb.testing import prepare_tiny_pimae, tiny_pimae_params

BIN = Path(sys.executable).parent


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('pimae-task')
    prepare_tiny_pimae(root)
    return root


def _tsv(run, name):
    with open(Path(run) / 'dvclive' / 'plots' / 'metrics' / 'train' / f'{name}.tsv') as f:
        return [(int(r['step']), float(r[name])) for r in csv.DictReader(f, delimiter='\t')]


def test_recipe_under_torchrun_two_processes(tiny, tmp_path):
    "Total batch 4 over 2 gloo ranks = 2 samples per rank; lr 0.016 x 4 x 2 / 256 (grad_acc 2 = steps per update), at full value after warm-up."
    run = tmp_path / 'run2'
    p = tiny_pimae_params(tiny, train={'iters': 2, 'batch_size': 4, 'grad_acc': 2, 'lr': 0.016, 'lr_scale_base': 256, 'warmup': 0.0,
                                       'val_every': 2, 'out': str(run)})
    pf = tmp_path / 'params.yaml'; pf.write_text(yaml.safe_dump(p))
    run_cli('torchrun', '--standalone', '--nproc_per_node=2', '--max_restarts=0', '--no-python', BIN / 'drivenb-train', '--params', pf,
            '--study', 'pimae', '--no_progress', timeout=600)
    env = json.loads((run / 'environment.json').read_text())
    assert env['world_size'] == 2
    assert [v for _, v in _tsv(run, 'rank_batch')] == [2.0, 2.0]                  # each rank's micro-batch: 4 / 2
    lr = _tsv(run, 'lr')
    assert lr[0][1] == pytest.approx(0.016 * 4 * 2 / 256)                          # cosine at step 1 of 2 without warm-up: the peak
    s = json.loads((run / 'summary.json').read_text())
    assert s['steps'] == 2 and torch.load(run / 'last.pt', weights_only=False)['step'] == 2


def test_indivisible_batch_is_refused_by_name(tiny, tmp_path):
    p = tiny_pimae_params(tiny, train={'iters': 1, 'batch_size': 3, 'out': str(tmp_path / 'run3')})
    pf = tmp_path / 'params.yaml'; pf.write_text(yaml.safe_dump(p))
    r = run_cli('torchrun', '--standalone', '--nproc_per_node=2', '--max_restarts=0', '--no-python', BIN / 'drivenb-train', '--params', pf,
                '--study', 'pimae', '--no_progress', check=False, timeout=300)
    assert r.returncode != 0 and 'train.batch_size=3 is not divisible by the world size 2' in r.stdout


def test_train_resume_evaluate_export(tiny):
    import timm
    from drivenb.pimae.task import evaluate
    p = load_params(tiny_pimae_params(tiny, train={'iters': 3, 'val_every': 3}), study='pimae')
    assert train(p)['steps'] == 3
    p2 = load_params(tiny_pimae_params(tiny, train={'iters': 5, 'val_every': 5}), study='pimae')
    assert train(p2)['steps'] == 5                                                # resumes from last.pt
    m = evaluate(p2)
    assert m['frames'] > 0 and m['chamfer_l2'] > 0 and m['psnr'] > 0 and m['step'] == 5
    assert json.loads((tiny / 'eval' / 'metrics.json').read_text())['psnr'] == pytest.approx(m['psnr'])
    assert len(list((tiny / 'eval' / 'figures').glob('*.png'))) == 1 and (tiny / 'eval' / 'losses.png').is_file()
    mp = p2['pimae']['model']; H, W = p2['pimae']['data']['image_hw']; k = mp['patch']
    vit = timm.create_model(mp['image_encoder'], pretrained=False, num_classes=0, global_pool='', class_token=False, patch_size=k,
                            depth=mp['image_depth'] + mp['joint_depth'], img_size=(-(-H // k) * k, -(-W // k) * k), dynamic_img_pad=True)
    vit.load_state_dict(torch.load(m['export'], weights_only=True))                # a plain timm ViT state dict, strictly


def test_stale_and_missing_cache_are_refused(tiny, tmp_path):
    from drivenb.pimae.task import build_datasets
    p = load_params(tiny_pimae_params(tiny, data={'image_hw': [32, 48]}), study='pimae')
    with pytest.raises(ValueError, match='image_hw'):
        build_datasets(p)
    q = load_params(tiny_pimae_params(tiny, data={'out': str(tmp_path / 'none')}), study='pimae')
    with pytest.raises(FileNotFoundError):
        build_datasets(q)
