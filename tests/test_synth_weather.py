"""Weather and lighting conditions of the synthetic world (drivenb.synth): descriptions parse back to the condition
they were written with, night and fog cameras lose the far field, and the radar barely notices (issue 10, section 4)."""
import json
import numpy as np, pytest
from drivenb.synth.world import make_world
from drivenb.nusc import scene_condition, scene_conditions
from drivenb.synth.render import render_camera
from drivenb.synth.sensors import radar_scan
from drivenb.synth.rig import sensor_rig, CAMERA_CHANNELS, RADAR_CHANNELS
from drivenb.synth.writers import generate, SynthSpec

SEED, SCENE = 0, 3


def test_descriptions_parse_to_written_condition(tmp_path):
    from nuscenes.nuscenes import NuScenes
    conds = ('day', 'night', 'rain', 'fog', 'night+rain')
    s = generate(tmp_path / 'w', n_scenes=5, n_keyframes=2, width=64, height=36, conditions=conds, progress=False)
    nusc = NuScenes(version='v1.0-synth', dataroot=str(tmp_path / 'w'), verbose=False)
    got = {sc['name']: scene_condition(sc['description']) for sc in nusc.scene}
    assert got == {f'scene-{i:04d}': c for i, c in enumerate(conds)} == s['conditions']
    assert json.loads((tmp_path / 'w' / 'synth_meta.json').read_text())['params']['conditions'] == list(conds)
    assert scene_conditions("Night, after rain, turn left") == {'night', 'rain'}      # real nuScenes descriptions
    assert scene_condition("Wait at intersection, peds, trucks") == 'day'


def test_default_split_holds_every_condition():
    "`val_scenes: auto` on a synthetic root = the last 20 % of scenes by name (bev.convert.split_scenes): 4 of 20."
    spec = SynthSpec()
    names = [f'scene-{i:04d}' for i in range(spec.n_scenes)]
    nval = max(1, round(0.2 * len(names)))
    val, train = range(spec.n_scenes - nval, spec.n_scenes), range(spec.n_scenes - nval)
    assert {spec.condition(i) for i in val} == {spec.condition(i) for i in train} == {'day', 'night', 'rain', 'fog'}
    assert nval == 4


def _render(condition, times=(0.5, 2.0, 3.5)):
    "Grey images (N, H, W) float 0-255 and distances (N, H, W) m (inf: sky) of the six cameras at a few times."
    w, rig = make_world(SEED, SCENE, 10, condition=condition), sensor_rig(256, 144)
    ims, dist = [], []
    for t in times:
        for ci, ch in enumerate(CAMERA_CHANNELS):
            r = render_camera(w, t, rig[ch]['ego_T_sensor'], rig[ch]['K'], 256, 144, noise_seed=ci)
            ims.append(r['image'].astype(float).mean(-1))
            K = rig[ch]['K']; u, v = np.meshgrid((np.arange(256) - K[0, 2]) / K[0, 0], (np.arange(144) - K[1, 2]) / K[1, 1])
            dist.append(np.where(r['ids'] == -1, np.inf, r['depth'] * np.sqrt(1 + u ** 2 + v ** 2)))
    return np.stack(ims), np.stack(dist)


@pytest.fixture(scope='module')
def renders():
    return {c: _render(c) for c in ('day', 'night', 'rain', 'fog')}


def _band_contrast(im, dist, lo, hi):
    "RMS contrast (grey levels) of the pixels whose surface lies lo-hi metres away."
    m = (dist >= lo) & (dist < hi)
    assert m.sum() > 500
    return im[m].std()


def test_day_renders_as_before():
    rig = sensor_rig(256, 144); cam = rig['CAM_FRONT']
    a = render_camera(make_world(SEED, SCENE, 10), 1.0, cam['ego_T_sensor'], cam['K'], 256, 144)['image']
    b = render_camera(make_world(SEED, SCENE, 10, condition='day'), 1.0, cam['ego_T_sensor'], cam['K'], 256, 144, noise_seed=5)['image']
    assert np.array_equal(a, b)          # no noise, no random numbers: the camera index does not matter by day


def test_night_and_fog_lose_the_far_field(renders):
    day_im, day_d = renders['day']
    far = {c: _band_contrast(*renders[c], 35, 50) for c in renders}
    near = {c: _band_contrast(*renders[c], 4, 15) for c in renders}
    mean = {c: renders[c][0].mean() for c in renders}
    print('mean', mean, 'contrast 4-15 m', near, 'contrast 35-50 m', far)
    assert mean['night'] < 0.3 * mean['day']                  # night: dark
    assert far['night'] < 0.35 * far['day'] and far['fog'] < 0.35 * far['day']   # far field nearly gone
    assert near['fog'] > 2 * far['fog'] and near['night'] > 1.5 * far['night']   # the near field is still seen
    assert far['rain'] < far['day'] and near['rain'] < near['day']                # rain: lower contrast everywhere


def test_radar_barely_notices_the_weather():
    rig = sensor_rig(256, 144)
    n = {}
    for c in ('day', 'night', 'rain', 'fog'):
        w = make_world(SEED, SCENE, 10, condition=c)
        n[c] = np.mean([sum(len(radar_scan(w, 0.5 * k, rig[ch]['ego_T_sensor'], np.random.default_rng([k, ri]))[0])
                            for ri, ch in enumerate(RADAR_CHANNELS)) for k in range(10)])
    print('radar detections per keyframe (5 radars)', n)
    assert n['night'] == n['day'] == n['fog']                  # light does not touch the radar
    assert abs(n['rain'] - n['day']) <= 0.15 * n['day']
