"""drivenb's default BEV targets equal the official Simple-BEV rule (`get_seg_bev`, `nuscenesdataset.py`), re-implemented
here independently of drivenb's rasteriser: the 8 box corners from centre, size and rotation matrix; the 4 highest ones
(official: `topk` of the smallest camera y); memory coordinates `(p - min) / voxel - 0.5`; `astype(int32)`; the corner
order `[0, 1, 3, 2]`; `cv2.fillPoly`.

It runs on the real nuScenes keyframe (scene-0061 in `../shared/fixtures`, or `$DRIVENB_FIXTURE`) where it is found,
else on a synthetic keyframe read through the devkit path, in both grids: Simple-BEV's (reference camera frame) and
drivenb's (ego frame)."""
import cv2, numpy as np, pytest
from pyquaternion import Quaternion

@pytest.fixture(scope='module')
def keyframe():
    from drivenb.testing import fixture_keyframe
    kf, fx = fixture_keyframe()
    return kf, fx is not None

def corners8(b):
    "(8, 3) corners of a devkit box from its centre, size (w, l, h) and rotation matrix, in the box's frame."
    w, l, h = b.wlh
    local = np.array([[sx * l / 2, sy * w / 2, sz * h / 2] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)])
    return local @ b.rotation_matrix.T + b.center

def official_rule(boxes, vis, shape, lo, vox, up, plane):
    """seg, valid (shape) of the official rule. `up`: (axis, sign) of 'up' in the frame (camera: (1, -1), y down);
    `plane`: the two frame axes giving the cv2 point (column, row)."""
    seg, val = np.zeros(shape), np.ones(shape)
    for n, b in enumerate(boxes):
        xyz = corners8(b)
        top = np.argsort(-up[1] * xyz[:, up[0]], kind='stable')[:4]
        mem = (xyz[top][:, plane] - np.asarray(lo)[list(plane)]) / np.asarray(vox)[list(plane)] - 0.5
        pts = mem.astype(np.int32)[[0, 1, 3, 2]]
        cv2.fillPoly(seg, [pts], n + 1.0)
        if vis[n] == 1: cv2.fillPoly(val, [pts], 0.0)
    return (seg > 0).astype(np.float32), val.astype(np.float32)

def to_frame(boxes, T):
    "Devkit boxes moved by the 4x4 rigid transform T."
    out = []
    for b in boxes:
        b = b.copy(); b.rotate(Quaternion(matrix=T[:3, :3], atol=1e-6)); b.translate(T[:3, 3]); out.append(b)
    return out

def test_targets_equal_official_rule_camera_grid(keyframe):
    from drivenb.bev.targets import bev_targets
    from drivenb.geometry import simplebev_grid, invert_T
    kf, real = keyframe
    vb, vis = kf.vehicle_boxes()
    assert len(vb) >= 5
    cam = to_frame(vb, invert_T(kf.ego_T_cams[1]))                   # CAM_FRONT, Simple-BEV's reference camera
    ours = bev_targets(cam, vis, simplebev_grid((200, 8, 200)))
    seg, val = official_rule(cam, vis, (200, 200), lo=(-50, -4, -50), vox=(0.5, 1.25, 0.5), up=(1, -1), plane=(0, 2))
    assert seg.sum() > 50
    np.testing.assert_array_equal(ours['seg'][0], seg)
    np.testing.assert_array_equal(ours['valid'][0], val)
    if real:   # the real frame's ego tilt (~1.4 deg) moves edge cells between the faces (15 on scene-0061)
        bottom = bev_targets(cam, vis, simplebev_grid((200, 8, 200)), face='bottom')['seg'][0]
        assert 5 <= (bottom != seg).sum() <= 40, (bottom != seg).sum()

def test_targets_equal_official_rule_ego_grid(keyframe):
    from drivenb.bev.targets import bev_targets
    from drivenb.geometry import VoxelGrid
    kf, _ = keyframe
    vb, vis = kf.vehicle_boxes()
    g = VoxelGrid(((-50, 50), (-50, 50), (-4.5, 5.5)), (200, 8, 200))   # x forward (rows), y left (columns)
    ours = bev_targets(vb, vis, g)
    seg, val = official_rule(vb, vis, (200, 200), lo=(-50, -50, -4.5), vox=(0.5, 0.5, 1.25), up=(2, 1), plane=(1, 0))
    assert seg.sum() > 50
    np.testing.assert_array_equal(ours['seg'][0], seg)
    np.testing.assert_array_equal(ours['valid'][0], val)

def test_convert_defaults_are_official():
    "The conversion defaults: top face, no camera ego-motion compensation (Simple-BEV's static calibration)."
    import inspect
    from drivenb.config import DEFAULTS
    from drivenb.bev.convert import convert_keyframe
    from drivenb.nusc import load_keyframe
    assert DEFAULTS['convert']['face'] == 'top' and DEFAULTS['convert']['ego_motion'] is False
    assert inspect.signature(convert_keyframe).parameters['face'].default == 'top'
    assert inspect.signature(load_keyframe).parameters['ego_motion'].default is False
