"Chamfer AP (MapTR's map-element metric, `drivenb.hdmap.metrics`) on random scenes: order invariance, far shifts, monotone thresholds, matching rules, bad input."
import numpy as np
import pytest

from drivenb.hdmap.metrics import (MAP_CLASSES, average_precision, chamfer_ap, chamfer_distance, equivalent_permutations,
                                   resample, tpfp_chamfer)


def _scene(rng, n_frames=3, per_class=3):
    "Random frames of short elements, each inside a 2 m x 2 m box (diameter < 2.9 m) placed anywhere in MapTR's 30 m x 60 m range."
    gts = []
    for _ in range(n_frames):
        f = {}
        for c in MAP_CLASSES:
            els = []
            for _ in range(rng.integers(0, per_class + 1)):
                centre = rng.uniform([-13, -28], [13, 28])
                pts = centre + rng.uniform(-1, 1, (rng.integers(2, 6), 2))
                if c == 'ped_crossing': pts = np.concatenate([pts, pts[:1]]) if len(pts) > 2 else pts
                els.append(pts)
            f[c] = els
        gts.append(f)
    return gts


def _noisy_preds(rng, gts, sigma=0.4, n_fp=2):
    preds = []
    for f in gts:
        p = [(c, float(rng.uniform()), g + rng.normal(0, sigma, g.shape)) for c, els in f.items() for g in els]
        p += [(str(rng.choice(MAP_CLASSES)), float(rng.uniform()), rng.uniform([-15, -30], [15, 30], (4, 2))) for _ in range(n_fp)]
        preds.append(p)
    return preds


def _chamfer_loops(a, b):
    "Independent reference: the two directed mean nearest distances, averaged, with plain loops."
    d_ab = np.mean([min(np.hypot(*(p - q)) for q in b) for p in a])
    d_ba = np.mean([min(np.hypot(*(p - q)) for q in a) for p in b])
    return (d_ab + d_ba) / 2


def test_chamfer_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 7, 2)), rng.normal(size=(4, 5, 2))
    want = np.array([[_chamfer_loops(x, y) for y in b] for x in a])
    np.testing.assert_allclose(chamfer_distance(a, b), want, rtol=1e-12)


def test_resample_spacing_and_ends():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(6, 2)) * 5
    r = resample(p, 37)
    step = np.linalg.norm(np.diff(r, axis=0), axis=1)
    assert r.shape == (37, 2) and np.allclose(r[[0, -1]], p[[0, -1]])
    length = np.linalg.norm(np.diff(p, axis=0), axis=1).sum()
    assert np.all(step <= length / 36 + 1e-9)            # chords never longer than the arc-length step
    straight = resample(np.array([[0., 0.], [10., 0.]]), 11)
    np.testing.assert_allclose(straight[:, 0], np.arange(11.))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_perfect_predictions_score_one_and_order_does_not_matter(seed):
    rng = np.random.default_rng(seed)
    gts = _scene(rng)
    perfect = [[(c, 0.5, g) for c, els in f.items() for g in els] for f in gts]
    r = chamfer_ap(perfect, gts)
    for c in MAP_CLASSES:
        assert r['class_ap'][c] == (1. if r['num_gts'][c] else 0.)
    preds = _noisy_preds(rng, gts)
    reversed_preds = [[(c, s, p[::-1]) for c, s, p in f] for f in preds]
    reversed_gts = [{c: [g[::-1] for g in els] for c, els in f.items()} for f in gts]
    a, b, c_ = chamfer_ap(preds, gts), chamfer_ap(reversed_preds, gts), chamfer_ap(preds, reversed_gts)
    assert a['ap'] == b['ap'] == c_['ap']


@pytest.mark.parametrize('seed', [3, 4])
def test_a_shift_past_every_threshold_gives_zero(seed):
    rng = np.random.default_rng(seed)
    gts = _scene(rng)
    shift = np.array([40., 0.])    # past the 30 m-wide range: no element lands near any GT
    preds = [[(c, 0.9, g + shift) for c, els in f.items() for g in els] for f in gts]
    r = chamfer_ap(preds, gts)
    assert all(ap == 0. for c in MAP_CLASSES for ap in r['ap'][c].values())
    assert r['mAP'] == 0.
    line = {'divider': [np.array([[0., -20.], [0., 20.]])]}    # a perpendicular shift of a straight line: Chamfer == shift
    for dx, want in [(1.49, 1.), (1.51, 0.)]:
        assert chamfer_ap([[('divider', .9, line['divider'][0] + [dx, 0.])]], [line], thresholds=(1.5,))['ap']['divider'][1.5] == want


@pytest.mark.parametrize('seed', [5, 6, 7])
def test_ap_is_monotone_in_the_threshold(seed):
    rng = np.random.default_rng(seed)
    gts = _scene(rng, n_frames=4)
    r = chamfer_ap(_noisy_preds(rng, gts, sigma=0.6), gts, thresholds=(0.25, 0.5, 1.0, 1.5, 3.0))
    for c in MAP_CLASSES:
        aps = list(r['ap'][c].values())
        assert all(x <= y + 1e-7 for x, y in zip(aps, aps[1:])), (c, aps)


def test_tpfp_rules():
    rng = np.random.default_rng(8)
    gt = np.stack([resample(rng.normal(size=(3, 2)) * 4, 20) for _ in range(4)])
    pred = np.concatenate([gt, gt]) + rng.normal(0, .05, (8, 20, 2))   # every GT predicted twice
    tp, fp = tpfp_chamfer(pred, rng.uniform(size=8), gt, 1.5)
    assert tp.dtype == np.float32 and np.all(tp + fp == 1) and tp.sum() <= len(gt)
    tp, fp = tpfp_chamfer(pred, np.ones(8), np.zeros((0, 20, 2)), 1.5)
    assert tp.sum() == 0 and fp.sum() == 8                              # no GT: all false positives


def test_hand_computed_ap_and_empty():
    assert average_precision(np.array([.5, .5, 1.]), np.array([1., .5, 2 / 3])) == pytest.approx(5 / 6, abs=1e-6)
    gts = _scene(np.random.default_rng(9))
    assert chamfer_ap([[] for _ in gts], gts)['mAP'] == 0.


def test_equivalent_permutations_are_the_same_set():
    rng = np.random.default_rng(10)
    ring = rng.normal(size=(5, 2))
    poly = resample(np.concatenate([ring, ring[:1]]), 20)
    perms = equivalent_permutations(poly, closed=True)
    assert perms.shape == (38, 20, 2)
    np.testing.assert_allclose(chamfer_distance(perms, poly[None]), 0, atol=1e-12)
    assert equivalent_permutations(poly[:-1], closed=False).shape == (2, 19, 2)


@pytest.mark.parametrize('call, match', [
    (lambda: chamfer_ap([[('divider', .9, np.zeros((3, 3)))]], [{}]), r'preds\[0\]\[0\] \(divider\): expected shape'),
    (lambda: chamfer_ap([[('lane', .9, np.zeros((3, 2)))]], [{}]), r"unknown class 'lane'"),
    (lambda: chamfer_ap([[]], [{'divider': [np.array([[0, 0], [np.inf, 1]])]}]), r"gts\[0\]\['divider'\]\[0\]: contains non-finite"),
    (lambda: chamfer_ap([[], []], [{}]), r'preds/gts'),
    (lambda: chamfer_distance(np.zeros((2, 2)), np.zeros((1, 2, 2))), r'pred: expected shape'),
    (lambda: resample(np.zeros((1, 2))), r'points: needs at least 2'),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
