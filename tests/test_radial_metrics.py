"""drivenb.radial.metrics on hand-made cases, and against an independent re-implementation of the official
FFTRadNet `GetFullMetrics` counting (valeoai/RADIal `FFTRadNet/utils/metrics.py`, written from its rules with shapely)."""
import numpy as np
import pytest

from drivenb.radial.metrics import (FFT_THRESHOLDS, bev_ap, bev_box_corners, bev_iou, box_iou_matrix, fftradnet_metrics,
                                    freespace_iou, freespace_miou, interpolated_ap, nms_ra, ra_to_box_corners)

shapely = pytest.importorskip('shapely.geometry')


# --- the reference: official rules, per threshold, with shapely polygons ----------------------------------------
def ref_boxes(ra):
    out = []
    for r, a in ra[:, :2]:
        u, v = np.sin(np.radians(a)) * r, np.cos(np.radians(a)) * r
        out.append([u - .9, v, u + .9, v, u + .9, v + 4, u - .9, v + 4])
    return np.array(out).reshape(-1, 8)


def ref_iou(b1, bs):
    p1 = shapely.Polygon(b1.reshape(4, 2))
    out = []
    for b in bs:
        p2 = shapely.Polygon(b.reshape(4, 2)); inter = p1.intersection(p2).area
        out.append(inter / (p1.area + p2.area - inter))
    return np.array(out)


def ref_counts(preds, labels, thr, rmin=5, rmax=100, iou_t=.5, nms=.05):
    tp = fp = fn = 0
    for pred, lab in zip(preds, labels):
        dets = np.zeros((0, 9))
        if len(pred):
            keep = pred[:, -1] > thr
            sc, bx = pred[keep, -1], ref_boxes(pred[keep])
            o = np.argsort(sc)[::-1]; sc, bx = sc[o], bx[o]
            i = 0
            while i < len(bx):                          # greedy NMS, suppress IoU >= nms
                ious = np.zeros(len(bx)); ious[i + 1:] = ref_iou(bx[i], bx[i + 1:])
                m = ious < nms; sc, bx = sc[m], bx[m]; i += 1
            dets = np.hstack([sc[:, None], bx])
            d = (dets[:, 2] + dets[:, 4]) / 2
            dets = dets[(d >= rmin) & (d <= rmax)]
        lab = lab[(lab[:, 0] >= rmin) & (lab[:, 0] <= rmax)] if len(lab) else lab
        gt = ref_boxes(lab) if len(lab) else np.zeros((0, 8))
        if len(gt) and len(dets):
            used = np.zeros(len(gt))
            for det in dets:
                ids = np.where(ref_iou(det[1:], gt) >= iou_t)[0]
                if len(ids): tp += 1; used[ids] = 1
                else: fp += 1
            fn += int((used == 0).sum())
        elif len(gt) == 0: fp += len(dets)
        else: fn += len(gt)
    return (tp / (tp + fp), tp / (tp + fn)) if tp else (0., 0.)


def test_against_reference_random():
    rng = np.random.default_rng(0)
    preds, labels = [], []
    for _ in range(6):
        gt = np.c_[rng.uniform(2, 105, 5), rng.uniform(-45, 45, 5)]
        near = gt[rng.random(5) < .7]
        p = np.c_[near[:, 0] + rng.normal(0, .6, len(near)), near[:, 1] + rng.normal(0, .8, len(near))]
        dup = p[:2] + rng.normal(0, .2, (min(2, len(p)), 2))
        fp = np.c_[rng.uniform(2, 105, 3), rng.uniform(-45, 45, 3)]
        p = np.vstack([p, dup, fp]); p = np.c_[p, rng.uniform(0, 1, len(p))]
        preds.append(p); labels.append(gt)
    preds.append(np.zeros((0, 3))); labels.append(np.c_[[30.], [0.]])      # a frame without predictions
    preds.append(np.array([[30., 0, .9]])); labels.append(np.zeros((0, 2)))  # a frame without labels
    m = fftradnet_metrics(preds, labels)
    ref = np.array([ref_counts(preds, labels, t) for t in FFT_THRESHOLDS])
    np.testing.assert_allclose(m['precision'], ref[:, 0], atol=1e-12)
    np.testing.assert_allclose(m['recall'], ref[:, 1], atol=1e-12)
    assert 0 < m['mAP'] < 1 and 0 < m['mAR'] < 1


def test_clipping_matches_shapely():
    rng = np.random.default_rng(1)
    a = np.c_[rng.uniform(-3, 3, (20, 2)), rng.uniform(1, 5, (20, 2)), rng.uniform(-np.pi, np.pi, 20)]
    b = np.c_[rng.uniform(-3, 3, (15, 2)), rng.uniform(1, 5, (15, 2)), rng.uniform(-np.pi, np.pi, 15)]
    ca, cb = bev_box_corners(a), bev_box_corners(b)
    ref = np.array([[shapely.Polygon(p).intersection(shapely.Polygon(q)).area /
                     shapely.Polygon(p).union(shapely.Polygon(q)).area for q in cb] for p in ca])
    np.testing.assert_allclose(bev_iou(a, b), ref, atol=1e-9)


def test_rotated_copy_iou():
    assert bev_iou(np.array([[3., 4, 4, 2, .3]]), np.array([[3., 4, 4, 2, .3 + np.pi / 2]]))[0, 0] == pytest.approx(1 / 3)
    assert box_iou_matrix(ra_to_box_corners([[20., 0]]), ra_to_box_corners([[21., 0]]))[0, 0] == pytest.approx(3 / 5)


def test_perfect_and_offsets():
    gt = [np.array([[20., 0], [40., 10], [60., -20]])]
    m = fftradnet_metrics([np.c_[gt[0], np.full(3, .99)]], gt)
    assert (m['mAP'], m['mAR'], m['F1']) == (1, 1, 1)
    assert m['range_error'] == m['angle_error'] == m['range_error_polar'] == m['angle_error_polar'] == 0
    m = fftradnet_metrics([np.array([[30.4, 0, .9]])], [np.array([[30., 0]])])   # 0.4 m in range at A = 0
    assert m['range_error_polar'] == pytest.approx(.4) and m['angle_error_polar'] == pytest.approx(0)
    assert m['range_error'] == pytest.approx(0, abs=1e-12) and m['angle_error'] == pytest.approx(.4)  # official quirk
    m = fftradnet_metrics([np.array([[30., 1., .9]])], [np.array([[30., 0]])])   # 1 deg in azimuth
    assert m['angle_error_polar'] == pytest.approx(1.) and m['range_error_polar'] == 0
    assert m['range_error'] == pytest.approx(30 * np.sin(np.radians(1)))          # official: lateral offset, m
    assert m['angle_error'] == pytest.approx(30 * (1 - np.cos(np.radians(1))))


def test_duplicate_removed_by_nms():
    d = np.array([[30., 0, .97], [30.2, .1, .93]])
    assert list(nms_ra(d[:, -1], ra_to_box_corners(d))) == [0]
    m = fftradnet_metrics([d], [np.array([[30., 0]])])
    assert (m['mAP'], m['mAR']) == (1, 1) and (m['tp'] == 1).all() and (m['fp'] == 0).all()


def test_false_positive_and_miss():
    gt = [np.array([[20., 0], [40., 10]])]
    m = fftradnet_metrics([np.array([[20., 0, .95], [40., 10, .95], [80., 30, .35]])], gt)
    np.testing.assert_allclose(m['precision'], [2 / 3] * 3 + [1] * 6)
    assert m['mAP'] == pytest.approx((3 * 2 / 3 + 6) / 9) and m['mAR'] == 1
    m = fftradnet_metrics([np.array([[20., 0, .95]])], gt)
    assert m['mAP'] == 1 and m['mAR'] == pytest.approx(.5) and m['F1'] == pytest.approx(2 * .5 / 1.5)
    m = fftradnet_metrics([np.array([[3., 0, .95]])], [np.array([[3., 0]])])     # both under 5 m: nothing counts
    assert (m['mAP'], m['mAR']) == (0, 0) and np.isnan(m['range_error'])


def test_bad_inputs():
    with pytest.raises(ValueError, match='iou_threshold'): fftradnet_metrics([[]], [[]], iou_threshold=0)
    with pytest.raises(ValueError, match='range_min'): fftradnet_metrics([[]], [[]], range_min=100, range_max=5)
    with pytest.raises(ValueError, match='thresholds'): fftradnet_metrics([[]], [[]], thresholds=[-.1])
    with pytest.raises(ValueError, match='frame 0'): fftradnet_metrics([np.zeros((2, 2))], [[]])
    with pytest.raises(ValueError, match='n_gt'): interpolated_ap([.5], [True], 0)
    with pytest.raises(ValueError, match='iou_thresholds'): bev_ap([], [], [], iou_thresholds=(1.5,))


def test_freespace():
    p = np.zeros((256, 10)); g = np.zeros((256, 10))
    p[:50, :6] = .7; g[:50, 3:] = 1; p[124:] = 1                         # rows >= 124 not scored
    assert freespace_iou(p, g) == pytest.approx(150 / 500)
    assert freespace_iou(p > 2, g > 2) != freespace_iou(p > 2, g > 2)    # both empty: NaN
    assert freespace_miou([p, p > 2], [g, g > 2]) == pytest.approx(.3)


def test_bev_ap_hand_case():
    gt = np.array([[10., 0, 4, 2, 0], [20., 5, 4, 2, 0]])
    pb = np.array([[10., 0, 4, 2, 0], [11., 0, 4, 2, 0], [21., 5, 4, 2, 0]]); ps = np.array([.9, .8, .7])
    r = bev_ap([pb], [ps], [gt], range_bands=(None,))
    assert r['AP@0.5/all'] == pytest.approx((51 + 50 * 2 / 3) / 101) and r['AP@0.7/all'] == pytest.approx(51 / 101)
    # the same detections split over two frames, plus a frame of FPs without GT (skipped, as EchoFusion does)
    r2 = bev_ap([pb[:2], pb[2:], pb[:1] + [0, 30, 0, 0, 0]], [ps[:2], ps[2:], [.95]], [gt[:1], gt[1:], np.zeros((0, 5))],
                range_bands=(None,))
    assert r2 == pytest.approx(r)
    ap, rc = interpolated_ap([.9, .8, .7, .6], [False, True, False, True], 4)
    assert rc == .5 and ap == pytest.approx(51 * .5 / 101)   # envelope 0.5 up to recall 0.5 (51 points), 0 beyond
