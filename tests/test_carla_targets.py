"""Independent checks of `drivenb.carla.targets` (InterFuser / LMDrive heatmap, det_data, lidar histogram, waypoints).

The expected values are derived here from the official rules (opendilab/InterFuser `interfuser/timm/data/{heatmap_utils,
det_utils,carla_dataset}.py`, opendilab/LMDrive `vision_encoder/timm/data/` counterparts) by geometry, not by re-running
the library code: pixel bounds of axis-aligned boxes, the 90-degree rotation of the map, the nearest-actor rule of
every lit density cell, histogram counts of hand-placed points, and the ego frame of the waypoints."""
import math

import numpy as np
import pytest

from drivenb.carla.targets import (VARIANTS, classification_labels, command_onehot, ego_waypoints, frame_targets,
                                   generate_det_data, generate_heatmap, img_traffic, interfuser_lidar,
                                   lidar_to_histogram_features, lmdrive_reduced_heatmap, measurement_vector, target_point)

EGO = np.array([-37.0, 112.0])


def rot(a):
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def world(theta, offsets):
    "Ego-frame offsets (x right, y back, m) -> CARLA world x, y for an ego with compass `theta` at EGO."
    return [list(EGO + rot(theta) @ np.asarray(o, float)) + [0.5] for o in offsets]


def meas(theta, **kw):
    m = dict(x=EGO[0], y=EGO[1], theta=theta, affected_light_id=-1, is_vehicle_present=[], is_bike_present=[],
             is_junction_vehicle_present=[], is_pedestrian_present=[])
    m.update(kw)
    return m


def car(theta, off, fwd, box, vel=(0, 0, 0), tpe=0):
    return dict(loc=world(theta, [off])[0], ori=list(rot(theta) @ np.asarray(fwd, float)) + [0.0], box=list(box),
                vel=list(vel), tpe=tpe)


@pytest.mark.parametrize('theta', [0.0, 0.7, -2.9])
@pytest.mark.parametrize('off', [(0.0, -10.0), (-6.4, 3.2), (4.2, -15.8)])
def test_axis_aligned_box_pixels(theta, off):
    # car along the ego's forward axis: x half-width 0.94 m, y half-length 2.26 m; pixel = (m + 18) * 5, np.around
    hm = generate_heatmap(meas(theta), {'5': car(theta, off, (0, -1), (2.26, 0.94))})
    c0, c1 = np.around((off[0] + 18 + np.array([-0.94, 0.94])) * 5).astype(int)
    r0, r1 = np.around((off[1] + 18 + np.array([-2.26, 2.26])) * 5).astype(int)
    want = np.zeros((180, 180), np.uint8)
    want[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1] = 255
    np.testing.assert_array_equal(hm, want)


def test_round_half_to_even():
    # 2 px/m: bounds land on exact halves; np.around gives even pixels (12, 20 / 34, 38), not round-half-up (13, 35)
    hm = generate_heatmap(meas(0.0), {'5': car(0.0, (0, -10), (0, -1), (1.75, 0.75))}, pixels_per_meter=2)
    r, c = np.nonzero(hm)
    assert (r.min(), r.max(), c.min(), c.max()) == (12, 20, 34, 38)


def test_ego_turn_rotates_map():
    actors = {'5': car(0.0, (0, -10), (0, -1), (2.26, 0.94)), '6': car(0.0, (-5, 2), (1, 0), (2.0, 0.8)),
              '7': car(0.0, (7, -3), (0, 1), (0.3, 0.3), tpe=1)}
    h0 = generate_heatmap(meas(0.0), actors)
    h1 = generate_heatmap(meas(math.pi / 2), actors)     # ego turned right by 90 deg, world fixed
    # ego on pixel (90, 90): new[i, j] = old[j, 180 - i]
    np.testing.assert_array_equal(h1[1:], np.rot90(h0)[:-1])
    assert h0.sum() > 0


def test_walker_enlargement_and_exclusions():
    ped = car(0.0, (3.1, -6), (0, -1), (0.25, 0.22), tpe=1)
    actors = {'1': car(0.0, (0.3, 0.2), (0, -1), (2.4, 1.0)),        # the ego (within 1 m): removed
              '2': ped,
              '3': dict(loc=world(0.0, [(0, -5)])[0], ori=[0, 1, 0], tpe=2, sta=0, taigger_loc=[0, 0, 0],
                        trigger_ori=[1, 0, 0], trigger_box=[2, 2])}  # the affected light: never drawn
    m = meas(0.0, affected_light_id=3)
    h = generate_heatmap(m, actors)
    r, c = np.nonzero(h)
    # InterFuser: half-extents x1.5 -> (0.375, 0.33): cols (21.1 -+ 0.33) * 5 = 103.85, 107.15; rows (12 -+ 0.375) * 5
    assert (c.min(), c.max(), r.min(), r.max()) == (104, 107, 58, 62)
    hl = generate_heatmap(m, actors, variant='lmdrive')
    r, c = np.nonzero(hl)
    # LMDrive: scaled so the half-length is 1.5 m -> (1.5, 1.32): cols (33.1 -+ 1.32) * 5 = 158.9, 172.1;
    # rows (24 -+ 1.5) * 5 = 112.5, 127.5 -> half to even: 112, 128
    assert (c.min(), c.max(), r.min(), r.max()) == (159, 172, 112, 128)


def test_actor_in_present_list_near_ego_is_drawn_unless_last():
    a = {'1': car(0.0, (0.0, 0.0), (0, -1), (2.4, 1.0)), '9': car(0.0, (0.5, -0.5), (0, -1), (2.4, 1.0))}
    assert generate_heatmap(meas(0.0), a).sum() == 0                          # both near: colour 0, '9' deleted
    assert generate_heatmap(meas(0.0, is_vehicle_present=[1]), a).sum() > 0   # '1' is not the last and is "present"
    assert generate_heatmap(meas(0.0, is_vehicle_present=[9]), a).sum() == 0  # '9' is the last: deleted anyway


def random_scene(rng, theta, d):
    actors = {}
    for k in range(int(rng.integers(3, 12))):
        r, a = rng.uniform(2, d * 1.2), rng.uniform(0, 2 * np.pi)
        yaw = rng.uniform(0, 2 * np.pi)
        actors[str(100 + k)] = car(theta, (r * np.cos(a), r * np.sin(a)), (np.cos(yaw), np.sin(yaw)),
                                   (rng.uniform(1.6, 2.6), rng.uniform(0.7, 1.1)), vel=rng.normal(0, 3, 3))
    return actors


@pytest.mark.parametrize('variant', ['interfuser', 'lmdrive'])
def test_det_cells_encode_nearest_actor(variant):
    rng = np.random.default_rng(3)
    var = VARIANTS[variant]
    d, G = var.max_distance, var.grid
    for _ in range(4):
        theta = rng.uniform(-np.pi, np.pi)
        actors = random_scene(rng, theta, d)
        m = meas(theta)
        hm = generate_heatmap(m, actors, variant=variant)
        det = generate_det_data(hm, m, actors, variant=variant)
        assert det.shape == (G, G, var.channels) and det.dtype == np.float32
        # ego frame with y flipped (forward = +y), heading vector not flipped
        cent = {k: rot(theta).T @ (np.array(a['loc'][:2]) - EGO) * [1, -1] for k, a in actors.items()}
        keep = {k: c for k, c in cent.items() if 1 < c @ c < (d + 3) ** 2 * 2}
        blocks = hm.reshape(2 * d, 5, 2 * d, 5).mean(axis=(1, 3))[:G, var.col0:var.col0 + G]
        lit = blocks >= 0.05 * 255
        assert lit.sum() > 0
        np.testing.assert_array_equal(det[..., 0] > 0, lit)
        assert np.all(det[~lit] == 0)
        for i, j in zip(*np.nonzero(lit)):
            cx, cy = j - (d - var.col0 - 0.5), (d - 0.5) - i            # cell centre, m
            k = min(keep, key=lambda q: np.sum((keep[q] - [cx, cy]) ** 2))
            r = float(np.linalg.norm(keep[k] - [cx, cy]))
            v = det[i, j]
            np.testing.assert_allclose([cx + 3.5 * v[1], cy + 3.5 * v[2]], keep[k], atol=1e-4)
            a = actors[k]
            size, speed = v[-3:-1], v[-1]
            np.testing.assert_allclose(size, [a['box'][0] / 3.5, a['box'][1] / 2], atol=1e-6)
            np.testing.assert_allclose(speed, np.linalg.norm(a['vel']) / 8, atol=1e-5)
            fwd = rot(theta).T @ np.array(a['ori'][:2])
            if variant == 'interfuser':
                np.testing.assert_allclose(v[0], math.sqrt(0.5 / max(0.5, r)), atol=1e-6)
                yaw = math.atan2(fwd[1], fwd[0]) % (2 * math.pi)              # in the un-flipped frame
                assert abs(((2 * v[3] * math.pi - yaw + math.pi) % (2 * math.pi)) - math.pi) < 1e-4
            else:
                np.testing.assert_allclose(v[0], math.sqrt(0.5 / max(0.5, r - math.sqrt(0.5))), atol=1e-6)
                np.testing.assert_allclose(v[3:5], fwd, atol=1e-6)


def test_img_traffic_and_reduced_heatmap():
    hm = generate_heatmap(meas(0.0), {'5': car(0.0, (0, -10), (0, -1), (2.26, 0.94))})
    t = img_traffic(hm)
    assert t.shape == (1, 100, 100) and t.dtype == np.float32
    np.testing.assert_array_equal(t[0] * 255, hm[:100, 40:140])              # 18 m ahead .. 2 m behind, x in [-10, 10]
    hl = generate_heatmap(meas(0.0), {'5': car(0.0, (0, -10), (0, -1), (2.26, 0.94))}, variant='lmdrive')
    assert img_traffic(hl, 'lmdrive').shape == (1, 250, 250)
    red, mask = lmdrive_reduced_heatmap(hl)
    assert red.shape == (1, 50, 50) and mask.sum() == 10
    assert red[0][mask].min() >= red[0][~mask].max()
    with pytest.raises(ValueError, match='180'):
        img_traffic(hl, 'interfuser')


def test_lidar_histogram():
    x_edges, y_edges = np.linspace(-28, 29, 225), np.linspace(-28, 0, 225)
    pts = np.array([[5.3, -12.3, -2.4, 1]] * 9 + [[5.3, -12.3, 0.4, 1]] * 2 + [[-27.9, -27.9, -3, 1], [40, -1, 0, 1],
                                                                                  [0, 2, 0, 1], [0, -29, 0, 1]])
    f = lidar_to_histogram_features(pts)
    assert f.shape == (3, 224, 224) and f.dtype == np.float32
    i, j = np.searchsorted(x_edges, 5.3) - 1, np.searchsorted(y_edges, -12.3) - 1
    np.testing.assert_allclose(f[:, i, j], [1.0, 0.4, 1.4])                  # 9 below clip at 5; 2 above
    np.testing.assert_allclose(f[:, 0, 0], [0.2, 0.0, 0.2])
    np.testing.assert_allclose(f.sum(axis=(1, 2)), [1.2, 0.4, 1.6], rtol=1e-6)  # the 3 out-of-range points vanish
    np.testing.assert_array_equal(interfuser_lidar(pts * [1, -1, 1, 1]), f)  # the dataset negates the raw y
    for bad in (np.zeros((5, 2)), np.zeros(12), np.zeros((2, 5, 4))):
        with pytest.raises(ValueError, match='lidar'):
            lidar_to_histogram_features(bad)


@pytest.mark.parametrize('theta', [0.0, 1.1, -2.5, float('nan')])
def test_waypoints_and_target_point_frame(theta):
    th = 0.0 if math.isnan(theta) else theta                                  # the dataset sets NaN theta to 0
    g = np.array([3.0, -8.0])
    head, right = np.array([math.cos(th), math.sin(th)]), np.array([math.cos(th + math.pi / 2), math.sin(th + math.pi / 2)])
    m = dict(gps_x=g[0], gps_y=g[1], x=1e6, y=1e6, theta=theta, future_waypoints=[list(g + 4 * head), list(g + 3 * right)],
             x_command=float((g + 12 * head)[0]), y_command=float((g + 12 * head)[1]))
    w = ego_waypoints(m)
    assert w.shape == (10, 2) and w.dtype == np.float32
    np.testing.assert_allclose(w[:2], [[0, -4], [3, 0]], atol=1e-5)          # forward -> (0, -d), right -> (+d, 0)
    assert np.all(w[2:] == 10000)
    np.testing.assert_allclose(target_point(m), [0, -12], atol=1e-5)
    m2 = {k: v for k, v in m.items() if k not in ('gps_x', 'gps_y')}
    m2.update(x=g[0], y=g[1])                                                 # no gps_x/gps_y: falls back to x, y
    np.testing.assert_allclose(ego_waypoints(m2), w)


def test_waypoints_truncate_and_nan():
    m = dict(gps_x=0.0, gps_y=0.0, theta=0.0, future_waypoints=[[float(k), 0.0] for k in range(1, 30)] + [[np.nan, 0]])
    w = ego_waypoints(m)
    np.testing.assert_allclose(w[:, 1], -np.arange(1, 11), atol=1e-5)
    w = ego_waypoints(dict(m, future_waypoints=[[np.nan, 1.0]]))
    assert np.all(w[0] == 0) and np.all(w[1:] == 10000)


def test_command_measurements_and_labels():
    for cmd, idx in [(-1, 3), (0, 3), (1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5)]:
        v = command_onehot(cmd)
        assert v.dtype == np.float32 and v.sum() == 1 and v[idx] == 1
    with pytest.raises(ValueError, match='command'):
        command_onehot(8)
    np.testing.assert_array_equal(measurement_vector({'command': 2, 'speed': 4.25}), [0, 1, 0, 0, 0, 0, 4.25])
    lab = classification_labels({'is_junction': True, 'is_red_light_present': [], 'stop_sign': 0})
    assert lab == {'is_junction': 1, 'traffic_light_state': 1, 'stop_sign': 0}
    lab = classification_labels({'is_junction': 1, 'is_red_light_present': [44]}, affordances={'stop_sign': True})
    assert lab == {'is_junction': 0, 'traffic_light_state': 0, 'stop_sign': 1}  # only a JSON `true` is a junction
    with pytest.raises(KeyError, match='stop_sign'):
        classification_labels({'is_junction': False, 'is_red_light_present': []})


def test_frame_targets_shapes():
    m = meas(0.3, gps_x=-EGO[1], gps_y=EGO[0], x_command=0.0, y_command=0.0, command=4, speed=1.0, is_junction=False,
             is_red_light_present=[], future_waypoints=[], stop_sign=0)
    a = random_scene(np.random.default_rng(1), 0.3, 18)
    t = frame_targets(m, a)
    assert t['det_data'].shape == (400, 7) and t['img_traffic'].shape == (1, 100, 100)
    assert t['command_waypoints'].shape == (10, 2) and t['measurements'].shape == (7,) and t['command'] == 3
    tl = frame_targets(m, a, variant='lmdrive')
    assert tl['det_data'].shape == (2500, 8) and tl['heatmap_mask'].shape == (50, 50)


def test_bad_input_names_the_problem():
    a = {'5': car(0.0, (0, -10), (0, -1), (2.26, 0.94))}
    with pytest.raises(KeyError, match="'theta'"):
        generate_heatmap({'x': 0, 'y': 0}, a)
    with pytest.raises(KeyError, match="'box'"):
        generate_heatmap(meas(0.0), {'5': {k: v for k, v in a['5'].items() if k != 'box'}})
    with pytest.raises(KeyError, match="'tpe'"):
        generate_heatmap(meas(0.0), {'5': {k: v for k, v in a['5'].items() if k != 'tpe'}})
    with pytest.raises(ValueError, match='variant'):
        generate_det_data(np.zeros((180, 180), np.uint8), meas(0.0), a, variant='tf++')
    with pytest.raises(ValueError, match=r'\(180, 180\)'):
        generate_det_data(np.zeros((100, 100), np.uint8), meas(0.0), a)
    with pytest.raises(KeyError, match="'x_command'"):
        target_point({'gps_x': 0, 'gps_y': 0, 'theta': 0})
    hm = generate_heatmap(meas(0.0), a)
    with pytest.raises(KeyError, match="'vel'"):
        generate_det_data(hm, meas(0.0), {'5': {k: v for k, v in a['5'].items() if k != 'vel'}})
