"RADIal raw records: write a tiny record, read it back as the official DBReader would, and every damaged-input case."
import shutil
from pathlib import Path

import numpy as np
import pytest

from drivenb.radial.records import (CHIPS, DEMO_CLOCKS, LABEL_COLUMNS, OFFSET_TABLE, RecordError, RecordWriter, SyncReader, demo_frames,
                                    events_log_path, parse_recording, read_labels_csv, unlabelled_row, write_labels_csv, write_record)

NAME = 'RECORD@2020-11-22_12.28.47'


@pytest.fixture
def frames():
    return demo_frames(n=5, chip_int16=64, seed=1)


@pytest.fixture
def rec(tmp_path, frames):
    return write_record(tmp_path, frames, name=NAME, sensor_clocks=DEMO_CLOCKS, first_sample=40)


def _copy(src: Path, root: Path, name='RECORD@2020-11-22_12.30.00') -> Path:
    dst = root / name
    dst.mkdir()
    for p in src.iterdir(): shutil.copy(p, dst / p.name.replace(src.name, name))
    return dst


# ---- an independent implementation of the official pairing (DBReader.py parse_recording + SyncReader, master=None) ----

def official_table(folder: Path, tolerance=200000, sync_mode='timestamp'):
    "Straight loops over the log, as the official code: per-sensor lists, the first-event clock re-basing plus offsetTable, chips by sample N+1/N+2/N+3, the rest by argmin |dt| within tolerance."
    folder = Path(folder)
    present = set()
    for f in folder.iterdir():
        s = f.name[len(folder.name) + 1:]
        s = s[:s.rfind('.')]
        if s in OFFSET_TABLE: present.add(s)
    d = {s: {'timestamp': [], 'timeofissue': [], 'sample': []} for s in present}
    for line in (folder / f'{folder.name}_events_log.rec').read_text().splitlines():
        elt = line.split()
        if elt[10] not in d: continue
        d[elt[10]]['timestamp'].append(int(elt[1])); d[elt[10]]['timeofissue'].append(int(elt[4])); d[elt[10]]['sample'].append(int(elt[7]))
    for s, v in d.items():
        if v['timestamp']:
            shift = v['timeofissue'][0] - v['timestamp'][0] + OFFSET_TABLE[s]
            v['timestamp'] = [t + shift for t in v['timestamp']]
    others = [s for s in present if s not in ('gps',) and not s.startswith('radar')]
    key = 'timestamp' if sync_mode == 'timestamp' else 'timeofissue'
    table, bad = [], set()
    for i in range(len(d['radar_ch3']['sample'])):
        n = d['radar_ch3']['sample'][i]
        m = {'radar_ch3': i}
        for c, k in (('radar_ch0', 1), ('radar_ch2', 2), ('radar_ch1', 3)):
            hits = [j for j, s in enumerate(d[c]['sample']) if s == n + k]
            m[c] = hits[0] if hits else -1
        if min(m[c] for c in ('radar_ch0', 'radar_ch1', 'radar_ch2')) < 0:
            bad.add(i); m.update(radar_ch0=-1, radar_ch1=-1, radar_ch2=-1)
        t = d['radar_ch3'][key][i]
        for s in others:
            ts = d[s][key]
            best = min(range(len(ts)), key=lambda j: (abs(ts[j] - t), j)) if ts else -1
            if best < 0 or abs(ts[best] - t) > tolerance: best = -1; bad.add(i)
            m[s] = best
        table.append(m)
    return [m for i, m in enumerate(table) if i not in bad]


# ---- round trip ----

def test_round_trip_payloads_and_pairing(rec, frames):
    db = SyncReader(rec, decode_camera=False)
    assert len(db) == len(frames) == 5
    assert db.report.dropped == [] and db.report.truncated == [] and db.report.tolerance_errors == 0 and db.report.corrupted_frames == 0
    for n, fr in enumerate(frames):
        s = db[n]
        assert list(s) == ['radar_ch3', 'radar_ch0', 'radar_ch1', 'radar_ch2', 'camera', 'scala']
        assert set(s['radar_ch3']) == {'data', 'timestamp', 'timeofissue', 'sample_number', 'index', 'offset_byte'}
        N = 40 + 4 * n
        assert [s[c]['sample_number'] for c in ('radar_ch3', 'radar_ch0', 'radar_ch2', 'radar_ch1')] == [N, N + 1, N + 2, N + 3]
        for c in CHIPS:
            assert s[c]['data'].dtype == np.int16 and s[c]['data'].tobytes() == fr['chips'][c].tobytes()
            assert s[c]['timestamp'] == fr['t_us'] and s[c]['timeofissue'] == fr['t_us'] + 180000
        assert s['camera']['data'] == fr['camera'] and s['camera']['timestamp'] == fr['t_us']
        laser = s['scala']['data']
        assert laser.shape == (6, 11) and laser.dtype == np.float64
        assert laser[:, :7].astype(np.float32).tobytes() == fr['laser'][:, :7].astype(np.float32).tobytes()
        assert np.array_equal(laser[:, 7:], fr['laser'][:, 7:])
    # file bytes: each chip file is its frames back to back, the MJPEG the JPEGs back to back
    for c in CHIPS:
        assert (rec / f'{NAME}_{c}.bin').read_bytes() == b''.join(f['chips'][c].tobytes() for f in frames)
    assert (rec / f'{NAME}_camera.mjpg').read_bytes() == b''.join(f['camera'] for f in frames)
    img = SyncReader(rec)[0]['camera']['data']                # decoded as CameraReader: BGR uint8
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8


def test_pairing_equals_official_rule(rec, tmp_path, frames):
    assert SyncReader(rec).frames == official_table(rec)
    # a messier record: camera jitter, a late camera frame, a lost chip transfer, a sensor with its own clock
    late = [dict(f) for f in demo_frames(n=8, chip_int16=16, seed=3)]
    for i, f in enumerate(late): f['camera_t_us'] = f['t_us'] + [0, 7000, -9000, 60000, 3000, 0, 15000, -2000][i]
    late[3]['camera_t_us'] = late[3]['t_us'] + 60000
    r2 = write_record(tmp_path, late, name='RECORD@2020-11-22_13.00.00', sensor_clocks={'camera': 999, 'radar_ch1': 5, 'scala': 77}, first_sample=3)
    log = events_log_path(r2)
    log.write_text(''.join(line for line in log.read_text().splitlines(True) if 'sample 25 | sensor radar_ch2' not in line))
    for tol in (200000, 20000, 5000):
        for mode in ('timestamp', 'timeofissue'):
            db = SyncReader(r2, tolerance=tol, sync_mode=mode)
            assert db.frames == official_table(r2, tol, mode), (tol, mode)
    db = SyncReader(r2, tolerance=20000)
    assert db.report.corrupted_frames == 1 and [d['master_index'] for d in db.report.dropped] == [3, 5]


def test_camera_outside_tolerance_is_dropped_and_reported(tmp_path, frames):
    late = [dict(f) for f in frames]
    late[2]['camera_t_us'] = frames[2]['t_us'] + 50000
    r = write_record(tmp_path, late, name=NAME)
    db = SyncReader(r, tolerance=20000, decode_camera=False)
    assert len(db) == 4 and list(db.id_valid) == [0, 1, 3, 4]
    assert db.report.tolerance_errors == 1 and db.report.counts() == {'tolerance': 1, 'missing chip sample': 0, 'truncated': 0}
    (d,) = db.report.dropped
    assert d['master_index'] == 2 and d['reasons'] == ['tolerance: nearest camera event is 50000 µs away (> 20000)']
    assert 'Total tolerance errors:  20.0 %' in str(db.report)
    assert db[2]['radar_ch3']['data'].tobytes() == frames[3]['chips']['radar_ch3'].tobytes()
    assert len(SyncReader(r)) == 5                             # the default 200 ms tolerance keeps it


def test_camera_master(rec, frames):
    db = SyncReader(rec, master='camera', decode_camera=False)
    assert len(db) == 5 and list(db.frames[0]) == ['camera', 'scala'] and db[1]['camera']['data'] == frames[1]['camera']


# ---- writer errors and atomicity ----

def test_writer_is_atomic(tmp_path, frames):
    with pytest.raises(RuntimeError, match='boom'):
        with RecordWriter(tmp_path, NAME) as w:
            w.add_radar(0, frames[0]['chips'])
            raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match='frame 1: chip radar_ch3 has 8 int16, expected 64'):
        write_record(tmp_path, [frames[0], {**frames[1], 'chips': {c: np.zeros(8, np.int16) for c in CHIPS}}], name=NAME)
    assert list(tmp_path.iterdir()) == []
    write_record(tmp_path, frames, name=NAME)
    with pytest.raises(FileExistsError, match='already exists'):
        write_record(tmp_path, frames, name=NAME)
    r = write_record(tmp_path, frames[:2], name=NAME, overwrite=True)
    assert len(SyncReader(r)) == 2 and [p.name for p in tmp_path.iterdir()] == [NAME]


@pytest.mark.parametrize('bad, match', [
    (dict(chips={c: np.zeros(64, np.int32) for c in CHIPS}), 'chip radar_ch3 must be int16'),
    (dict(chips=[np.zeros(64, np.int16)] * 3), 'chips must hold 4 arrays'),
    (dict(camera=b'PNG...'), 'is not a JPEG'),
    (dict(laser=np.zeros((4, 8))), r'must be \(N, 11\)'),
    (dict(laser=np.full((4, 11), 300.0)), 'integers 0-255'),
    (dict(t_us=-1), 't_us must be a non-negative integer'),
])
def test_writer_rejects_bad_payloads(tmp_path, frames, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        write_record(tmp_path, [frames[0], {**frames[1], **bad}], name=NAME)
    assert list(tmp_path.iterdir()) == []


# ---- damaged records ----

def test_missing_chip_file(rec):
    (rec / f'{NAME}_radar_ch2.bin').unlink()
    with pytest.raises(FileNotFoundError, match=f'{NAME}_radar_ch2.bin; the radar master needs the 4 chip files'):
        SyncReader(rec)


def test_missing_record_or_log(rec, tmp_path):
    with pytest.raises(FileNotFoundError, match='record folder not found'):
        SyncReader(tmp_path / 'RECORD@2000-01-01_00.00.00')
    events_log_path(rec).unlink()
    with pytest.raises(FileNotFoundError, match='events log not found'):
        SyncReader(rec)


def test_truncated_chip_file_is_reported_and_raises_on_read(rec):
    f = rec / f'{NAME}_radar_ch0.bin'
    f.write_bytes(f.read_bytes()[:-200])                       # 640 -> 440 bytes: frames 3 (384..512) and 4 (512..640) cut
    db = SyncReader(rec, decode_camera=False)
    assert len(db) == 5                                        # kept, as the official reader keeps them: indices unchanged
    assert [(t['frame'], t['sensor'], t['file_size']) for t in db.report.truncated] == [(3, 'radar_ch0', 440), (4, 'radar_ch0', 440)]
    assert db.report.counts()['truncated'] == 2
    db[2]
    with pytest.raises(RecordError, match=r'radar_ch0.bin: radar_ch0 event 3 \(events log line \d+\) needs bytes 384..512 but the file ends at byte 440'):
        db[3]
    with pytest.raises(RecordError, match=r'radar_ch0.bin: radar_ch0 event 3 .*synchronised frame 3\) needs bytes 384..512 but the file has 440 \(2 such payloads\)'):
        SyncReader(rec, strict=True)


def test_datasize_beyond_file_end(rec):
    log = events_log_path(rec)
    lines = log.read_text().splitlines(True)
    k = next(i for i, line in enumerate(lines) if 'sensor scala' in line)
    lines[k] = lines[k].replace('datasize 192', 'datasize 99999')
    log.write_text(''.join(lines))
    db = SyncReader(rec, decode_camera=False)
    (t,) = db.report.truncated
    assert t['sensor'] == 'scala' and t['line'] == k + 1 and t['datasize'] == 99999 and t['frame'] == 0
    with pytest.raises(RecordError, match=rf'scala.bin: scala event 0 \(events log line {k + 1}\)'):
        db[0]


def test_missing_chip_sample_is_a_corrupted_frame(rec):
    log = events_log_path(rec)
    log.write_text(''.join(line for line in log.read_text().splitlines(True) if 'sample 51 | sensor radar_ch1' not in line))  # frame 2's ch1 (48 + 3)
    db = SyncReader(rec, decode_camera=False)
    assert len(db) == 4 and db.report.corrupted_frames == 1
    assert db.report.dropped == [dict(master_index=2, sample=48, timestamp=1_200_000, reasons=['missing chip sample: radar_ch1 sample 51'])]


@pytest.mark.parametrize('edit, match', [
    (lambda s: s.replace(' | datasize', ' datasize'), r'_events_log.rec:3: expected 17 whitespace-separated tokens'),
    (lambda s: s + ' extra', r'_events_log.rec:3: expected 17 whitespace-separated tokens .* got 18'),
    (lambda s: s.replace('timeofissue ', 'timeofissue 1e', 1), r'_events_log.rec:3: field timeofissue \(token 4\) is not an integer'),
    (lambda s: s.replace('datasize ', 'datasize abc'), r'_events_log.rec:3: field datasize \(token 16\) is not an integer'),
    (lambda s: ' '.join(s.split()[:11]), r'_events_log.rec:3: sensor \w+ is read at byte offsets but the line has no offset/datasize'),
])
def test_malformed_events_log_line(rec, edit, match):
    log = events_log_path(rec)
    lines = log.read_text().splitlines()
    lines[2] = edit(lines[2])
    log.write_text('\n'.join(lines) + '\n')
    with pytest.raises(RecordError, match=match):
        SyncReader(rec)


def test_unknown_modes(rec):
    with pytest.raises(ValueError, match='master must be'): SyncReader(rec, master='scala')
    with pytest.raises(ValueError, match='sync_mode must be'): SyncReader(rec, sync_mode='sample')


def test_lines_of_sensors_without_file_are_counted(rec):
    (rec / f'{NAME}_scala.bin').unlink()
    db = SyncReader(rec)
    assert len(db) == 5 and 'scala' not in db.frames[0]
    assert any("lines of sensor 'scala' skipped" in n for n in db.report.notes)


def test_parse_recording_clock_correction(rec, frames):
    ev, skipped = parse_recording(rec)
    for s in ('radar_ch3', 'camera', 'scala'):
        assert list(ev[s].timestamp) == [f['t_us'] for f in frames]
        assert list(ev[s].raw_timestamp) == [f['t_us'] + DEMO_CLOCKS[s] for f in frames]
        assert list(ev[s].timeofissue) == [f['t_us'] - OFFSET_TABLE[s] for f in frames]


# ---- labels.csv ----

def _rows(name):
    return [dict(zip(LABEL_COLUMNS, [7, 100, 200, 180, 260, 12.5, -1.25, 0.4, 12.7, 1.3, 12.766, 5.84, -0.5, 41.2, name, 0, 0])),
            dict(zip(LABEL_COLUMNS, [7, 300, 210, 330, 240, 40.1, 3.0, 0.5, 40.3, -3.1, 40.42, -4.4, 2.25, 30.0, name, 0, 1])),
            unlabelled_row(8, name, 1)]


def test_labels_round_trip(tmp_path):
    p = write_labels_csv(tmp_path / 'labels.csv', _rows(NAME))
    text = p.read_text().splitlines()
    assert text[0] == ','.join(LABEL_COLUMNS) and len(text) == 4
    assert text[3] == f'8,{",".join(["-1"] * 13)},{NAME},1,0'
    lab = read_labels_csv(p)
    assert list(lab) == [7, 8] and lab[8].objects == [] and (lab[8].dataset, lab[8].dataset_index) == (NAME, 1)
    assert [o['radar_R_m'] for o in lab[7].objects] == [12.766, 40.42] and lab[7].objects[1]['Difficult'] == 1
    assert [tmp.name for tmp in tmp_path.iterdir()] == ['labels.csv']


def test_labels_bad_rows(tmp_path):
    p = write_labels_csv(tmp_path / 'labels.csv', _rows(NAME))
    lines = p.read_text().splitlines()
    p.write_text('\n'.join(lines[:2] + [lines[2] + ',9'] + lines[3:]) + '\n')
    with pytest.raises(RecordError, match=r'labels.csv:3: expected 17 columns .* got 18'):
        read_labels_csv(p)
    p.write_text('\n'.join(lines[:3] + [lines[3].replace(',-1,', ',abc,', 1)]) + '\n')
    with pytest.raises(RecordError, match=r"labels.csv:4: column x1_pix must be a number, got 'abc'"):
        read_labels_csv(p)
    p.write_text('\n'.join([lines[0] + ',extra'] + lines[1:]) + '\n')
    with pytest.raises(RecordError, match=r'labels.csv:1: the header must name 17 columns'):
        read_labels_csv(p)
    p.write_text('\n'.join(lines[:2] + [lines[2].replace(f'{NAME},0,1', f'{NAME},5,1')]) + '\n')
    with pytest.raises(RecordError, match=r'labels.csv:3: numSample 7 is in .* #5 here but in .* #0 on an earlier line'):
        read_labels_csv(p)
    with pytest.raises(ValueError, match='labels row 1: expected 17 values'):
        write_labels_csv(tmp_path / 'b.csv', [list(_rows(NAME)[0].values()), [1, 2, 3]])
    with pytest.raises(ValueError, match=r"labels row 0: missing columns \['Difficult'\]"):
        write_labels_csv(tmp_path / 'b.csv', [{k: v for k, v in _rows(NAME)[0].items() if k != 'Difficult'}])
    assert not (tmp_path / 'b.csv').exists()


def test_official_chip_size(tmp_path):
    from drivenb.radial.records import ADC_INT16_PER_CHIP
    fr = demo_frames(n=1, chip_int16=ADC_INT16_PER_CHIP, seed=2)
    r = write_record(tmp_path, fr, name=NAME, chip_int16=ADC_INT16_PER_CHIP)
    assert (r / f'{NAME}_radar_ch3.bin').stat().st_size == 2 * 2**20
    s = SyncReader(r, decode_camera=False)[0]
    assert s['radar_ch1']['data'].shape == (ADC_INT16_PER_CHIP,) and np.array_equal(s['radar_ch1']['data'], fr[0]['chips']['radar_ch1'])
