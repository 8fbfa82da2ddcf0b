"The synthetic map expansion: the devkit loads it, scenes of a location do not overlap, and the map agrees with the painted lines."
import numpy as np
import pytest
from PIL import Image
from pyquaternion import Quaternion
from nuscenes import NuScenes
from nuscenes.map_expansion.map_api import NuScenesMap
from drivenb.synth.writers import generate
from drivenb.synth.maps import MAP_LOCATIONS, project_to_camera, scene_location, location_slots, slot_spacing, scene_offset


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('synth-maps')
    generate(r, n_scenes=8, n_keyframes=2, progress=False)
    return r


def _T(rec):
    M = np.eye(4); M[:3, :3] = Quaternion(rec['rotation']).rotation_matrix; M[:3, 3] = rec['translation']; return M


def test_locations_and_slots():
    assert {scene_location(i) for i in range(4)} == set(MAP_LOCATIONS)
    slots = location_slots(40)
    for loc in MAP_LOCATIONS:                      # every location holds every condition (scene i has condition i % 4)
        assert {i % 4 for i, (l, _) in slots.items() if l == loc} == {0, 1, 2, 3}
    sp = slot_spacing(10)
    offs = [scene_offset(j, 10, sp) for j in range(10)]
    d = min(np.linalg.norm(a - b) for i, a in enumerate(offs) for b in offs[i + 1:])
    assert d == pytest.approx(sp)


def test_devkit_loads_every_location(root):
    nusc = NuScenes('v1.0-synth', str(root), verbose=False)
    assert {l['location'] for l in nusc.log} <= set(MAP_LOCATIONS)
    for loc in MAP_LOCATIONS:
        m = NuScenesMap(str(root), loc)
        assert m.version == '1.3' and len(m.road_segment) == 2 and len(m.lane) >= 4 and len(m.road_divider) == 2
        mask = nusc.get('map', [r for r in nusc.map if any(nusc.get('log', t)['location'] == loc for t in r['log_tokens'])][0]['token'])
        assert (root / mask['filename']).exists()


@pytest.mark.parametrize('layer', ['lane_divider', 'road_divider'])
def test_map_dividers_fall_on_painted_lines(root, layer):
    "Project every divider into CAM_FRONT of each scene's first keyframe: the image is brighter on it than 1 m to either side."
    nusc = NuScenes('v1.0-synth', str(root), verbose=False)
    maps = {loc: NuScenesMap(str(root), loc) for loc in MAP_LOCATIONS}
    checked = 0
    for sc in nusc.scene:
        m = maps[nusc.get('log', sc['log_token'])['location']]
        sd = nusc.get('sample_data', nusc.get('sample', sc['first_sample_token'])['data']['CAM_FRONT'])
        cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        cam_T_g = np.linalg.inv(_T(nusc.get('ego_pose', sd['ego_pose_token'])) @ _T(cs))
        img = np.asarray(Image.open(root / sd['filename'])).astype(float).mean(-1); H, W = img.shape
        on, off = [], []
        for rec in getattr(m, layer):
            nodes = [m.get('node', t) for t in m.get('line', rec['line_token'])['node_tokens']]
            a, b = np.array([nodes[0]['x'], nodes[0]['y']]), np.array([nodes[-1]['x'], nodes[-1]['y']])
            P = a + (b - a) * np.linspace(0, 1, 4000)[:, None]; n = np.array([a[1] - b[1], b[0] - a[0]]) / np.linalg.norm(b - a)
            for shift, out in ((0., on), (1., off), (-1., off)):
                uv, keep = project_to_camera(P + shift * n, cam_T_g, cs['camera_intrinsic'], near=3.)
                X = (P + shift * n)[keep]
                uv = uv[np.linalg.norm(X - nusc.get('ego_pose', sd['ego_pose_token'])['translation'][:2], axis=1) < 25]
                uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)].round().astype(int)
                out.extend(img[uv[:, 1], uv[:, 0]])
        if on:
            checked += 1
            assert np.mean(on) > np.mean(off) + 1.0, (sc['name'], sc['description'], np.mean(on), np.mean(off))
    assert checked >= 4
