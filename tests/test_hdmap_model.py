"The map-element model (`drivenb.hdmap.model`): shapes, parameter names for the engine's groups, the frozen LLM passing gradients, the ablation, local weights, bad params, Q-Former precision."
import re

import pytest
import torch

from drivenb.hdmap.model import MODEL_DEFAULTS, build_model, check_model_params, param_counts
from drivenb.train import grad_flow, param_groups

TINY = dict(out_index=1, query_tokens=8, map_queries=10, qformer_layers=1, llm_layers=1, decoder_layers=1)
FAST = dict(TINY, cameras=1)     # one camera: the gradient tests stay fast
PREFIXES = ('image.', 'qformer.', 'llm.', 'decoder.')


def _x(B=2, S=6):
    return torch.randn(B, S, 3, 32, 64)


def _groups(net):
    t = dict(lr=1e-4, weight_decay=0.01, freeze=[], batch_size=2, grad_acc=1, lr_scale_base=None,
             param_groups=[dict(name='qformer', match=r'^qformer\.', lr=1e-5), dict(name='map_queries', match=r'^map_queries$', lr=1e-4),
                           dict(name='decoder', match=r'^decoder\.', lr=1e-4)])
    return param_groups(net, t)


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return build_model(TINY)


def test_shapes_and_range(net):
    out = net(_x())
    assert out['logits'].shape == (2, 10, 3) and out['points'].shape == (2, 10, 20, 2)
    assert out['logits'].dtype == out['points'].dtype == torch.float32
    r = MODEL_DEFAULTS['pc_range']
    assert (out['points'][..., 0] >= r[0]).all() and (out['points'][..., 0] <= r[2]).all()
    assert (out['points'][..., 1] >= r[1]).all() and (out['points'][..., 1] <= r[3]).all()
    with pytest.raises(ValueError, match='images'):
        net(torch.randn(2, 5, 3, 32, 64))


def test_parameter_names(net):
    names = [n for n, _ in net.named_parameters()]
    for n in names:
        assert sum(n.startswith(p) for p in PREFIXES) + (n == 'map_queries') == 1, n
    assert 'map_queries' in names and 'qformer.query_tokens' in names
    for pat in (r'^qformer\.model\.', r'^qformer\.proj\.', r'^llm\.model\.', r'^image\.backbone\.', r'^image\.cam_embed$', r'^decoder\.cls\.', r'^decoder\.reg\.'):
        assert any(re.search(pat, n) for n in names), pat
    c = param_counts(net)
    assert c['total'] == sum(c[k] for k in ('image', 'qformer', 'llm', 'map_queries', 'decoder'))
    assert c['trainable'] == c['total'] - c['llm']


def test_frozen_llm_passes_gradients():
    torch.manual_seed(0)
    net = build_model(FAST)
    net.train()
    assert not net.llm.model.training and net.image.training
    assert not any(p.requires_grad for p in net.llm.parameters())
    groups = _groups(net)
    assert {g['name'] for g in groups} == {'default', 'qformer', 'map_queries', 'decoder'}
    llm_ids = {id(p) for p in net.llm.parameters()}
    assert not any(id(p) in llm_ids for g in groups for p in g['params'])
    before = {n: p.detach().clone() for n, p in net.llm.named_parameters()}
    opt = torch.optim.AdamW(groups)
    out = net(_x(2, 1))
    (out['logits'].sigmoid().mean() + out['points'].mean()).backward()
    flow = grad_flow(net, groups)
    assert flow['qformer'] > 0 and flow['map_queries'] > 0 and flow['decoder'] > 0 and flow['default'] > 0
    assert flow['frozen'] == 0.0
    assert net.map_queries.grad.abs().sum() > 0 and net.qformer.query_tokens.grad.abs().sum() > 0
    opt.step()
    for n, p in net.llm.named_parameters():
        assert p.grad is None and torch.equal(p, before[n]), n


def test_query_gradients_go_through_the_llm():
    "With the decoder's memory detached, the Q-Former still learns: its only path to the loss is through the LLM."
    torch.manual_seed(0)
    net = build_model(FAST)
    orig = net.decoder.forward
    net.decoder.forward = lambda q, mem: orig(q, mem.detach())
    out = net(_x(1, 1))
    out['points'].mean().backward()
    assert net.qformer.query_tokens.grad.abs().sum() > 0 and net.qformer.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('llm', ['none', 'opt', 'llama'])
def test_llm_kinds(llm):
    net = build_model(dict(FAST, llm=llm))
    out = net(_x(1, 1))
    assert out['points'].shape == (1, 10, 20, 2)
    if llm == 'none':
        assert net.llm is None and not any(n.startswith('llm.') for n, _ in net.named_parameters())
        out['points'].mean().backward()
        assert net.map_queries.grad.abs().sum() > 0


def test_local_llm_folder(tmp_path):
    from transformers import GPT2Config, GPT2Model
    GPT2Model(GPT2Config(vocab_size=64, n_positions=64, n_embd=64, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path / 'lm')
    net = build_model(dict(FAST, llm=str(tmp_path / 'lm')))
    assert net.llm.hidden == 64 and net.map_queries.shape == (10, 64)
    assert net(_x(1, 1))['logits'].shape == (1, 10, 3)


def test_local_weights(tmp_path):
    torch.manual_seed(0)
    src = build_model(TINY)
    torch.save(src.image.backbone.state_dict(), tmp_path / 'bb.pt')
    hf = {('qformer.' + k[6:] if k.startswith('model.') else k.replace('proj.', 'language_projection.')): v for k, v in src.qformer.state_dict().items()}
    torch.save(hf, tmp_path / 'blip2.pt')
    torch.manual_seed(1)
    net = build_model(dict(TINY, backbone_weights=str(tmp_path / 'bb.pt'), qformer_weights=str(tmp_path / 'blip2.pt')))
    for a, b in zip(net.image.backbone.state_dict().values(), src.image.backbone.state_dict().values()):
        assert torch.equal(a, b)
    for k, v in src.qformer.state_dict().items():
        assert torch.equal(net.qformer.state_dict()[k], v), k
    hf['qformer.encoder.layer.7.attention.attention.query.weight'] = torch.zeros(2)   # a deeper Q-Former than ours
    hf['vision_model.post_layernorm.weight'] = torch.zeros(2)                       # not a Q-Former key: ignored silently
    torch.save(hf, tmp_path / 'deeper.pt')
    with pytest.warns(UserWarning, match=r"1 unexpected Q-Former keys in the file \(e.g. \['qformer.encoder.layer.7"):
        build_model(dict(TINY, qformer_weights=str(tmp_path / 'deeper.pt')))
    torch.save({'x': torch.zeros(1)}, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='hdmap.model.qformer_weights'):
        build_model(dict(TINY, qformer_weights=str(tmp_path / 'bad.pt')))


@pytest.mark.parametrize('key,value', [('qformer_hiden', 64), ('qformer_dtype', 'fp16'), ('llm', 'gpt3'), ('pc_range', [1, 2, 3]),
                                       ('n_points', 1), ('map_queries', 0), ('llm_heads', 3), ('backbone', 'no_such_net'),
                                       ('out_index', 9), ('qformer_weights', '/no/file.pt'), ('cameras', 2.5)])
def test_bad_params(key, value):
    with pytest.raises(ValueError, match=f'hdmap.model.{key}'):
        build_model(dict(TINY, **{key: value}))


def test_defaults_validate():
    assert check_model_params({}) == {**MODEL_DEFAULTS, 'pc_range': [float(x) for x in MODEL_DEFAULTS['pc_range']]}


def _qformer_dtypes(net, ctx):
    seen = []
    hooks = [net.qformer.model.register_forward_hook(lambda m, i, o: seen.append(o.last_hidden_state.dtype)),
             net.qformer.model.encoder.layer[0].attention.attention.query.register_forward_hook(lambda m, i, o: seen.append(o.dtype))]
    with ctx:
        out = net(_x(1, 1))
    for h in hooks:
        h.remove()
    return seen, out


def test_qformer_precision():
    torch.manual_seed(0)
    net = build_model(FAST)
    seen, out = _qformer_dtypes(net, torch.autocast('cpu', dtype=torch.bfloat16))
    assert seen == [torch.float32, torch.float32]           # the outer bf16 autocast never reaches the Q-Former
    assert out['logits'].dtype == torch.float32 and out['points'].dtype == torch.float32
    net16 = build_model(dict(FAST, qformer_dtype='bf16'))
    try:
        ctx = torch.autocast('cpu', dtype=torch.float16)
    except (RuntimeError, ValueError):
        pytest.skip('no fp16 autocast on this CPU build')
    seen, _ = _qformer_dtypes(net16, ctx)
    assert seen[0] == torch.bfloat16                        # the query projection inside runs in bf16, not the outer fp16
