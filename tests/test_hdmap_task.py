"The hdmap task end to end on tiny data: train, resume, evaluate; a stale or missing GT cache and a missing map expansion are refused with named errors."
import json
import shutil
import pytest
from drivenb.config import load_params
from drivenb.train import train
from drivenb.hdmap.task import prepare_tiny, tiny_hdmap_params, evaluate
from drivenb.hdmap.data import build_frames, MapFrames


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('hdmap-task')
    prepare_tiny(root)
    return root


def test_train_resume_evaluate(tiny):
    p = load_params(tiny_hdmap_params(tiny, train={'iters': 3, 'val_every': 3}), study='hdmap')
    s = train(p)
    assert s['steps'] == 3
    p2 = load_params(tiny_hdmap_params(tiny, train={'iters': 5, 'val_every': 5}), study='hdmap')
    s2 = train(p2)                      # resumes from last.pt
    assert s2['steps'] == 5
    m = evaluate(p2)
    assert 0 <= m['mAP'] <= 1 and m['frames'] == 2 and m['step'] in (3, 5)
    saved = json.loads((tiny / 'eval' / 'metrics.json').read_text())
    assert saved['mAP'] == pytest.approx(m['mAP'])
    assert len(list((tiny / 'eval' / 'figures').glob('*.png'))) == 1


def test_stale_cache_is_refused(tiny):
    p = load_params(tiny_hdmap_params(tiny, gt={'min_length': 2.0}), study='hdmap')
    with pytest.raises(ValueError, match='hdmap.gt.min_length'):
        MapFrames(p['hdmap']['data']['frames'], 'train', p['hdmap']['data'], p['hdmap']['gt'])


def test_missing_cache_and_expansion(tiny, tmp_path):
    p = load_params(tiny_hdmap_params(tiny, data={'frames': str(tmp_path / 'none')}), study='hdmap')
    with pytest.raises(FileNotFoundError, match='hdmap_gt'):
        MapFrames(p['hdmap']['data']['frames'], 'train', p['hdmap']['data'], p['hdmap']['gt'])
    ds = tmp_path / 'ds'; shutil.copytree(tiny / 'ds', ds); shutil.rmtree(ds / 'maps' / 'expansion')
    q = load_params(tiny_hdmap_params(tiny, data={'dataroot': str(ds), 'frames': str(tmp_path / 'gt')}), study='hdmap')
    with pytest.raises(FileNotFoundError, match='map expansion not found'):
        build_frames(q, progress=False)
    assert not (tmp_path / 'gt').exists()
