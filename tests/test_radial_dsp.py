"""drivenb.radial.dsp against an independent float64 numpy version of the official `SignalProcessing/rpl.py` steps, on targets from `synth_adc`, and at the official size.

The `ref_*` functions also stand for the official CPU path in `benchmarks/radial_dsp.py`."""
import time
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from drivenb.radial.radar import RadarGeometry, calibration_table, synth_adc
from drivenb.radial.dsp import RadarProcessor


# --- the reference: the official algorithm written out in numpy from the steps of valeoai/RADIal SignalProcessing/rpl.py ---------
def ref_rd(chips, g):
    "Official RD spectrum: interleaved I/Q, Fortran reshape, chips [ch3, ch0, ch1, ch2], DC removal, windowed FFTs."
    S, C, R = g.samples, g.chirps, g.rx_per_chip
    names = [f'radar_ch{g.chips - 1}'] + [f'radar_ch{i}' for i in range(g.chips - 1)]
    frame = np.concatenate([np.reshape(chips[n][0::2] + 1j * chips[n][1::2], (S, R, C), order='F').transpose(0, 2, 1)
                            for n in names], axis=2)
    frame = frame - np.mean(frame, axis=(0, 1))
    win = lambda N: 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(N) / (N - 1))
    rt = np.fft.fft(frame * win(S)[:, None, None], S, axis=0)
    return frame, rt, np.fft.fft(rt * win(C)[None, :, None], C, axis=1)


def ref_sequence(t0, g):
    "Doppler bins of the Tx in MIMO order: slot 0, then slots n_empty+1 .. slots-1."
    B = g.chirps // g.doppler_slots
    seq = [(t0 + B * s) % g.chirps for s in range(g.doppler_slots)]
    return [seq[0]] + seq[1 + g.doppler_slots - g.tx:]


def ref_pc(rd, g, table):
    "Official point cloud: folded power, CA-CFAR (9,9,3,3) 2 dB with convolve2d 'same', TX0 search, MIMO x calibration (all hits at once, as rpl.py)."
    S, C = rd.shape[:2]
    slots, B, E = g.doppler_slots, g.chirps // g.doppler_slots, g.doppler_slots - g.tx
    power = np.sum(np.abs(rd), axis=2)
    reduced = np.sum(power.reshape(S, slots, B), axis=1)
    mask = np.ones((19, 19), dtype=bool); mask[6:13, 6:13] = False
    cells = convolve2d(np.ones(reduced.shape), mask, mode='same')
    p = np.abs(reduced) ** 2
    hits = p / (convolve2d(p, mask, mode='same') / cells) > 10 ** (2 / 10)
    rbins, jbins = np.where(hits)
    if len(rbins) == 0: return np.zeros((0, 4))
    ring = jbins[:, None] + B * np.arange(slots)[None]                        # hits x slots, then the first E again
    ring = np.cumsum(power[rbins[:, None], np.concatenate([ring, ring[:, :E]], axis=1)], axis=1)
    t0 = np.argmin((ring[:, E:] - ring[:, :-E]) / E, axis=1) * B + jbins
    mimo = rd[rbins[:, None], [ref_sequence(t, g) for t in t0], :].reshape(len(t0), -1) * table['H'][0]
    sig = table['Signal']; n_az, V, n_el = sig.shape
    spec = np.abs(np.rollaxis(sig, 2, 1).reshape(n_az * n_el, V) @ mimo.T); spec[np.isnan(spec)] = 0
    a, e = np.unravel_index(np.argmax(spec, axis=0), (n_az, n_el))
    return np.stack([rbins / S * g.max_range, t0, np.deg2rad(table['Azimuth_table'][a]), np.deg2rad(table['Elevation_table'][e])], 1)


def ref_ra(rd, g, table, el=5, rows=32):
    "Official RA map: MIMO spectrum of every Doppler bin x Signal[..., 5], |.| summed over Doppler, transposed; by blocks of `rows` range rows (None: all at once, as rpl.py)."
    S, C = rd.shape[:2]
    rows = rows or S
    seqs = [ref_sequence(d, g) for d in range(C)]
    calib = table['Signal'][..., el]
    out = []
    for r0 in range(0, S, rows):
        blk = rd[r0:r0 + rows]
        mimo = blk[:, seqs, :].reshape(blk.shape[0] * C, -1) * table['H'][0]
        spec = np.abs(calib @ mimo.T).reshape(calib.shape[0], blk.shape[0], C)
        out.append(np.sum(spec, axis=2).T)
    return np.concatenate(out)


def rel(a, b):
    "max |a - b| / max |b|"
    a = a.cpu().numpy() if torch.is_tensor(a) else a
    return float(np.abs(a - b).max() / np.abs(b).max())


TARGETS = np.array([[12.0, 4.0, np.deg2rad(-20.), 0., 60.],     # range m, velocity m/s, azimuth rad, elevation rad, amplitude
                    [25.3, -9.5, np.deg2rad(5.3), 0., 40.],
                    [40.1, 15.2, np.deg2rad(33.), np.deg2rad(4.), 30.]])


@pytest.fixture(scope='module')
def reduced():
    g = RadarGeometry()
    tab = calibration_table(g)
    chips = synth_adc(g, TARGETS, noise=8., seed=1, clutter=10, dc=20.)
    frame, rt, rd = ref_rd(chips, g)
    return g, tab, chips, dict(ADC=frame, RT=rt, RD=rd, PC=ref_pc(rd, g, tab), RA=ref_ra(rd, g, tab))


# --- (a) equality with the official algorithm ------------------------------------------------------------------------
def test_float64_equals_official_reference(reduced):
    g, tab, chips, ref = reduced
    rp = RadarProcessor(tab, g)
    for m in ('ADC', 'RT', 'RD', 'RA'):
        assert rel(rp(chips, m), ref[m]) < 1e-9, m
    # the RA map: the reordered sums (default) and the official operand order, both equal to the official algorithm
    assert rp.ra_method == 'fft'
    rd = rp.rd(chips)
    e_fft, e_direct = rel(rp.range_azimuth(rd), ref['RA']), rel(RadarProcessor(tab, g, ra_method='direct').range_azimuth(rd), ref['RA'])
    print(f'float64 RA relative error: fft {e_fft:.1e}, direct {e_direct:.1e}')
    assert e_fft < 1e-12 and e_direct < 1e-12
    pc = rp(chips, 'PC').numpy()
    assert pc.shape == ref['PC'].shape and len(pc) > 3
    np.testing.assert_array_equal(pc[:, 1], ref['PC'][:, 1])
    np.testing.assert_allclose(pc, ref['PC'], rtol=1e-12, atol=0)


def test_complex64_error(reduced):
    "complex64: RD and RA within 1e-5 of the float64 reference (measured ~1e-7); same detections on this frame."
    g, tab, chips, ref = reduced
    rp = RadarProcessor(tab, g, dtype='complex64')
    rd = rp(chips, 'RD'); assert rd.dtype == torch.complex64
    e_rd, e_ra = rel(rd, ref['RD']), rel(rp.range_azimuth(rd), ref['RA'])
    e_direct = rel(RadarProcessor(tab, g, dtype='complex64', ra_method='direct').range_azimuth(rd), ref['RA'])
    print(f'complex64 relative error: RD {e_rd:.2e}, RA {e_ra:.2e} (direct {e_direct:.2e})')
    assert e_rd < 1e-5 and e_ra < 1e-5 and e_direct < 1e-5
    pc = rp.point_cloud(rd).numpy()
    np.testing.assert_array_equal(pc[:, :2], ref['PC'][:, :2])
    assert np.abs(pc[:, 2] - ref['PC'][:, 2]).max() <= np.deg2rad(0.2) + 1e-9   # at most one table step


# --- (b) injected targets are recovered ------------------------------------------------------------------------------
def test_targets_recovered(reduced):
    g, tab, chips, ref = reduced
    rp = RadarProcessor(tab, g)
    rd = rp.rd(chips); pc = rp.point_cloud(rd)
    power = rd.abs().sum(2)
    step = np.deg2rad(np.diff(tab['Azimuth_table']).max())
    for R, v, az, el, a in TARGETS:
        d0 = round(float(g.doppler_bin(v))) % g.chirps
        rb = round(R / g.range_bin)
        occupied = [(d0 + g.bins_per_slot * s) % g.chirps for s in g.tx_slots]
        empty = [(d0 + g.bins_per_slot * s) % g.chirps for s in range(1, 1 + g.n_empty)]
        assert int(power[rb].argmax()) in occupied                                   # RD peak in one of the Tx slots
        assert power[rb, occupied].min() > 3 * power[rb, empty].max()               # the empty slots are empty
        near = pc[((pc[:, 0] - R).abs() <= g.range_bin) & (pc[:, 1] == d0)]          # TX0 found, within one range bin
        assert len(near), (R, v)
        best = near[(near[:, 2] - az).abs().argmin()]
        assert abs(float(best[2]) - az) <= step + 1e-12, (np.rad2deg(float(best[2])), np.rad2deg(az))
        assert abs(float(best[3]) - el) <= np.deg2rad(2.) + 1e-12                   # elevation within one 2-deg step


def test_ra_peak_at_target():
    "The RA row of an isolated target peaks at its azimuth (within one 0.2-deg step) despite the official Doppler-sum streaks."
    g = RadarGeometry(); rp = RadarProcessor(calibration_table(g), g, dtype='complex64')
    for az in (-20., 5.3, 33.):
        row = rp(synth_adc(g, [[20.1, 4., np.deg2rad(az), 0., 60.]], noise=8.), 'RA')[round(20.1 / g.range_bin)]
        assert abs(np.rad2deg(rp.az_rad[row.argmax()].item()) - az) <= 0.2 + 1e-9, az


# --- (c) the official size, one frame --------------------------------------------------------------------------------
def test_official_geometry_one_frame():
    g = RadarGeometry.official()
    tab = calibration_table(g)
    tgt = np.array([[30.2, 5.0, np.deg2rad(10.), 0., 30.], [71.7, -12., np.deg2rad(-24.), 0., 20.]])
    chips = synth_adc(g, tgt, noise=8., seed=3, clutter=8, dc=20.)
    assert all(a.dtype == np.int16 and a.nbytes == 2 * 2**20 for a in chips.values())
    t0 = time.perf_counter()
    rp = RadarProcessor(tab, g)
    rd = rp.rd(chips); pc = rp.point_cloud(rd).numpy()
    t_ours = time.perf_counter() - t0
    _, _, rd_ref = ref_rd(chips, g)
    assert rd.shape == (512, 256, 16) and rel(rd, rd_ref) < 1e-9
    pc_ref = ref_pc(rd_ref, g, tab)
    np.testing.assert_allclose(pc, pc_ref, rtol=1e-12, atol=0)
    for R, v, az, el, a in tgt:
        d0 = round(float(g.doppler_bin(v))) % g.chirps
        near = pc[(np.abs(pc[:, 0] - R) <= g.range_bin) & (pc[:, 1] == d0)]
        assert len(near) and np.abs(near[:, 2] - az).min() <= np.deg2rad(0.2) + 1e-12, (R, near)
    # the RA map against the reference with a coarse azimuth grid (31 instead of 751) to keep the test to seconds
    tab31 = calibration_table(g, n_az=31)
    ra, ra_ref = RadarProcessor(tab31, g).range_azimuth(rd), ref_ra(rd_ref, g, tab31)
    assert ra.shape == (512, 31) and ra.dtype == torch.float64
    assert rel(ra, ra_ref) < 1e-9
    ra32 = RadarProcessor(tab31, g, dtype='complex64').range_azimuth(rd.to(torch.complex64))
    assert ra32.dtype == torch.float32 and rel(ra32, ra_ref) < 1e-5
    print(f'official frame: RD + PC {t_ours:.2f} s, {len(pc)} points')


# --- errors ----------------------------------------------------------------------------------------------------------
def test_errors_name_the_input(reduced):
    g, tab, chips, _ = reduced
    rp = RadarProcessor(tab, g)
    with pytest.raises(ValueError, match='radar_ch2 has 100 values'):
        rp({**chips, 'radar_ch2': chips['radar_ch2'][:100]}, 'RD')
    with pytest.raises(KeyError, match='radar_ch3'):
        rp({k: v for k, v in chips.items() if k != 'radar_ch3'}, 'RD')
    with pytest.raises(KeyError, match="lacks \\['Azimuth_table'\\]"):
        RadarProcessor({k: v for k, v in tab.items() if k != 'Azimuth_table'}, g)
    with pytest.raises(ValueError, match='geometry mismatch'):
        RadarProcessor(calibration_table(RadarGeometry(tx=8), n_az=11), g)
    with pytest.raises(ValueError, match='ra_elevation'):
        RadarProcessor(tab, g, ra_elevation=11)
    with pytest.raises(ValueError, match="ra_method must be 'fft' or 'direct'"):
        RadarProcessor(tab, g, ra_method='slow')
    with pytest.raises(ValueError, match=r'rd must have shape \(128, 64, 16\)'):
        rp.range_azimuth(torch.zeros(512, 256, 16, dtype=torch.complex128))
