"The real nuScenes keyframe (scene-0061) through the adapter and the conversion: targets at the vehicles' ego positions."
import numpy as np, pytest
from conftest import fixture_dir

FX = fixture_dir()
pytestmark = pytest.mark.skipif(FX is None, reason="real nuScenes fixture not found at ../shared/fixtures/nuscenes-scene-0061-sample0 (set DRIVENB_FIXTURE)")

def test_fixture_targets_hold_vehicles():
    from drivenb.nusc import keyframe_from_fixture
    from drivenb.convert import convert_keyframe
    from drivenb.geometry import VoxelGrid
    g = VoxelGrid(((-50, 50), (-50, 50), (-4.5, 5.5)), (200, 8, 200))
    kf = keyframe_from_fixture(FX)
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
    # the parked truck ahead (scene-0061's description) is ~16 m forward, ~4.5 m left
    truck = [b for b in fr['boxes'] if 14 < b[0] < 18 and 3 < b[1] < 6]
    assert truck and fr['seg'][0, int((16.2 + 50) // 0.5), int((4.5 + 50) // 0.5)] == 1
    # nothing positive far from every box
    assert fr['seg'][0, :10, :10].sum() == 0 or any(b[0] < -44 and b[1] < -44 for b in fr['boxes'])
