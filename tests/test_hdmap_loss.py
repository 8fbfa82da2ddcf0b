"MapTR's set loss (`drivenb.hdmap.loss`): equivalent orders against `hdmap.metrics`, Hungarian matching against brute force, order invariance, empty frames, bad input, overfitting."
import itertools

import numpy as np
import pytest
import torch

from drivenb.hdmap.loss import MAP_LOSS_WEIGHTS, hungarian_match, map_loss, match_cost, normalize_points, permutations_torch
from drivenb.hdmap.metrics import equivalent_permutations

PC = [-30., -15., 30., 15.]


def _poly(rng, n=20):
    p = rng.uniform(-10, 10, (n, 2))
    p[-1] = p[0]
    return p


@pytest.mark.parametrize('both', [True, False])
def test_permutations_match_metrics(both):
    rng = np.random.default_rng(0)
    for P in (3, 4, 20):
        els = [rng.uniform(-10, 10, (P, 2)), _poly(rng, P), rng.uniform(-10, 10, (P, 2)), _poly(rng, P)]
        closed = torch.tensor([False, True, False, True])
        perms, valid = permutations_torch(torch.tensor(np.stack(els)), closed, both_directions=both)
        for g, (e, c) in enumerate(zip(els, closed.tolist())):
            ref = equivalent_permutations(e, c, both_directions=both)
            assert valid[g].sum() == len(ref) == (2 * (P - 1) if c and both else (P - 1 if c else 2))
            np.testing.assert_allclose(perms[g][valid[g]].numpy(), ref)
            assert valid[g][:len(ref)].all()                # the valid rows come first


def test_permutations_bad_input():
    with pytest.raises(ValueError, match='do not end at their first point'):
        permutations_torch(torch.randn(1, 5, 2), torch.tensor([True]))
    with pytest.raises(ValueError, match='closed'):
        permutations_torch(torch.randn(2, 5, 2), torch.tensor([True]))
    with pytest.raises(ValueError, match='points'):
        permutations_torch(torch.randn(5, 2), torch.tensor([True]))


def _naive_cost(lg, pt, gl, gp, gv, wc=2., wp=5.):
    "Matching cost by loops: focal cost (mmdet FocalLossCost) + min over valid orders of the summed L1."
    p = 1 / (1 + np.exp(-lg))
    C = np.zeros((len(lg), len(gl)))
    for i, j in itertools.product(range(len(lg)), range(len(gl))):
        q = p[i, gl[j]]
        cls = .25 * (1 - q) ** 2 * -np.log(q + 1e-12) - .75 * q ** 2 * -np.log(1 - q + 1e-12)
        C[i, j] = wc * cls + wp * min(np.abs(pt[i] - gp[j, k]).sum() for k in range(gp.shape[1]) if gv[j, k])
    return C


@pytest.mark.parametrize('seed', range(8))
def test_hungarian_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    M, G, P = int(torch.randint(3, 6, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g)), 5
    lg, pt = torch.randn(M, 3, generator=g) * 2, torch.rand(M, P, 2, generator=g)
    gpts = torch.rand(G, P, 2, generator=g)
    closed = torch.rand(G, generator=g) < .5
    gpts[closed, -1] = gpts[closed, 0]
    gl = torch.randint(0, 3, (G,), generator=g)
    gp, gv = permutations_torch(gpts, closed)
    r, c, o = hungarian_match(lg, pt, gl, gp, gv)
    C = _naive_cost(lg.numpy(), pt.numpy(), gl.numpy(), gp.numpy(), gv.numpy())
    cost, order = match_cost(lg, pt, gl, gp, gv)
    np.testing.assert_allclose(cost.numpy(), C, rtol=1e-5, atol=1e-5)
    best = min(sum(C[a, j] for j, a in enumerate(rows)) for rows in itertools.permutations(range(M), G))
    assert len(r) == G and len(set(r.tolist())) == G and sorted(c.tolist()) == list(range(G))
    assert abs(C[r.numpy(), c.numpy()].sum() - best) < 1e-4
    for i, j, k in zip(r.tolist(), c.tolist(), o.tolist()):   # the returned order is the cheapest valid one
        assert gv[j, k] and np.isclose(np.abs(pt[i].numpy() - gp[j, k].numpy()).sum(), min(np.abs(pt[i].numpy() - gp[j, q].numpy()).sum() for q in range(gp.shape[1]) if gv[j, q]))


def test_hungarian_empty():
    r, c, o = hungarian_match(torch.randn(4, 3), torch.rand(4, 5, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, 8, 5, 2), torch.zeros(0, 8, dtype=torch.bool))
    assert len(r) == len(c) == len(o) == 0


def _scene():
    t = torch.linspace(0, 1, 20)[:, None]
    line = torch.cat([-20 + 30 * t, 2 + 3 * t ** 2], 1)
    ang = torch.linspace(0, 2 * np.pi, 20)[:, None]
    poly = torch.cat([5 + 3 * ang.cos(), -4 + 2 * ang.sin()], 1)
    poly[-1] = poly[0]
    batch = dict(gt_labels=torch.tensor([[0, 1, -1], [2, -1, -1]]), gt_points=torch.zeros(2, 3, 20, 2),
                 gt_closed=torch.tensor([[False, True, False], [False, False, False]]))
    batch['gt_points'][0, 0], batch['gt_points'][0, 1], batch['gt_points'][1, 0] = line, poly, line.flip(1) * .5
    return batch, line, poly


def test_reversed_and_rolled_predictions_have_zero_point_loss():
    batch, line, poly = _scene()
    for k in (0, 3, 11):
        for flip in (False, True):
            ring = poly[:-1].flip(0) if flip else poly[:-1]
            ring = ring.roll(k, 0)
            pts = torch.rand(2, 7, 20, 2) * 10
            pts[0, 5], pts[0, 2], pts[1, 4] = line.flip(0), torch.cat([ring, ring[:1]]), batch['gt_points'][1, 0].flip(0)
            logits = torch.full((2, 7, 3), -6.)
            logits[0, 5, 0] = logits[0, 2, 1] = logits[1, 4, 2] = 6.
            total, parts = map_loss(dict(logits=logits, points=pts), batch, PC)
            assert parts['pts'] < 1e-5 and parts['dir'] < 1e-5, (k, flip, parts)
            assert abs(parts['cls'] + parts['pts'] + parts['dir'] - parts['total']) < 1e-5
            assert parts['cls'] < .01 and total.dtype == torch.float32 and total.ndim == 0


def test_one_direction_polygon_orders():
    "With `both_directions=False` a polygon drawn the other way is not an equivalent order: it has a point loss."
    batch, line, poly = _scene()
    pts = torch.rand(2, 7, 20, 2)
    pts[0, 0], pts[0, 1] = line, poly.flip(0)
    logits = torch.zeros(2, 7, 3)
    assert map_loss(dict(logits=logits, points=pts), batch, PC)[1]['pts'] < map_loss(dict(logits=logits, points=pts), batch, PC, both_directions=False)[1]['pts']


def test_zero_gt_frames():
    batch, _, _ = _scene()
    batch = {k: v.clone() for k, v in batch.items()}
    batch['gt_labels'][:] = -1
    lg = torch.randn(2, 7, 3, requires_grad=True)
    pts = torch.rand(2, 7, 20, 2, requires_grad=True)
    total, parts = map_loss(dict(logits=lg, points=pts), batch, PC)
    assert parts['pts'] == parts['dir'] == 0. and parts['cls'] > 0
    total.backward()
    assert lg.grad.abs().sum() > 0 and torch.isfinite(pts.grad).all()
    zero = dict(gt_labels=torch.zeros(2, 0, dtype=torch.long), gt_points=torch.zeros(2, 0, 20, 2), gt_closed=torch.zeros(2, 0, dtype=torch.bool))
    assert map_loss(dict(logits=lg, points=pts), zero, PC)[1]['cls'] == parts['cls']      # G = 0 slots: the same


def test_loss_normaliser_and_weights():
    batch, line, poly = _scene()
    out = dict(logits=torch.randn(2, 7, 3), points=torch.rand(2, 7, 20, 2) * 20 - 10)
    _, base = map_loss(out, batch, PC)
    _, w = map_loss(out, batch, PC, dict(cls=1., pts=1., dir=1.))
    for k in ('cls', 'pts', 'dir'):
        assert np.isclose(w[k] * MAP_LOSS_WEIGHTS[k], base[k], rtol=1e-5)
    with pytest.raises(ValueError, match='weights'):
        map_loss(out, batch, PC, dict(bogus=1.))


@pytest.mark.parametrize('bad,match', [(dict(gt_labels=torch.zeros(3, 3, dtype=torch.long)), 'batch'),
                                       (dict(gt_labels=torch.full((2, 3), 5)), 'gt_labels'),
                                       (dict(gt_points=torch.zeros(2, 3, 10, 2)), 'batch')])
def test_bad_batch(bad, match):
    batch, _, _ = _scene()
    with pytest.raises(ValueError, match=match):
        map_loss(dict(logits=torch.randn(2, 7, 3), points=torch.rand(2, 7, 20, 2)), {**batch, **bad}, PC)
    with pytest.raises(ValueError, match='out'):
        map_loss(dict(logits=torch.randn(2, 7, 3)), batch, PC)


def test_normalize_points():
    p = torch.tensor([[-30., -15.], [30., 15.], [0., 0.]])
    np.testing.assert_allclose(normalize_points(p, PC).numpy(), [[0, 0], [1, 1], [.5, .5]])


def test_overfit_raw_tensors():
    batch, _, _ = _scene()
    torch.manual_seed(0)
    lg = torch.zeros(2, 7, 3, requires_grad=True)
    z = (torch.randn(2, 7, 20, 2) * .5).requires_grad_()
    opt = torch.optim.Adam([lg, z], lr=.1)
    r = torch.tensor(PC)
    hist = []
    for _ in range(30):
        tot, _ = map_loss(dict(logits=lg, points=z.sigmoid() * (r[2:] - r[:2]) + r[:2]), batch, PC)
        opt.zero_grad(); tot.backward(); opt.step(); hist.append(tot.item())
    assert hist[-1] < .2 * hist[0], hist


def test_overfit_tiny_model():
    "A tiny `MapQFormer` on one fixed batch: 30 AdamW steps bring the loss down."
    from drivenb.hdmap.model import build_model
    batch, _, _ = _scene()
    batch = {k: v[:1] for k, v in batch.items()}             # one frame, one camera: fast
    torch.manual_seed(0)
    net = build_model(dict(out_index=1, query_tokens=8, map_queries=8, qformer_layers=1, llm_layers=1, decoder_layers=1, cameras=1))
    x = torch.randn(1, 1, 3, 32, 64)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    hist = []
    for _ in range(30):
        tot, _ = map_loss(net(x), batch, net.m['pc_range'])
        opt.zero_grad(); tot.backward(); opt.step(); hist.append(tot.item())
    assert np.mean(hist[-5:]) < .7 * np.mean(hist[:5]), hist
