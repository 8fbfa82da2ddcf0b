"""A keyframe through the adapter and the conversion: targets at the vehicles' ego positions.

The keyframe is the real nuScenes one (scene-0061, `../shared/fixtures/nuscenes-scene-0061-sample0`, or
`$DRIVENB_FIXTURE`) where it is found, else a synthetic one read through `open_nuscenes` + `load_keyframe`:
the checks run either way; only the facts of scene-0061 (the parked truck) need the real one."""
import numpy as np, pytest

@pytest.fixture(scope='module')
def keyframe():
    "(Keyframe, True) from the real fixture, or (Keyframe, False) from a tiny synthetic dataset where it is absent."
    from drivenb.testing import fixture_keyframe
    kf, fx = fixture_keyframe()
    return kf, fx is not None

def test_fixture_targets_hold_vehicles(keyframe):
    from drivenb.bev.convert import convert_keyframe
    from drivenb.geometry import VoxelGrid
    kf, real = keyframe
    g = VoxelGrid(((-50, 50), (-50, 50), (-4.5, 5.5)), (200, 8, 200))
    fr = convert_keyframe(kf, (224, 400), g)
    vb, _ = kf.vehicle_boxes()
    assert len(fr['boxes']) == len(vb) >= 10
    inside = 0
    for b in fr['boxes']:
        x, y = b[:2]
        if abs(x) < 49 and abs(y) < 49:
            k, i = int((x + 50) // 0.5), int((y + 50) // 0.5)
            assert fr['seg'][0, k, i] == 1, (x, y)
            k0, i0 = np.round([(x + 50) / 0.5 - 0.5, (y + 50) / 0.5 - 0.5]).astype(int)
            assert fr['center'][0, k0, i0] == pytest.approx(1.0)
            inside += 1
    assert inside >= 5
    # nothing positive far from every box: each positive cell centre lies within a box's half-diagonal + 1 m of its centre
    # (the Simple-BEV raster inflates a footprint by about half a 0.5 m cell and shifts it by up to one)
    c = (np.arange(200) + 0.5) * 0.5 - 50                                            # cell centres, metres
    pos = np.stack(np.nonzero(fr['seg'][0]), 1)                                      # (P, 2) forward, lateral indices
    assert len(pos) > 0
    xy = np.stack([c[pos[:, 0]], c[pos[:, 1]]], 1)                                   # (P, 2) metres in ego x, y
    reach = np.hypot(fr['boxes'][:, 3], fr['boxes'][:, 4]) / 2 + 1.0                 # (N,) half-diagonal + margin
    d = np.linalg.norm(xy[:, None] - fr['boxes'][None, :, :2], axis=-1) - reach[None]  # (P, N)
    assert (d.min(1) <= 0).all(), xy[d.min(1) > 0][:5]
    if real:
        # the parked truck ahead (scene-0061's description) is ~16 m forward, ~4.5 m left
        truck = [b for b in fr['boxes'] if 14 < b[0] < 18 and 3 < b[1] < 6]
        assert truck and fr['seg'][0, int((16.2 + 50) // 0.5), int((4.5 + 50) // 0.5)] == 1
