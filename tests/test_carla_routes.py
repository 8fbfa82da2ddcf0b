"CARLA routes (nbs/carla/10_routes.ipynb): write tiny InterFuser and LMDrive routes, read them back, index them, and every bad-input error."
import json

import numpy as np
import pytest

from drivenb.carla.routes import (INDEX_FILES, MEASUREMENT_KEYS, SPLITS, VIEWS, RouteWriter, demo_frame, interfuser_rel, lmdrive_frame_ids,
                                  read_frame, read_index, route_frames, route_name, route_town_weather, select_routes, write_index)

STAMP = (11, 16, 8, 27, 10)
ROUTES = {'interfuser': [interfuser_rel(3, route_name(1, 'short', 3, STAMP)), interfuser_rel(12, route_name(5, 'tiny', 12, STAMP))],
          'lmdrive': [route_name(1, 'short', 3, STAMP), route_name(5, 'long', 12, STAMP)]}


def _write(root, dialect, n=3):
    dirs = []
    for rel in ROUTES[dialect]:
        with RouteWriter(root, rel, dialect) as w:
            for i in range(n): w.add_frame(**demo_frame(i, weather=w.weather))
        dirs.append(w.dir)
    return dirs


@pytest.fixture(params=['interfuser', 'lmdrive'])
def written(request, tmp_path):
    return request.param, tmp_path, _write(tmp_path, request.param)


def _same_frame(a, b):
    for v in VIEWS:
        assert a['images'][v].shape == b['images'][v].shape
        err = np.abs(a['images'][v].astype(int) - b['images'][v].astype(int))
        assert err[1:-1].max() <= 8 and err.mean() <= 4, v          # JPEG; seam rows of rgb_full skipped
    assert json.dumps(a['measurements']) == json.dumps(b['measurements'])   # NaN theta survives
    assert a['actors'] == b['actors'] and a['affordances'] == b['affordances']
    assert b['lidar'].dtype == np.float32


def test_round_trip(written):
    dialect, root, dirs = written
    for d in dirs:
        assert route_frames(d, dialect) == 3
        for i in range(3):
            a, b = demo_frame(i, weather=int(d.name.split('_w')[1].split('_')[0])), read_frame(d, i, dialect, odd='same')
            _same_frame(a, b)
            front = a['lidar'][:, 1] >= 0
            want = a['lidar'] if dialect == 'interfuser' else np.concatenate([a['lidar'][front], a['lidar'][~front]])
            np.testing.assert_array_equal(b['lidar'], want)


def test_lmdrive_files(tmp_path):
    d = _write(tmp_path, 'lmdrive')[0]
    assert d == tmp_path / 'data' / ROUTES['lmdrive'][0]
    assert np.load(d / 'lidar' / '0001.npy').dtype == np.float16 and np.load(d / 'lidar_odd' / '0001.npy')[:, 1].max() < 0
    mf = json.loads((d / 'measurements_full' / '0000.json').read_text())
    assert set(mf) == set(MEASUREMENT_KEYS) | {'actors_data', 'stop_sign'} and np.isnan(mf['theta'])
    assert len(json.loads((d / 'measurements_all.json').read_text())) == 3
    assert not (d / 'rgb_front').exists()
    f1, f2 = demo_frame(1)['lidar'], demo_frame(2)['lidar']                 # official pairing: lidar/2 + lidar_odd/1
    np.testing.assert_array_equal(read_frame(d, 2, 'lmdrive')['lidar'], np.concatenate([f2[f2[:, 1] >= 0], f1[f1[:, 1] < 0]]))
    np.testing.assert_array_equal(read_frame(d, 0, 'lmdrive')['lidar'], read_frame(d, 0, 'lmdrive', odd='same')['lidar'])
    (d / 'measurements_all.json').unlink()
    with pytest.raises(FileNotFoundError, match='measurements_all.json is missing'): route_frames(d, 'lmdrive')


def test_index_select(written):
    dialect, root, _ = written
    idx = write_index(root, dialect)
    assert idx == root / INDEX_FILES[dialect]
    lines = idx.read_text().splitlines()
    assert lines == sorted(lines) and all(ln.endswith(' 3') for ln in lines)
    assert write_index(root, dialect).read_text() == idx.read_text()
    e = read_index(idx, dialect=dialect)
    assert sorted((x.town, x.weather, x.n) for x in e) == [(1, 3, 3), (5, 12, 3)]
    assert [x.town for x in select_routes(e, SPLITS['lmdrive']['val_towns'], SPLITS['lmdrive']['val_weathers'])] == [5]
    assert [x.weather for x in select_routes(e, SPLITS['lmdrive']['train_towns'], SPLITS['lmdrive']['train_weathers'])] == [3]
    with pytest.raises(ValueError, match='no route of towns'): select_routes(e, [2], [3])


def test_route_regex():
    assert route_town_weather('weather-3/data/routes_town05_long_w3_01_02_03_04_05', '/r', 'interfuser') == (5, 3)
    assert route_town_weather('routes_town06_long_w17_11_28_18_28_35', '/r', 'lmdrive') == (6, 17)
    assert route_town_weather('routes_town06_long_w7_11_28_18_28_35', '/town01x', 'lmdrive') == (1, 7)   # official: root is matched too
    with pytest.raises(ValueError, match='0 matches'): route_town_weather('routes_town05_long_w3_01_02_03_04_05', '/r', 'interfuser')
    with pytest.raises(ValueError, match='kind'): route_name(1, 'medium', 3, STAMP)


def test_lmdrive_frame_ids():
    ids = lmdrive_frame_ids(23, np.random.default_rng(0))
    assert len(ids) == 4 and ((ids // 5) == np.arange(4)).all()


@pytest.mark.parametrize('dialect', ['interfuser', 'lmdrive'])
def test_writer_rejects_bad_input(tmp_path, dialect):
    w = RouteWriter(tmp_path, ROUTES[dialect][0], dialect)
    w.add_frame(**demo_frame(0))
    cases = [('measurements', lambda f: f['measurements'].pop('speed'), "measurements lacks 1 of the keys base_agent.save writes: ['speed']"),
             ('command', lambda f: f['measurements'].update(command=0), "['command'] must be a CARLA RoadOption"),
             ('image dtype', lambda f: f['images'].update(left=f['images']['left'].astype(np.float32)), "images['left'] must be an (H, W, 3) uint8"),
             ('image shape', lambda f: f['images'].update(front=f['images']['front'][..., :2].copy()), "images['front'] must be an (H, W, 3) uint8"),
             ('missing view', lambda f: f['images'].pop('rear'), 'must have exactly the views'),
             ('lidar cols', lambda f: f.update(lidar=f['lidar'][:, :3].copy()), 'lidar must be an (N, 4) float32'),
             ('lidar dtype', lambda f: f.update(lidar=f['lidar'].astype(np.float64)), 'lidar must be an (N, 4) float32'),
             ('lidar nan', lambda f: f['lidar'].__setitem__((0, 0), np.nan), 'NaN or infinite'),
             ('actor key', lambda f: f['actors'][101].pop('box'), "actors[101] (tpe 0) lacks ['box']"),
             ('affordance', lambda f: f['affordances'].update(stop_sign=None), "['stop_sign'] must be a bool")]
    for name, spoil, msg in cases:
        f = demo_frame(1); spoil(f)
        with pytest.raises(ValueError) as e: w.add_frame(**f)
        assert msg in str(e.value) and 'frame 1' in str(e.value), name
    assert w.n == 1
    w.close()
    assert route_frames(w.dir, dialect) == 1
    with pytest.raises(FileExistsError, match='not empty'): RouteWriter(tmp_path, ROUTES[dialect][0], dialect)
    if dialect == 'lmdrive':
        f = demo_frame(1); f['images']['rear'] = np.zeros((32, 16, 3), np.uint8)
        with pytest.raises(ValueError, match='share one shape'): RouteWriter(tmp_path, ROUTES[dialect][1], dialect).add_frame(**f)
    with pytest.raises(ValueError, match='0 matches'): RouteWriter(tmp_path, 'x/routes_town01_short_w3_11_16_08_27_10' if dialect == 'interfuser' else 'routes_x', dialect)


def test_missing_frame_file(tmp_path):
    d = _write(tmp_path, 'interfuser')[1]
    (d / 'rgb_left' / '0001.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r'rgb_left/0001.jpg is missing \(frame 1 of 3\)'): route_frames(d)
    with pytest.raises(FileNotFoundError, match='rgb_left/0001.jpg is missing'): read_frame(d, 1)
    with pytest.raises(FileNotFoundError, match='rgb_left/0001.jpg'): write_index(tmp_path)
    (d / 'measurements' / '0000.json').unlink()
    with pytest.raises(FileNotFoundError, match='measurements/0000.json is missing'): route_frames(d)


def test_read_index_strict(tmp_path):
    _write(tmp_path, 'interfuser')
    good = write_index(tmp_path).read_text().splitlines()
    rel0, rel1 = good[0].split()[0], good[1].split()[0]
    bad = tmp_path / 'bad.txt'
    cases = [([good[0], good[1] + ' extra'], ValueError, "bad.txt, line 2: expected '<relative route dir> <n frames>', got 3 tokens"),
             ([rel0 + ' three'], ValueError, "line 1: frame count 'three' is not an integer"),
             ([rel0 + ' -2'], ValueError, 'line 1: frame count must be positive'),
             (['', 'data/routes_town01_short_w3_11_16_08_27_10 3'], ValueError, "line 2: 'data/routes_town01_short_w3_11_16_08_27_10' has 0 matches"),
             ([good[0], good[0]], ValueError, f'line 2: route {rel0} is listed again (first at line 1)'),
             ([rel0 + ' 5'], ValueError, f'line 1: {tmp_path / rel0} holds 3 complete frames, the line says 5'),
             (['weather-3/data/routes_town02_short_w3_11_16_08_27_10 3'], FileNotFoundError, 'line 1: route folder')]
    for lines, exc, msg in cases:
        bad.write_text('\n'.join(lines) + '\n')
        with pytest.raises(exc) as e: read_index(bad)
        assert msg in str(e.value), (msg, str(e.value))
    bad.write_text('\n'.join(good) + '\n\n')                              # blank lines are fine
    assert len(read_index(bad)) == 2
    (tmp_path / rel1 / 'lidar' / '0002.npy').unlink()
    with pytest.raises(FileNotFoundError, match='line 2: .*lidar/0002.npy is missing'): read_index(bad)
    assert len(read_index(bad, verify=False)) == 2
    with pytest.raises(FileNotFoundError, match='index file not found'): read_index(tmp_path / 'nope.txt')
    with pytest.raises(FileNotFoundError, match='no route folders'): write_index(tmp_path / 'empty')


def test_min_frames_warns(tmp_path):
    with RouteWriter(tmp_path, ROUTES['lmdrive'][0], 'lmdrive') as w: w.add_frame(**demo_frame(0))
    with pytest.warns(UserWarning, match='left out of the index'):
        idx = write_index(tmp_path, 'lmdrive', min_frames=2)
    assert idx.read_text() == ''
