"The seed's training-setup test (test_training_setup.py) for the map-element study: build, optimizer groups and their learning rates, forward + loss, gradient flow per group through the frozen LLM, one batch of data."
import numpy as np
import pytest
import torch
from drivenb.train import setup, grad_flow
from drivenb.hdmap.task import prepare_tiny, hdmap_loss
from drivenb.hdmap.data import collate_maps


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    p = prepare_tiny(tmp_path_factory.mktemp('hdmap-setup'))
    r = setup(p)
    yield r
    r.lock.release()


def test_model_builds_with_named_stages(run):
    names = [n for n, _ in run.core.named_parameters()]
    for prefix in ('image.', 'qformer.', 'llm.', 'map_queries', 'decoder.'):
        assert any(n.startswith(prefix) for n in names), prefix
    assert type(run.core.qformer.model).__name__ == 'Blip2QFormerModel'


def test_optimizer_groups_and_learning_rates(run):
    g = {x['name']: x for x in run.opt.param_groups}
    assert sorted(g) == ['decoder', 'default', 'map_queries', 'qformer']
    assert (g['qformer']['initial_lr'], g['map_queries']['initial_lr'], g['decoder']['initial_lr']) == (1e-5, 1e-4, 1e-4)
    in_groups = {id(q) for x in run.opt.param_groups for q in x['params']}
    llm = [q for n, q in run.core.named_parameters() if n.startswith('llm.')]
    assert llm and not any(q.requires_grad for q in llm) and not any(id(q) in in_groups for q in llm)
    trainable = [q for q in run.core.parameters() if q.requires_grad]
    assert len(in_groups) == len(trainable)


def test_one_batch_of_data(run):
    b = collate_maps([run.tr_ds[0], run.tr_ds[1]])
    assert b['images'].shape[:3] == (2, 6, 3) and b['images'].dtype == torch.float32
    assert b['gt_points'].shape[2:] == (20, 2) and (b['gt_labels'] >= 0).any()


def test_forward_loss_and_gradient_flow_per_group(run):
    run.opt.zero_grad(set_to_none=True)
    b = collate_maps([run.tr_ds[0], run.tr_ds[1]])
    total, parts = hdmap_loss(run.core, b)
    assert np.isfinite(parts['total']) and parts['total'] > 0 and set(parts) == {'cls', 'pts', 'dir', 'total'}
    total.backward()
    flow = grad_flow(run.core, run.opt.param_groups)
    assert flow['frozen'] == 0.0
    for k in ('default', 'qformer', 'map_queries', 'decoder'): assert flow[k] > 0, (k, flow)
    llm0 = {n: q.detach().clone() for n, q in run.core.named_parameters() if n.startswith('llm.')}
    q0 = run.core.qformer.query_tokens.detach().clone(); m0 = run.core.map_queries.detach().clone()
    run.opt.step()
    assert all(torch.equal(q, llm0[n]) for n, q in run.core.named_parameters() if n.startswith('llm.'))
    assert not torch.equal(q0, run.core.qformer.query_tokens) and not torch.equal(m0, run.core.map_queries)
