"""Bad RADIal input (issue 11): each damage to a raw root gives a clear error naming the file and the line or field and
what was expected; `convert_radial` raises before converting any frame where the damage can be seen up front, and where
it is only seen on reading a frame, names that frame after converting the others, leaving nothing half-written."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from drivenb.radial.convert import convert_radial, frame_files
from drivenb.radial.radar import RadarGeometry, calibration_table, chips_to_cube, load_calibration_table, save_calibration_table
from drivenb.radial.records import (ADC_INT16_PER_CHIP, SENSOR_EXT, RecordError, SyncReader, demo_frames, events_log_path,
                                    parse_recording, read_labels_csv, unlabelled_row, write_labels_csv, write_record)
from drivenb.radial.synth import write_radial_dataset

CHIPS = ('radar_ch0', 'radar_ch1', 'radar_ch2', 'radar_ch3')


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
    "2 records x 2 frames of the reduced synthetic sensor (numSample 0-3), never modified."
    r = tmp_path_factory.mktemp('radial') / 'root'
    write_radial_dataset(r, n_records=2, frames_per_record=2)
    return r


@pytest.fixture
def root(pristine, tmp_path):
    "A private copy of the pristine root, free to damage."
    r = tmp_path / 'root'
    shutil.copytree(pristine, r)
    return r


def _rec(root, i=0) -> Path:
    return sorted(p for p in Path(root).iterdir() if p.name.startswith('RECORD@'))[i]


def _file(rec, sensor) -> Path:
    return rec / f'{rec.name}_{sensor}.{SENSOR_EXT[sensor]}'


def _fid(root, rec, index) -> int:
    "The labels.csv numSample of frame `index` of record `rec`."
    return next(k for k, fr in read_labels_csv(root / 'labels.csv').items() if (fr.dataset, fr.dataset_index) == (rec.name, index))


def _convert(root, out, **kw):
    kw = {'workers': 1, 'representations': ('rd',), 'progress': False, **kw}
    return convert_radial(root, out, **kw)


def _files(out) -> list:
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob('*') if p.is_file()) if Path(out).exists() else []


def _no_tmp(out):
    assert not [p for p in _files(out) if '.tmp' in p], _files(out)


# ---- (a) a chip file cut short ----

def test_truncated_chip_file(root, tmp_path):
    rec = _rec(root); f = _file(rec, 'radar_ch1'); n = f.stat().st_size
    f.write_bytes(f.read_bytes()[:n - 1000])                                # cuts the payload of frame 1
    db = SyncReader(rec, decode_camera=False)
    assert len(db) == 2                                                     # kept, as the official reader keeps it (indices unchanged)
    (t,) = db.report.truncated
    assert (t['frame'], t['sensor'], t['index'], t['file_size']) == (1, 'radar_ch1', 1, n - 1000)
    db[0]
    with pytest.raises(RecordError, match=rf"{re.escape(f.name)}: radar_ch1 event 1 \(events log line {t['line']}\) needs bytes \d+..{n} "
                                          rf"but the file ends at byte {n - 1000} \(truncated\)"):
        db[1]
    with pytest.raises(RecordError, match=rf"{re.escape(f.name)}: radar_ch1 event 1 .*synchronised frame 1\) needs bytes"):
        SyncReader(rec, strict=True)
    out = tmp_path / 'out'
    with pytest.raises(RecordError, match=rf"{re.escape(str(f))}: radar_ch1 event 1 \(events log line {t['line']}\) of numSample "
                                          rf"{_fid(root, rec, 1)} \({re.escape(rec.name)} frame 1\) needs bytes \d+..{n} but the file has {n - 1000} \(truncated"):
        _convert(root, out)
    assert not out.exists()                                                 # found before any frame is converted


# ---- (b) a chip file missing ----

def test_missing_chip_file(root, tmp_path):
    rec = _rec(root, 1); _file(rec, 'radar_ch2').unlink()
    msg = rf'{re.escape(rec.name)}_radar_ch2.bin; the radar master needs the 4 chip files'
    with pytest.raises(FileNotFoundError, match=msg): SyncReader(rec)
    with pytest.raises(FileNotFoundError, match=msg): _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_missing_events_log(root, tmp_path):
    rec = _rec(root); events_log_path(rec).unlink()
    with pytest.raises(FileNotFoundError, match=rf'events log not found: .*{re.escape(rec.name)}_events_log.rec'):
        _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_events_log_without_radar(root, tmp_path):
    rec = _rec(root); log = events_log_path(rec)
    log.write_text(''.join(ln for ln in log.read_text().splitlines(True) if 'sensor radar_ch3 ' not in ln))
    with pytest.raises(RecordError, match=rf'{re.escape(log.name)}: no radar_ch3 event, so no radar frame \(numSample {_fid(root, rec, 0)} names this record\)'):
        _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# ---- (c) a malformed events-log line ----

@pytest.mark.parametrize('edit, match', [
    (lambda s: s.replace(' | datasize', ' datasize'), r"expected 17 whitespace-separated tokens \('label value \|' for timestamp, .*\), got 16"),
    (lambda s: s + ' |', r'expected 17 whitespace-separated tokens .*got 18'),
    (lambda s: re.sub(r'sample \d+', 'sample five', s), r"field sample \(token 7\) is not an integer: 'five'"),
    (lambda s: re.sub(r'offset \d+', 'offset 0x10', s), r"field offset \(token 13\) is not an integer: '0x10'"),
    (lambda s: re.sub(r'datasize \d+', 'datasize -4', s), r'negative offset or datasize'),
])
def test_malformed_events_log_line(root, tmp_path, edit, match):
    rec = _rec(root); log = events_log_path(rec)
    lines = log.read_text().splitlines()
    k = 5                                                                   # 1-based line number of the damaged line
    lines[k - 1] = edit(lines[k - 1])
    log.write_text('\n'.join(lines) + '\n')
    full = rf'{re.escape(log.name)}:{k}: ' + match
    with pytest.raises(RecordError, match=full): parse_recording(rec)
    with pytest.raises(RecordError, match=full): SyncReader(rec)
    with pytest.raises(RecordError, match=full): _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# ---- (d) labels.csv rows ----

def _edit_cells(cells, col, value):
    from drivenb.radial.records import LABEL_COLUMNS
    cells = list(cells); cells[LABEL_COLUMNS.index(col)] = value; return cells


@pytest.mark.parametrize('edit, match', [
    (lambda c: c + ['7'], r'expected 17 columns \(numSample, x1_pix, .*, Difficult\), got 18'),
    (lambda c: c[:-1], r'expected 17 columns .*got 16'),
    (lambda c: _edit_cells(c, 'radar_R_m', 'abc'), r"column radar_R_m must be a number, got 'abc'"),
    (lambda c: _edit_cells(c, 'dataset_index', '1.5'), r"column dataset_index must be an integer, got '1.5'"),
    (lambda c: _edit_cells(c, 'numSample', ''), r"column numSample must be an integer, got ''"),
])
def test_bad_labels_row(root, tmp_path, edit, match):
    p = root / 'labels.csv'
    lines = p.read_text().splitlines()
    k = 3                                                                   # 1-based line (the header is line 1)
    lines[k - 1] = ','.join(edit(lines[k - 1].split(',')))
    p.write_text('\n'.join(lines) + '\n')
    full = rf'labels.csv:{k}: ' + match
    with pytest.raises(RecordError, match=full): read_labels_csv(p)
    with pytest.raises(RecordError, match=full): _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_labels_index_beyond_record(root, tmp_path):
    p = root / 'labels.csv'
    lines = p.read_text().splitlines()
    rec = _rec(root)
    lines.append(','.join(str(v) for v in unlabelled_row(9, rec.name, 7).values()))
    p.write_text('\n'.join(lines) + '\n')
    with pytest.raises(IndexError, match=rf'labels.csv numSample 9: dataset_index 7 is outside the 2 frames SyncReader keeps in {re.escape(rec.name)}'):
        _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# ---- (e) the calibration table ----

def test_missing_calibration_table(root, tmp_path):
    (root / 'CalibrationTable.npy').unlink()
    msg = rf"calibration table not found: {re.escape(str(root / 'CalibrationTable.npy'))}"
    with pytest.raises(FileNotFoundError, match=msg): load_calibration_table(root / 'CalibrationTable.npy')
    with pytest.raises(FileNotFoundError, match=msg): _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('damage, exc, match', [
    ('no Signal', KeyError, r"CalibrationTable.npy: calibration table lacks \['Signal'\]; expected keys \['Signal', 'H', 'Azimuth_table', 'Elevation_table'\]"),
    ('cut', ValueError, r'CalibrationTable.npy: not a readable calibration table \(.*\); expected a pickled dict with keys'),
    ('garbage', ValueError, r'CalibrationTable.npy: not a readable calibration table'),
    ('not a dict', ValueError, r'CalibrationTable.npy: calibration table must hold a dict .*got float'),
    ('other geometry', ValueError, r"CalibrationTable.npy: geometry mismatch: table\['Signal'\] has 128 virtual channels"),
])
def test_damaged_calibration_table(root, tmp_path, damage, exc, match):
    p = root / 'CalibrationTable.npy'
    if damage == 'no Signal':
        t = load_calibration_table(p); del t['Signal']; save_calibration_table(t, p)
    elif damage == 'cut': p.write_bytes(p.read_bytes()[:4096])
    elif damage == 'garbage': p.write_bytes(b'not a numpy file at all')
    elif damage == 'not a dict': np.save(p, np.float64(2.0))
    else: save_calibration_table(calibration_table(RadarGeometry(tx=8, doppler_slots=12, chirps=48), n_az=5, n_el=3), p)
    if damage != 'other geometry':                                         # a table of another sensor loads; only the processor can tell
        with pytest.raises(exc, match=match): load_calibration_table(p)
    with pytest.raises(exc, match=match): _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# ---- (f) a geometry that does not fit the files ----

def test_official_geometry_on_reduced_files(root, tmp_path):
    rec = _rec(root)
    with pytest.raises(ValueError, match=rf'geometry does not match the chips of {re.escape(rec.name)}: {re.escape(rec.name)}_radar_ch0.bin event 0 '
                                         rf'\(events log line \d+, numSample {_fid(root, rec, 0)}\) holds 131072 bytes, the geometry expects 2097152 \(2 x 512 samples x 4 Rx '
                                         rf'x 256 chirps x int16\); the files fit RadarGeometry\(\)'):
        _convert(root, tmp_path / 'out', geometry=RadarGeometry.official())
    assert not (tmp_path / 'out').exists()
    s = SyncReader(rec, decode_camera=False)[0]
    with pytest.raises(ValueError, match=r'radar_ch0 has 65536 values, expected 1048576 int16 .*: wrong geometry or a cut file\?'):
        chips_to_cube({c: s[c]['data'] for c in CHIPS}, RadarGeometry.official())


def test_reduced_geometry_on_official_files(tmp_path):
    root, name = tmp_path / 'root', 'RECORD@2020-11-22_12.30.00'
    write_record(root, demo_frames(n=1, chip_int16=ADC_INT16_PER_CHIP, seed=3), name=name, chip_int16=ADC_INT16_PER_CHIP)
    write_labels_csv(root / 'labels.csv', [unlabelled_row(0, name, 0)])
    save_calibration_table(calibration_table(RadarGeometry.official(), n_az=5, n_el=3), root / 'CalibrationTable.npy')
    with pytest.raises(ValueError, match=rf'geometry does not match the chips of {re.escape(name)}: {re.escape(name)}_radar_ch0.bin event 0 .* holds '
                                         rf'2097152 bytes, the geometry expects 131072 .*; the files fit RadarGeometry.official\(\)'):
        _convert(root, tmp_path / 'out', geometry=RadarGeometry())
    assert not (tmp_path / 'out').exists()
    s = SyncReader(root / name, decode_camera=False)[0]
    with pytest.raises(ValueError, match=r'radar_ch0 has 1048576 values, expected 65536 int16'):
        chips_to_cube({c: s[c]['data'] for c in CHIPS}, RadarGeometry())


def test_one_chip_of_another_size(root, tmp_path):
    "The log gives radar_ch2 of frame 1 half the bytes: caught up front (it would fail in chips_to_cube in the middle of the run)."
    rec = _rec(root); log = events_log_path(rec)
    lines = log.read_text().splitlines()
    k = [i for i, ln in enumerate(lines) if 'sensor radar_ch2 ' in ln][1]
    lines[k] = re.sub(r'datasize \d+', 'datasize 65536', lines[k])
    log.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=rf'geometry does not match the chips of {re.escape(rec.name)}: {re.escape(rec.name)}_radar_ch2.bin event 1 '
                                         rf'\(events log line {k + 1}, numSample {_fid(root, rec, 1)}\) holds 65536 bytes, the geometry expects 131072'):
        _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# ---- (g) the camera stream (and the laser file) ----

@pytest.mark.parametrize('sensor', ['camera', 'scala'])
def test_missing_camera_or_laser_file(root, tmp_path, sensor):
    rec = _rec(root); _file(rec, sensor).unlink()
    db = SyncReader(rec, decode_camera=False)                              # the official reader skips the sensor's log lines
    assert sensor not in db.frames[0] and any(f"sensor '{sensor}' skipped" in n for n in db.report.notes)
    with pytest.raises(FileNotFoundError, match=rf'missing {re.escape(_file(rec, sensor).name)}; every layout writes the camera image and the laser points'):
        _convert(root, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_truncated_camera_stream(root, tmp_path):
    rec = _rec(root, 1); m = _file(rec, 'camera'); n = m.stat().st_size
    m.write_bytes(m.read_bytes()[:n - 10])
    db = SyncReader(rec, decode_camera=False)
    assert [(t['frame'], t['sensor']) for t in db.report.truncated] == [(1, 'camera')]
    with pytest.raises(RecordError, match=rf'{re.escape(m.name)}: camera event 1 \(events log line \d+\) needs bytes \d+..{n} but the file ends at byte {n - 10}'):
        db[1]
    with pytest.raises(RecordError, match=rf'{re.escape(m.name)}: camera event 1 .* of numSample {_fid(root, rec, 1)} .* \(truncated; 1 labelled frames affected\)'):
        _convert(root, tmp_path / 'out', layout='fftradnet')
    assert not (tmp_path / 'out').exists()


def _damage_jpeg(rec, index, how):
    "Overwrite the camera payload of synchronised frame `index` in place (same size, so the log still fits the file); returns (event, line)."
    db = SyncReader(rec, decode_camera=False)
    ev, j = db.dicts['camera'], db.frames[index]['camera']
    o, size = int(ev.offset[j]), int(ev.datasize[j])
    b = bytearray(_file(rec, 'camera').read_bytes())
    b[o:o + size] = bytes(size) if how == 'zeros' else b'\xff\xd8' + bytes(size - 4) + b'\xff\xd9'
    _file(rec, 'camera').write_bytes(bytes(b))
    return j, int(ev.line[j])


@pytest.mark.parametrize('layout, workers', [('echofusion', 1), ('fftradnet', 2)])
def test_damaged_jpeg_found_midway(root, pristine, tmp_path, layout, workers):
    rec = _rec(root); j, line = _damage_jpeg(rec, 1, 'zeros')
    msg = rf'{re.escape(_file(rec, "camera").name)}: camera event {j} \(events log line {line}\) at bytes \d+..\d+ is not a JPEG \(no FFD8 ... FFD9 markers\)'
    for decode in (False, True):
        with pytest.raises(RecordError, match=msg): SyncReader(rec, decode_camera=decode)[1]
    fid, out = _fid(root, rec, 1), tmp_path / 'out'
    with pytest.raises(RecordError, match=rf'1 of 4 frames could not be converted \(the other 3 are written whole and a rerun skips them\): '
                                          rf'numSample {fid} \({re.escape(rec.name)} frame 1\): .*' + msg):
        _convert(root, out, layout=layout, workers=workers)
    done = _files(out)
    per_frame = {k: frame_files(layout, ('rd',), k) for k in range(4)}
    assert all(p in done for k in range(4) if k != fid for p in per_frame[k].values())       # the others are converted
    assert not any(p in done for p in per_frame[fid].values())                               # nothing of the damaged frame
    assert 'convert.json' not in done and not any(p.startswith('ImageSets') for p in done)  # not marked finished
    _no_tmp(out)
    shutil.copyfile(_file(pristine / rec.name, 'camera'), _file(rec, 'camera'))            # mended: a rerun converts that frame only
    m = _convert(root, out, layout=layout, workers=workers)
    assert (m['converted'], m['reconverted'], m['skipped']) == (1, 0, 3) and (out / 'convert.json').is_file()
    _no_tmp(out)


def test_undecodable_jpeg_with_intact_markers(root, tmp_path):
    "FFD8 ... FFD9 around zeros: only decoding finds it (echofusion decodes; fftradnet copies the bytes, see the report)."
    rec = _rec(root); j, line = _damage_jpeg(rec, 0, 'markers')
    msg = rf'{re.escape(_file(rec, "camera").name)}: camera event {j} \(events log line {line}\) at byte \d+ is not a decodable JPEG'
    with pytest.raises(RecordError, match=msg): SyncReader(rec)[0]
    with pytest.raises(RecordError, match=rf'1 of 4 frames could not be converted .*numSample {_fid(root, rec, 0)} .*' + msg):
        _convert(root, tmp_path / 'out')
    assert 'convert.json' not in _files(tmp_path / 'out')
    _no_tmp(tmp_path / 'out')
