"Synthetic RADIal: the tiny dataset reads back frame for frame, its labels match the world, the radar sees them, and it is deterministic."
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivenb.geometry import apply_T, invert_T
from drivenb.radial.dsp import RadarProcessor
from drivenb.radial.radar import CHIP_NAMES, RadarGeometry, load_calibration_table
from drivenb.radial.records import LABEL_COLUMNS, SyncReader, read_labels_csv
from drivenb.radial.synth import EGO_T_LASER, EGO_T_RADAR, FREESPACE_COLUMNS, freespace_mask, record_world, write_radial_dataset
from drivenb.synth.world import VEHICLE_KINDS

N_REC, N_FR, SEED = 2, 4, 3
G = RadarGeometry()


@pytest.fixture(scope='module')
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp('radial') / 'ds'
    return root, write_radial_dataset(root, N_REC, N_FR, SEED)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


def _face_middles(world, t):
    "Independent of the library: (N, 2, 3) middles of the front and back faces of every agent in the radar frame, and (N,) kinds."
    bx = world.boxes_at(t)
    n = bx['n_agents']
    c, y, h = bx['centre'][:n], bx['yaw'][:n], bx['half'][:n]
    d = np.stack([np.cos(y), np.sin(y), 0 * y], -1) * h[:, :1]                      # centre -> front face middle, global
    faces = np.stack([c + d, c - d], 1)                                             # N,2,3
    rTg = invert_T(world.global_T_ego(t) @ EGO_T_RADAR)
    return apply_T(rTg, faces.reshape(-1, 3)).reshape(n, 2, 3), world.kind


def test_layout(ds):
    root, s = ds
    assert sorted(p.name for p in root.iterdir()) == ['CalibrationTable.npy', *s['records'], 'labels.csv', 'radar_Freespace']
    assert s['frames'] == N_REC * N_FR
    assert (root / 'labels.csv').read_text().splitlines()[0] == ','.join(LABEL_COLUMNS)
    t = load_calibration_table(root / 'CalibrationTable.npy')
    assert t['Signal'].shape[1] == G.n_virtual


def test_sync_reader_pairs_every_frame(ds):
    root, s = ds
    for name in s['records']:
        rd = SyncReader(root / name)
        assert len(rd) == N_FR, rd.report
        assert rd.report.counts() == {'tolerance': 0, 'missing chip sample': 0, 'truncated': 0}
        for k in range(N_FR):
            fr = rd[k]
            for c in CHIP_NAMES:
                assert fr[c]['data'].dtype == np.int16 and fr[c]['data'].size == G.chip_int16
            assert fr['camera']['data'].shape == (144, 256, 3)
            assert fr['scala']['data'].shape[1] == 11 and len(fr['scala']['data']) > 0
            assert fr['radar_ch3']['timestamp'] == fr['camera']['timestamp'] == fr['scala']['timestamp']


def test_labels_match_world(ds):
    root, s = ds
    labels = read_labels_csv(root / 'labels.csv')
    assert sorted(labels) == list(range(N_REC * N_FR))
    n_obj = 0
    for n, fl in labels.items():
        i, k = s['records'].index(fl.dataset), fl.dataset_index
        assert k == n % N_FR
        world = record_world(SEED, i, N_FR)
        faces, kind = _face_middles(world, k * 0.1)
        matched = []
        for o in fl.objects:
            p = np.array([o['radar_X_m'], o['radar_Y_m']])
            dist = np.linalg.norm(faces[..., :2] - p, axis=-1)                        # N,2
            a, f = np.unravel_index(dist.argmin(), dist.shape)
            assert dist[a, f] < 2e-3, (n, o)
            assert kind[a] in VEHICLE_KINDS
            assert o['radar_R_m'] == pytest.approx(math.hypot(*p), abs=2e-3)
            assert o['radar_A_deg'] == pytest.approx(math.degrees(math.atan2(p[1], p[0])), abs=0.02)   # X, Y rounded to mm
            assert abs(o['radar_A_deg']) <= 60 and 1 <= o['radar_R_m'] <= 0.95 * G.max_range
            q = faces[a, f] + EGO_T_RADAR[:3, 3] - EGO_T_LASER[:3, 3]                  # the same point in the laser frame
            assert [o['laser_X_m'], o['laser_Y_m'], o['laser_Z_m']] == pytest.approx(q.tolist(), abs=2e-3)
            assert 0 <= o['x1_pix'] <= o['x2_pix'] < 256 and 0 <= o['y1_pix'] <= o['y2_pix'] < 144
            matched.append(int(a))
        assert matched == s['agents'][n]
        # the nearest vehicle straight ahead in the radar's range cannot be hidden: it must be labelled
        ahead = [(faces[a, :, 0].min(), a) for a in range(len(kind)) if kind[a] in VEHICLE_KINDS
                 and (np.abs(faces[a, :, 1]) < 1.0).all() and 3 < faces[a, :, 0].min() < 0.8 * G.max_range]
        if ahead: assert min(ahead)[1] in matched, (n, min(ahead))
        n_obj += len(fl.objects)
    assert n_obj == s['objects'] > 0


def test_labelled_vehicles_are_radar_peaks(ds):
    root, s = ds
    proc = RadarProcessor(load_calibration_table(root / 'CalibrationTable.npy'), G)
    labels = read_labels_csv(root / 'labels.csv')
    found = total = 0
    for fl in labels.values():
        fr = SyncReader(root / fl.dataset, decode_camera=False)[fl.dataset_index]
        rd = proc.rd({c: fr[c]['data'] for c in CHIP_NAMES})
        pc = proc.point_cloud(rd).numpy()
        power = rd.abs().sum(2).numpy()                                                # S,C
        floor = np.percentile(power, 10)
        for o in fl.objects:
            rb, db = o['radar_R_m'] / G.range_bin, G.doppler_bin(o['radar_D_mps'])
            # the range profile of the vehicle's Doppler column has a peak within two bins of its range, well above the
            # floor (10th percentile of the map: the crowded scene and the Doppler-division copies fill the median)
            r0, d0 = int(round(rb)), int(round(db)) % G.chirps
            prof = np.pad(power[:, [(d0 + j) % G.chirps for j in (-1, 0, 1)]].max(1), 1)   # S+2
            peaks = [r for r in range(max(r0 - 2, 0), min(r0 + 3, G.samples))
                     if prof[r + 1] >= max(prof[r], prof[r + 2]) and prof[r + 1] > 5 * floor]
            assert peaks, (fl.numSample, o)
            dr = np.abs(pc[:, 0] - o['radar_R_m']) / G.range_bin
            dd = np.abs((pc[:, 1] - db + G.chirps / 2) % G.chirps - G.chirps / 2)
            found += bool(((dr <= 2) & (dd <= 2)).any()); total += 1
    assert total > 0 and found >= 0.9 * total, (found, total)


def test_deterministic(ds, tmp_path):
    root, s = ds
    again = write_radial_dataset(tmp_path / 'again', N_REC, N_FR, SEED)
    assert _files(root) == _files(tmp_path / 'again')
    assert sum(k.startswith('radar_Freespace/freespace_') for k in _files(root)) == N_REC * N_FR   # the masks are compared too
    assert again['agents'] == s['agents']
    other = write_radial_dataset(tmp_path / 'other', 1, 2, SEED + 1)
    assert (tmp_path / 'other' / 'labels.csv').read_bytes() != (root / 'labels.csv').read_bytes()
    assert other['records'][0] != s['records'][0]


def test_overwrite(tmp_path):
    write_radial_dataset(tmp_path, 1, 1, 0)
    with pytest.raises(FileExistsError, match='overwrite'): write_radial_dataset(tmp_path, 1, 1, 0)
    s = write_radial_dataset(tmp_path, 1, 2, 0, overwrite=True)
    assert SyncReader(tmp_path / s['records'][0]).report.n_frames == 2


@pytest.mark.parametrize('kw', [dict(n_records=0), dict(frames_per_record=1.5), dict(seed=-1), dict(width=8), dict(height=5000),
                                dict(frame_period_us=0), dict(fov_deg=90), dict(min_range=-1.), dict(min_pixels=0), dict(noise=-1.),
                                dict(n_ground=-2), dict(laser_azimuths=2), dict(calib_n_az=1), dict(condition='snow')])
def test_bad_arguments_name_the_parameter(tmp_path, kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name): write_radial_dataset(tmp_path / 'x', **kw)
    assert not (tmp_path / 'x').exists()


def test_bad_geometry(tmp_path):
    with pytest.raises(TypeError, match='geometry'): write_radial_dataset(tmp_path, geometry=(128, 64))


def test_official_geometry_one_frame(tmp_path):
    g = RadarGeometry.official()
    s = write_radial_dataset(tmp_path, 1, 1, 0, g)
    fr = SyncReader(tmp_path / s['records'][0])[0]
    assert all(fr[c]['data'].size == g.chip_int16 == 512 * 4 * 256 * 2 for c in CHIP_NAMES)


def test_cli_reports_bad_argument(tmp_path):
    runner = tmp_path / 'cli.py'
    runner.write_text('from drivenb.radial.synth import main\nmain()\n')      # what the console script runs
    r = subprocess.run([sys.executable, str(runner), '--out', str(tmp_path / 'o'), '--n_records', '0'], capture_output=True, text=True)
    assert r.returncode == 2 and 'n_records' in r.stderr, r.stderr
    assert not (tmp_path / 'o').exists()


def test_freespace_pngs(tmp_path):
    "Every frame (labelled or not) has radar_Freespace/freespace_{numSample:06d}.png: (samples, 900) uint8 in {0, 255}, equal to `freespace_mask`."
    root = tmp_path / 'fs'
    s = write_radial_dataset(root, 2, 3, SEED)
    labels = read_labels_csv(root / 'labels.csv')
    names = sorted(p.name for p in (root / 'radar_Freespace').iterdir())
    assert names == [f'freespace_{n:06d}.png' for n in sorted(labels)] == [f'freespace_{n:06d}.png' for n in range(6)]
    for n, fl in labels.items():
        m = cv2.imread(str(root / 'radar_Freespace' / f'freespace_{n:06d}.png'), cv2.IMREAD_UNCHANGED)
        assert m.shape == (G.samples, FREESPACE_COLUMNS) == (128, 900) and m.dtype == np.uint8
        assert set(np.unique(m).tolist()) <= {0, 255} and (m == 255).any()
        world = record_world(SEED, s['records'].index(fl.dataset), 3)
        assert (m == freespace_mask(world, fl.dataset_index * 0.1, G)).all()


def test_overwrite_replaces_freespace(tmp_path):
    (tmp_path / 'radar_Freespace').mkdir()
    with pytest.raises(FileExistsError, match='radar_Freespace'): write_radial_dataset(tmp_path, 1, 1, 0)
    write_radial_dataset(tmp_path, 1, 3, 0, overwrite=True)
    write_radial_dataset(tmp_path, 1, 1, 0, overwrite=True)
    assert [p.name for p in (tmp_path / 'radar_Freespace').iterdir()] == ['freespace_000000.png']


@pytest.mark.parametrize('index,t', [(0, 0.2), (1, 0.3)])
def test_freespace_matches_brute_force(index, t):
    "The windowed footprint test of `freespace_mask` equals testing every cell against every box (independent of the library)."
    world = record_world(SEED, index, 4)
    bx = world.boxes_at(t)
    rTg = invert_T(world.global_T_ego(t) @ EGO_T_RADAR)
    ctr = apply_T(rTg, bx['centre'])[:, :2]
    yaw = bx['yaw'] + math.atan2(rTg[1, 0], rTg[0, 0])                                  # box yaw about the radar's x axis
    az = np.radians(-90 + 0.2 * (np.arange(900) + 0.5))
    r = (np.arange(G.samples) + 0.5) * G.range_bin
    x, y = r[:, None] * np.cos(az), r[:, None] * np.sin(az)                             # S,900 radar frame
    occ = np.zeros(x.shape, bool)
    for b in np.nonzero(bx['kind'] != 13)[0]:                                             # 13: tree crowns, overhead
        c, s = math.cos(yaw[b]), math.sin(yaw[b])
        dx, dy = x - ctr[b, 0], y - ctr[b, 1]
        occ |= (np.abs(c * dx + s * dy) <= bx['half'][b, 0]) & (np.abs(-s * dx + c * dy) <= bx['half'][b, 1])
    g = apply_T(invert_T(rTg), np.stack([x, y, np.full_like(x, -EGO_T_RADAR[2, 3])], -1).reshape(-1, 3)).reshape(*x.shape, 3)
    _, d = world.to_road(g[..., 0], g[..., 1])
    first = np.array([np.nonzero(col)[0][0] if col.any() else G.samples for col in occ.T])
    ref = (d >= world.edges[0]) & (d <= world.edges[1]) & (np.arange(G.samples)[:, None] < first)
    assert occ.any() and ref.any()
    assert (freespace_mask(world, t, G) == np.where(ref, 255, 0)).all()
