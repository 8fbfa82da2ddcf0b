"CARLA synthetic generator (nbs/carla/30_synth.ipynb): determinism, argument errors, the expert's stops, frame conventions."
import math

import numpy as np
import pytest

from drivenb.carla.routes import read_index, select_routes
from drivenb.carla.synth import (TOWNS, VEHICLE_EXTENT, Vehicle, lidar_sweep, make_scenario, make_town, simulate, weather_params,
                                 write_carla_dataset)
from drivenb.carla.targets import ego_waypoints, generate_heatmap, interfuser_lidar


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('dialect', ['interfuser', 'lmdrive'])
def test_deterministic_and_valid(tmp_path, dialect):
    a, b = tmp_path / 'a', tmp_path / 'b'
    for r in (a, b): write_carla_dataset(r, (1, 7), (0, 20), routes_per=1, frames_per_route=3, dialect=dialect, width=32, height=32)
    fa = _files(a)
    assert fa == _files(b) and len(fa) > 20
    entries = read_index(next(p for p in a.iterdir() if p.suffix == '.txt'), dialect=dialect)
    assert [e.n for e in entries] == [3] * 4
    assert len(select_routes(entries, [7], [20])) == 1


def test_bad_arguments(tmp_path):
    for kw, name in [(dict(towns=(8,)), 'towns'), (dict(weathers=(21,)), 'weathers'), (dict(routes_per=0), 'routes_per'),
                     (dict(frames_per_route=0), 'frames_per_route'), (dict(width=2), 'width'), (dict(dialect='x'), 'dialect')]:
        with pytest.raises(ValueError, match=name): write_carla_dataset(tmp_path, **{'towns': (1,), 'weathers': (0,), **kw})
    write_carla_dataset(tmp_path, (1,), (0,), frames_per_route=1, width=16, height=16)
    with pytest.raises(FileExistsError, match='overwrite'): write_carla_dataset(tmp_path, (1,), (0,), frames_per_route=1, width=16, height=16)
    write_carla_dataset(tmp_path, (1,), (0,), frames_per_route=1, width=16, height=16, overwrite=True)
    with pytest.raises(ValueError, match='weather_id'): weather_params(-1)
    with pytest.raises(ValueError, match='town_id'): make_town(9)


def test_towns_distinct():
    layouts = {t: (round(make_town(t).route.length), len(make_town(t).lights), len(make_town(t).stop_signs)) for t in TOWNS}
    assert len(set(layouts.values())) >= 6
    assert len(make_town(2).stop_signs) == 1 and len(make_town(1).lights) == 4


def test_red_light_and_lead_car():
    sc = make_scenario(1, 0, 0, 0); sc.vehicles, sc.walkers = [], []; sc.light_offset[:] = 9.0
    ms = [f['measurements'] for f in simulate(sc, 20)]
    stopped = [m for m in ms if m['speed'] < 0.05 and m['is_red_light_present']]
    assert stopped and max(m['x'] for m in stopped) < 140
    sc = make_scenario(4, 0, 0, 0); sc.walkers = []; sc.vehicles = [Vehicle(200, 0, sc.s0 + 25, 0., 0.)]
    fr = simulate(sc, 20)
    m, car = fr[-1]['measurements'], fr[-1]['actors'][200]
    assert m['speed'] == 0 and m['is_vehicle_present'] == [200]
    assert 2 * VEHICLE_EXTENT[0] < math.hypot(car['loc'][0] - m['x'], car['loc'][1] - m['y']) <= 10.5
    wps = ego_waypoints(fr[3]['measurements'])
    assert np.abs(wps[:, 0]).max() < 0.05 and (np.diff(wps[:, 1]) < 0).all()
    rows, cols = np.nonzero(generate_heatmap(m, fr[-1]['actors']))
    assert rows.max() < 90 and abs(cols.mean() - 90) < 3
    pts = lidar_sweep(sc, fr[-1]['scene'])
    assert pts.dtype == np.float32 and 1000 < len(pts) < 8000
    ahead = pts[(np.abs(pts[:, 0]) < 1) & (pts[:, 2] > -2)]            # the car ahead: +y in the LiDAR frame
    assert len(ahead) and ahead[:, 1].min() > 0
    assert interfuser_lidar(pts)[1].sum() > 0


def test_stop_sign_stop_then_go():
    sc = make_scenario(2, 0, 0, 0); sc.vehicles, sc.walkers = [], []
    ms = [f['measurements'] for f in simulate(sc, 60, 2)]
    k = next(i for i, m in enumerate(ms) if m['is_stop_sign_present'])
    k_stop = next(i for i, m in enumerate(ms) if i > k and m['speed'] < 0.1)
    assert max(m['speed'] for m in ms[k_stop:]) > 3.0


def test_night_darker_than_noon():
    from drivenb.carla.synth import render_view
    out = {}
    for w in (0, 14):
        sc = make_scenario(1, w, 0, 0); f = simulate(sc, 1)[0]
        out[w] = render_view(sc, f['scene'], 'front', 32, 24).mean()
    assert out[14] < 0.5 * out[0]
