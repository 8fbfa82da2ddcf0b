"""drivenb.pimae.points against plain-Python/numpy loop references (per point, per camera)."""
import math

import numpy as np
import pytest
import torch

from drivenb.pimae.points import (align_image_mask, chamfer_l2, fps, grid_hw, group, knn, patch_index,
                                  random_group_mask)


# ---------------------------------------------------------------- slow references
def _fps_slow(xyz, n):
    "One cloud (N, 3): index 0, then the first point (lowest index) with the largest min squared distance."
    xyz = np.asarray(xyz, np.float64); chosen = [0]
    for _ in range(1, n):
        best, besti = -1.0, 0
        for k in range(len(xyz)):
            d = min(float(((xyz[k] - xyz[j]) ** 2).sum()) for j in chosen)
            if d > best: best, besti = d, k
        chosen.append(besti)
    return chosen


def _knn_slow(query, ref, k):
    out = []
    for q in np.asarray(query, np.float64):
        d = [(float(((q - r) ** 2).sum()), j) for j, r in enumerate(np.asarray(ref, np.float64))]
        out.append([j for _, j in sorted(d)[:k]])   # sort by (distance, index): ties -> lowest index
    return out


def _chamfer_slow(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ab = np.mean([min(((p - q) ** 2).sum() for q in b) for p in a])
    ba = np.mean([min(((p - q) ** 2).sum() for p in a) for q in b])
    return ab + ba


def _patch_index_slow(xyz, ego_T_cams, pix_T_cams, image_hw, patch, min_depth=0.1):
    "One sample: xyz (M, 3), ego_T_cams (S, 4, 4), pix_T_cams (S, 3, 3) -> (M, S) list of tokens / -1."
    H, W = image_hw; gh, gw = -(-H // patch), -(-W // patch)
    out = []
    for p in np.asarray(xyz, np.float64):
        row = []
        for s, (E, K) in enumerate(zip(np.asarray(ego_T_cams, np.float64), np.asarray(pix_T_cams, np.float64))):
            pc = np.linalg.inv(E) @ np.append(p, 1.0)
            x, y, z = pc[:3]
            u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
            if z > min_depth and -0.5 < u < W - 0.5 and -0.5 < v < H - 0.5:
                row.append(s * gh * gw + math.floor((v + 0.5) / patch) * gw + math.floor((u + 0.5) / patch))
            else:
                row.append(-1)
        out.append(row)
    return out


def _align_slow(centre, point_mask, ego_T_cams, pix_T_cams, image_hw, patch, ratio, mode, noise):
    "One sample, the design-file rule spelled out; `noise` (L,) is the U[0, 1) draw."
    H, W = image_hw; gh, gw = -(-H // patch), -(-W // patch)
    L = len(ego_T_cams) * gh * gw; n_keep = math.ceil(L * (1 - ratio))
    hit = [False] * L
    toks = _patch_index_slow(centre, ego_T_cams, pix_T_cams, image_hw, patch)
    for g, row in enumerate(toks):
        if point_mask[g]:
            for t in row:
                if t >= 0: hit[t] = True
    score = [float(noise[i]) if mode == 'random' else float(hit[i]) + float(noise[i]) / 2 for i in range(L)]
    order = sorted(range(L), key=lambda i: score[i], reverse=(mode == 'complement'))
    mask = [True] * L
    for i in order[:n_keep]: mask[i] = False
    return mask, hit


def _rig(B, yaws=(55, 0, -55, 110, 180, -110), H=56, W=100, jitter=0.0, seed=0, dtype=torch.float64):
    "Ring of cameras (camera x right, y down, z forward) with optional random tilt/offset per sample."
    rng = np.random.default_rng(seed)
    E, K = [], []
    for _ in range(B):
        Es, Ks = [], []
        for yaw in np.deg2rad(yaws):
            yaw = yaw + jitter * rng.normal()
            R = np.stack([[np.sin(yaw), -np.cos(yaw), 0], [0, 0, -1], [np.cos(yaw), np.sin(yaw), 0]], 1)
            if jitter:
                a = jitter * rng.normal(size=3); c, s = np.cos(a[0]), np.sin(a[0])
                R = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ R
            T = np.eye(4); T[:3, :3] = R; T[:3, 3] = [jitter * rng.normal(), jitter * rng.normal(), 1.5]
            f = (W / 2) / np.tan(np.deg2rad(35)) * (1 + jitter * rng.normal())
            Es.append(T); Ks.append([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
        E.append(Es); K.append(Ks)
    return torch.tensor(np.array(E), dtype=dtype), torch.tensor(np.array(K), dtype=dtype)


# ---------------------------------------------------------------- fps / knn / group
@pytest.mark.parametrize('B,N,n,seed', [(1, 1, 1, 0), (2, 50, 10, 1), (3, 200, 32, 2), (1, 64, 64, 3)])
def test_fps_matches_slow(B, N, n, seed):
    xyz = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5
    got = fps(xyz, n)
    assert got.dtype == torch.int64 and got.shape == (B, n)
    for b in range(B): assert got[b].tolist() == _fps_slow(xyz[b], n)


def test_fps_ties_and_duplicates():
    g = torch.Generator().manual_seed(4)
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.)] * 3, indexing='ij'), -1).reshape(1, 64, 3)   # many equal distances
    dup = torch.cat([grid, grid[:, torch.randperm(64, generator=g)]], 1)                                 # every point twice
    for xyz, n in [(grid, 20), (dup, 40), (dup, 80)]:
        assert fps(xyz, n)[0].tolist() == _fps_slow(xyz[0], n)
    assert len(set(fps(dup, 64)[0].tolist())) == 64   # 64 distinct points: all distinct before any repeat
    assert fps(dup.float(), 10)[0].tolist() == _fps_slow(dup[0], 10)


@pytest.mark.parametrize('B,M,N,k,seed', [(1, 1, 1, 1, 0), (2, 7, 40, 5, 1), (3, 16, 128, 16, 2), (1, 8, 30, 30, 3)])
def test_knn_matches_slow(B, M, N, k, seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.randn(B, M, 3, generator=g, dtype=torch.float64), torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    got = knn(q, r, k)
    assert got.dtype == torch.int64 and got.shape == (B, M, k)
    for b in range(B): assert got[b].tolist() == _knn_slow(q[b], r[b], k)


def test_knn_ties_lowest_index():
    r = torch.tensor([[[1., 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]]])
    assert knn(torch.zeros(1, 1, 3), r, 5)[0, 0].tolist() == _knn_slow(np.zeros((1, 3)), r[0], 5)[0] == [3, 0, 1, 2, 4]
    assert knn(torch.zeros(1, 1, 3), r, 3)[0, 0].tolist() == [3, 0, 1]          # boundary tie: lowest indices win
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.)] * 3, indexing='ij'), -1).reshape(1, 64, 3)
    grid = torch.cat([grid, grid.flip(1)], 1)                                     # duplicates, many equal distances
    for k in (1, 6, 7, 19, 33):
        assert knn(grid[:, ::5], grid, k)[0].tolist() == _knn_slow(grid[0, ::5], grid[0], k)
    with pytest.raises(ValueError, match='finite'): knn(torch.full((1, 1, 3), float('nan')), r, 2)


def test_group_is_fps_then_knn():
    xyz = torch.randn(2, 300, 3, generator=torch.Generator().manual_seed(5)) * 10
    nb, c = group(xyz, 12, 9)
    assert nb.shape == (2, 12, 9, 3) and c.shape == (2, 12, 3)
    for b in range(2):
        ci = _fps_slow(xyz[b], 12)
        assert torch.equal(c[b], xyz[b, ci])
        nn_ = _knn_slow(c[b], xyz[b], 9)
        torch.testing.assert_close(nb[b], xyz[b][torch.tensor(nn_)] - c[b][:, None])


# ---------------------------------------------------------------- chamfer
@pytest.mark.parametrize('B,N,M,seed', [(1, 1, 1, 0), (2, 10, 17, 1), (3, 32, 32, 2)])
def test_chamfer_matches_slow(B, N, M, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(B, N, 3, generator=g, dtype=torch.float64), torch.randn(B, M, 3, generator=g, dtype=torch.float64)
    got = chamfer_l2(a, b)
    assert got.shape == (B,)
    torch.testing.assert_close(got, torch.tensor([_chamfer_slow(a[i], b[i]) for i in range(B)], dtype=torch.float64))


def test_chamfer_gradcheck():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(chamfer_l2, (a, b))


# ---------------------------------------------------------------- random group mask
def test_random_group_mask():
    m = random_group_mask(6, 128, 0.6, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.shape == (6, 128) and (m.sum(1) == 76).all()
    assert not torch.equal(m[0], m[1])
    assert torch.equal(m, random_group_mask(6, 128, 0.6, torch.Generator().manual_seed(0)))
    assert (random_group_mask(3, 10, 0.35).sum(1) == 3).all()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match='ratio'): random_group_mask(2, 10, bad)


# ---------------------------------------------------------------- patch index
@pytest.mark.parametrize('B,M,hw,p,jitter,seed', [(2, 300, (56, 100), 8, 0.0, 0), (3, 300, (56, 100), 16, 0.05, 1),
                                                  (1, 200, (37, 61), 7, 0.1, 2)])
def test_patch_index_matches_slow(B, M, hw, p, jitter, seed):
    E, K = _rig(B, H=hw[0], W=hw[1], jitter=jitter, seed=seed)
    g = torch.Generator().manual_seed(seed)
    xyz = torch.cat([(torch.rand(B, M, 2, generator=g, dtype=torch.float64) - .5) * 40,
                     (torch.rand(B, M, 1, generator=g, dtype=torch.float64) - .3) * 6], -1)
    xyz[:, :10] = E[:, :1, :3, 3][:, :, None].expand(B, 1, 10, 3).reshape(B, 10, 3) + torch.linspace(-.2, .2, 10, dtype=torch.float64)[:, None]  # near/behind a camera
    got = patch_index(xyz, E, K, hw, p)
    assert got.dtype == torch.int64 and got.shape == (B, M, 6)
    for b in range(B): assert got[b].tolist() == _patch_index_slow(xyz[b], E[b], K[b], hw, p)
    assert (got >= 0).any() and (got == -1).any() and ((got >= 0).sum(-1) == 2).any()   # some points seen by 2 cameras


def test_patch_index_borders_and_depth():
    "Points whose pixel lands exactly on patch borders and image edges, and at depth exactly min_depth."
    H, W, p = 56, 100, 8
    E = torch.eye(4, dtype=torch.float64)[None, None]          # camera = ego frame
    K = torch.tensor([[[[16., 0, 49.5], [0, 16, 27.5], [0, 0, 1]]]], dtype=torch.float64)
    us = torch.arange(-2, 103, dtype=torch.float64) - 0.5     # u = j - 0.5: on every patch border and both edges
    x = (us - 49.5) / 16
    pts = torch.stack([x, torch.zeros_like(x), torch.ones_like(x)], -1)
    vs = torch.arange(-2, 59, dtype=torch.float64) - 0.5
    y = (vs - 27.5) / 16
    pts = torch.cat([pts, torch.stack([torch.zeros_like(y), y, torch.ones_like(y)], -1),
                     torch.tensor([[0., 0, 0.1], [0, 0, 0.1 + 1e-9], [0, 0, -1]], dtype=torch.float64)])[None]
    got = patch_index(pts, E, K, (H, W), p)[0, :, 0].tolist()
    assert got == [r[0] for r in _patch_index_slow(pts[0], E[0], K[0], (H, W), p)]
    nu = len(us)
    # pixel centre u = j - 0.5 sits on a patch border: (u + 0.5) / p is an integer, so the border belongs to the right patch
    assert got[2] == -1 and got[3] == 3 * 13 + 0 and got[10] == 3 * 13 + 1      # u=-0.5 out; u=0.5 col 0; u=7.5 col 1
    assert got[101] == 3 * 13 + 12 and got[102] == -1                           # u=98.5 last (padded) column; u=99.5 out
    assert got[nu + 2] == -1 and got[nu + 10] == 1 * 13 + 6                     # v=-0.5 out; v=7.5 row 1
    assert got[nu + 57] == 6 * 13 + 6 and got[nu + 58] == -1                    # v=54.5 row 6; v=55.5 out
    assert got[-3:] == [-1, 3 * 13 + 6, -1]                                        # depth 0.1 is not > 0.1; behind


def test_patch_index_errors():
    E, K = _rig(1)
    xyz = torch.zeros(1, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match='xyz'): patch_index(xyz[0], E, K, (56, 100), 8)
    with pytest.raises(ValueError, match='ego_T_cams'): patch_index(xyz, E[0], K, (56, 100), 8)
    with pytest.raises(ValueError, match='pix_T_cams'): patch_index(xyz, E, K[:, :3], (56, 100), 8)
    with pytest.raises(ValueError, match='patch'): patch_index(xyz, E, K, (56, 100), 0)
    assert grid_hw((56, 100), 8) == (7, 13) and grid_hw((56, 100), 16) == (4, 7)


# ---------------------------------------------------------------- aligned image mask
def _cloud(B, G, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([(torch.rand(B, G, 2, generator=g, dtype=torch.float64) - .5) * 50,
                      torch.rand(B, G, 1, generator=g, dtype=torch.float64) * 3], -1)


@pytest.mark.parametrize('mode', ['complement', 'uniform', 'random'])
@pytest.mark.parametrize('B,G,ratio,p,seed', [(2, 128, 0.6, 8, 0), (3, 32, 0.75, 16, 1), (1, 64, 0.0, 8, 2), (2, 128, 0.3, 8, 3)])
def test_align_matches_slow(mode, B, G, ratio, p, seed):
    hw = (56, 100)
    E, K = _rig(B, jitter=0.02, seed=seed)
    c = _cloud(B, G, seed)
    pm = random_group_mask(B, G, 0.6, torch.Generator().manual_seed(seed + 10))
    im, hit = align_image_mask(c, pm, E, K, hw, p, ratio, mode, torch.Generator().manual_seed(seed + 20))
    gh, gw = grid_hw(hw, p); L = 6 * gh * gw; n_keep = math.ceil(L * (1 - ratio))
    assert im.shape == hit.shape == (B, L) and im.dtype == hit.dtype == torch.bool
    noise = torch.rand(B, L, generator=torch.Generator().manual_seed(seed + 20))   # the same draw, second generator
    for b in range(B):
        m_slow, h_slow = _align_slow(c[b], pm[b].tolist(), E[b], K[b], hw, p, ratio, mode, noise[b])
        assert im[b].tolist() == m_slow and hit[b].tolist() == h_slow
    assert (im.sum(1) == L - n_keep).all()
    nh = hit.sum(1)
    for b in range(B):
        if mode == 'complement' and nh[b] <= n_keep: assert not (im[b] & hit[b]).any()
        if mode == 'uniform' and nh[b] <= L - n_keep: assert (im[b] | ~hit[b]).all()
    assert (nh > 0).all()


def test_align_random_ignores_hits():
    E, K = _rig(2); c = _cloud(2, 128, 7)
    a = align_image_mask(c, torch.ones(2, 128, dtype=torch.bool), E, K, (56, 100), 8, 0.6, 'random', torch.Generator().manual_seed(1))
    b = align_image_mask(c, torch.zeros(2, 128, dtype=torch.bool), E, K, (56, 100), 8, 0.6, 'random', torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and a[1].any() and not b[1].any()


def test_align_errors():
    E, K = _rig(1); c = _cloud(1, 8, 0); pm = torch.zeros(1, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match='mode'): align_image_mask(c, pm, E, K, (56, 100), 8, 0.6, 'block')
    with pytest.raises(ValueError, match='ratio'): align_image_mask(c, pm, E, K, (56, 100), 8, 1.0, 'uniform')
    with pytest.raises(ValueError, match='point_mask'): align_image_mask(c, pm.float(), E, K, (56, 100), 8, 0.6, 'uniform')


def test_bad_shapes():
    x = torch.zeros(1, 5, 3)
    with pytest.raises(ValueError, match='`n`'): fps(x, 6)
    with pytest.raises(ValueError, match='`n`'): fps(x, 0)
    with pytest.raises(ValueError, match='`xyz`'): fps(torch.zeros(1, 5, 2), 2)
    with pytest.raises(ValueError, match='`xyz`'): fps(torch.zeros(5, 3), 2)
    with pytest.raises(ValueError, match='`k`'): knn(x, x, 6)
    with pytest.raises(ValueError, match='`ref`'): knn(x, x.long(), 2)
    with pytest.raises(ValueError, match='batch'): chamfer_l2(x, torch.zeros(2, 5, 3))
