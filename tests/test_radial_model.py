"""drivenb.radial.model: FFTRadNet shapes at the official and reduced geometries, the RAEncoder round trip, the loss
against a hand computation, and a 30-step overfit check on one tiny frame (valeoai/RADIal `FFTRadNet/`)."""
import math

import numpy as np
import pytest
import torch

from drivenb.radial.model import FFTRadNet, RAEncoder, fftradnet_loss, focal_loss, rd_to_input
from drivenb.radial.radar import RadarGeometry


def test_official_shapes_meta():
    "Official geometry and widths (shapes on the meta device: a real 512 x 256 forward is too slow for 2 CPU cores)."
    with torch.device('meta'):
        net = FFTRadNet.official()
        out = net(torch.empty(2, 32, 512, 256))
    assert tuple(out['Detection'].shape) == (2, 3, 128, 224)
    assert tuple(out['Segmentation'].shape) == (2, 1, 256, 224)
    assert sum(p.numel() for p in net.parameters()) == 3_789_940
    assert isinstance(net.RA_decoder.L4, torch.nn.Identity)


def test_reduced_forward_and_errors():
    torch.manual_seed(0)
    net = FFTRadNet(angle_bins=224).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 32, 128, 64))
    assert tuple(out['Detection'].shape) == (1, 3, 32, 56)
    assert tuple(out['Segmentation'].shape) == (1, 1, 64, 56)
    p = out['Detection'][:, 0]
    assert ((p >= 0) & (p <= 1)).all()
    with pytest.raises(ValueError, match='2\\*n_rx=32'):
        net(torch.randn(1, 30, 128, 64))
    with pytest.raises(ValueError, match='samples, chirps'):
        net(torch.randn(1, 32, 64, 64))
    with pytest.raises(ValueError, match='RadarGeometry.samples'):
        FFTRadNet(RadarGeometry(samples=100))
    with pytest.raises(ValueError, match='RadarGeometry.chirps'):
        FFTRadNet(RadarGeometry(chirps=52, doppler_slots=13))
    with pytest.raises(ValueError, match='angle_bins'):
        FFTRadNet(angle_bins=90)


def test_rd_to_input_layout():
    rd = np.random.default_rng(0).standard_normal((16, 8, 4)) + 1j * np.random.default_rng(1).standard_normal((16, 8, 4))
    x = rd_to_input(rd)
    assert x.shape == (8, 16, 8) and x.dtype == torch.float32
    np.testing.assert_allclose(x[1].numpy(), rd[..., 1].real, rtol=1e-6)
    np.testing.assert_allclose(x[5].numpy(), rd[..., 1].imag, rtol=1e-6)


@pytest.mark.parametrize('geometry,angle_bins,angle_res', [(RadarGeometry.official(), 896, 0.2), (RadarGeometry(), 224, 0.8)])
def test_encoder_round_trip(geometry, angle_bins, angle_res):
    "Encode then decode: every cell of a target's blob gives back (R, A); the lit centre cell is within half a cell."
    enc = RAEncoder(geometry, angle_bins=angle_bins, angle_res=angle_res)
    rng = np.random.default_rng(0)
    H, W = enc.shape[1:]
    R = rng.uniform(2 * enc.range_cell, (H - 2) * enc.range_cell, 5)
    A = rng.uniform(-(W / 2 - 2) * enc.angle_cell, (W / 2 - 2) * enc.angle_cell, 5)
    for r, a in zip(R, A):                   # one target per frame: blobs never overlap
        m = enc.encode(np.array([[r, a, 0.]]))
        assert m.shape == enc.shape and int(m[0].sum()) == 9
        det = enc.decode(m, threshold=0.5)
        assert det.shape == (9, 3)
        np.testing.assert_allclose(det[:, 0], r, atol=1e-4)
        np.testing.assert_allclose(det[:, 1], a, atol=1e-4)
        np.testing.assert_allclose(det[:, 2], 1.)
        # the centre cell holds the target: offsets within one cell, i.e. the cell centre is within half a cell
        ri, ai = int(r // enc.range_cell), int(np.floor(a / enc.angle_cell + W / 2))
        assert abs((ri + .5) * enc.range_cell - r) <= enc.range_cell / 2 + 1e-9
        assert abs((ai - W / 2 + .5) * enc.angle_cell - a) <= enc.angle_cell / 2 + 1e-9
    assert enc.decode(np.zeros(enc.shape, np.float32)).shape == (0, 3)
    assert enc.encode(np.zeros((0, 2)))[0].sum() == 0


def test_encoder_errors():
    enc = RAEncoder()
    with pytest.raises(ValueError, match='labels must be'):
        enc.encode(np.zeros((3, 1)))
    with pytest.raises(ValueError, match='pred must be'):
        enc.decode(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match='RadarGeometry.samples'):
        RAEncoder(RadarGeometry(samples=130))


def test_loss_by_hand():
    det = torch.tensor([[[[0.9, 0.2]], [[0.0, 5.]], [[3.0, -4.]]]])     # B=1, C=3, H=1, W=2
    tgt = torch.tensor([[[[1., 0.]], [[0.4, 0.]], [[1.0, 0.]]]])
    seg = torch.tensor([[[[1.0, -1.0]]]]); seg_t = torch.tensor([[[0., 1.]]])
    total, parts = fftradnet_loss(det, tgt, seg, seg_t)
    cls = -(0.1 ** 2) * math.log(0.9 + 1e-6) - (0.2 ** 2) * math.log(0.8 + 1e-6)
    reg = 0.5 * 0.4 ** 2 + (2.0 - 0.5)                # one positive cell, smooth L1 with beta 1
    bce = (1 + math.log(1 + math.exp(-1))) * 2 / 2    # both pixels wrong by a logit of 1; mean, times B=1
    assert parts['cls'].item() == pytest.approx(cls, rel=1e-5)
    assert parts['reg'].item() == pytest.approx(100 * reg, rel=1e-5)
    assert parts['seg'].item() == pytest.approx(100 * bce, rel=1e-5)
    assert total.item() == pytest.approx(cls + 100 * reg + 100 * bce, rel=1e-5)
    assert focal_loss(torch.tensor([1.0]), torch.tensor([1.0])).item() == pytest.approx(0, abs=1e-9)
    # two positive cells in a batch of 2: the regression sum is divided by 2
    d2 = torch.cat([det, det]); t2 = torch.cat([tgt, tgt])
    assert fftradnet_loss(d2, t2)[1]['reg'].item() == pytest.approx(100 * reg, rel=1e-5)
    with pytest.raises(ValueError, match='regression'):
        fftradnet_loss(det, tgt, regression='huber')


def test_overfit_one_frame():
    "30 Adam steps on one tiny frame at the reduced geometry more than halve the loss."
    torch.manual_seed(0)
    g = RadarGeometry()
    net = FFTRadNet(g, width=0.125, blocks=(1, 1, 1, 1), angle_bins=224)
    enc = RAEncoder(g, angle_bins=224, angle_res=0.8)
    x = torch.randn(1, 2 * g.n_rx, g.samples, g.chirps)
    y = torch.as_tensor(enc.encode([[12., -20.], [30., 10.]]))[None]
    fs = (torch.rand(1, g.samples // 2, 56) > 0.5).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        out = net(x)
        loss, parts = fftradnet_loss(out['Detection'], y, out['Segmentation'], fs)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(parts) == {'cls', 'reg', 'seg'}
