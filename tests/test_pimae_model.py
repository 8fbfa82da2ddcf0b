"PiMAE model (nbs/pimae/30_model.ipynb): shapes, mask counts, losses, gradients, determinism, the image-encoder export."
import math
import pytest
import timm
import torch
import torch.nn.functional as F
from drivenb.pimae.model import PiMAE, synthetic_batch, export_image_encoder, reconstruct_images, pretrain_metrics

SMALL = dict(n_groups=32, group_size=16, decoder_dim=64)
L = 6 * 7 * 13


@pytest.fixture(scope='module')
def batch():
    return synthetic_batch(2, 512, generator=torch.Generator().manual_seed(0))


def run(model, batch, seed=1):
    return model(batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('modalities,mask_mode', [('joint', 'complement'), ('joint', 'uniform'), ('joint', 'random'),
                                                  ('points', 'complement'), ('image', 'complement')])
def test_shapes_counts_losses_grads(batch, modalities, mask_mode):
    torch.manual_seed(0)
    model = PiMAE(modalities=modalities, mask_mode=mask_mode, **SMALL)
    out = run(model, batch)
    M = int(0.6 * 32)
    if modalities != 'image':
        assert out['point_mask'].shape == (2, 32) and out['point_mask'].sum(1).tolist() == [M, M]
        assert out['pred_points'].shape == out['true_points'].shape == (2, M, 16, 3)
        assert torch.isfinite(out['points_loss']) and out['points_loss'] > 0
    if modalities != 'points':
        n_mask = L - math.ceil(L * 0.4)
        assert out['image_mask'].shape == (2, L) and out['image_mask'].sum(1).tolist() == [n_mask, n_mask]
        assert out['pred_patches'].shape == (2, L, 8 * 8 * 3)
        assert torch.isfinite(out['image_loss']) and out['image_loss'] > 0
        assert reconstruct_images(model, batch, out).shape == (2, 6, 3, 56, 100)
    if modalities == 'joint':
        assert torch.isfinite(out['cross_loss']) and out['cross_loss'] > 0
        if mask_mode == 'uniform': assert not (out['hit'] & ~out['image_mask']).any()   # hit patches masked too
    else:
        assert float(out['cross_loss'].detach()) == 0
    assert torch.isfinite(out['loss']) and out['loss'] > 0
    out['loss'].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing
    met = pretrain_metrics(model, batch, out)
    assert all(v.shape == (2,) for v in met.values())
    want = {'joint': {'chamfer_l2', 'patch_mse', 'psnr', 'psnr_flat', 'cross_mse'}, 'points': {'chamfer_l2'}, 'image': {'patch_mse', 'psnr', 'psnr_flat'}}
    assert set(met) == want[modalities]
    print(modalities, mask_mode, 'params', sum(p.numel() for p in model.parameters()))


def test_single_modality_builds_no_other_branch():
    names = {m: {n.split('.')[0] for n, _ in PiMAE(modalities=m, **SMALL).named_parameters()} for m in ('points', 'image')}
    assert 'vit' not in names['points'] and 'tokenizer' in names['points']
    assert 'tokenizer' not in names['image'] and 'cls_token' not in names['image'] and 'cross_head' not in names['image']


def test_default_params_count():
    n = sum(p.numel() for p in PiMAE().parameters())
    print('PiMAE defaults params', n)
    assert n == 3_931_040


def test_same_generator_same_output(batch):
    torch.manual_seed(0)
    model = PiMAE(**SMALL)
    a, b = run(model, batch, 3), run(model, batch, 3)
    for k in ('loss', 'point_mask', 'image_mask', 'pred_patches', 'pred_points'):
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a['image_mask'], run(model, batch, 4)['image_mask'])


def test_export_loads_into_plain_timm_and_matches(batch, tmp_path):
    torch.manual_seed(0)
    model = PiMAE(**SMALL)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.02 * torch.randn_like(p))   # non-zero modality embeddings too
    sd = export_image_encoder(model)
    plain = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, global_pool='', class_token=False,
                              patch_size=8, depth=3, img_size=(56, 104), dynamic_img_pad=True)
    plain.load_state_dict(sd, strict=True)                                # the BEV study's vit_tiny_p8_d3
    assert torch.allclose(sd['pos_embed'], model.vit.pos_embed + model.modality_img)
    path = tmp_path / 'enc.pth'; torch.save(sd, path)
    again = PiMAE(image_weights=str(path), **SMALL)                       # loads strictly back
    assert torch.equal(again.vit.pos_embed, sd['pos_embed'])
    with pytest.raises(FileNotFoundError, match='nope.pth'): PiMAE(image_weights=str(tmp_path / 'nope.pth'), **SMALL)
    # one camera, image only, no mask, camera embedding 0: the plain ViT's tokens are the model's image path
    m1 = PiMAE(modalities='image', mask_ratio=0., n_cameras=1, **SMALL).eval()
    with torch.no_grad():
        for p in m1.parameters(): p.add_(0.02 * torch.randn_like(p))
        m1.cam_embed.zero_()
    p1 = timm.create_model(m1.image_encoder, **m1.vit_kwargs).eval()
    p1.load_state_dict(export_image_encoder(m1), strict=True)
    img = batch['images'][:, :1]
    with torch.no_grad():
        ref = p1.forward_features(F.pad((img[:, 0] - 0.5) / 0.5, (0, 4)))
        assert torch.allclose(m1.encode_images(img)[:, 0], ref, atol=1e-5)
    # six cameras: the image-specific blocks (attention within a camera) equal the plain ViT's first blocks per camera
    imgs = batch['images']
    with torch.no_grad():
        x = model.image_tokens(imgs)                                      # B,L,C with the modality embedding
        cam = torch.arange(6).repeat_interleave(91).expand(2, -1)
        same = (cam[:, :, None] == cam[:, None, :])[:, None]
        for blk in model.vit.blocks[:2]: x = blk(x, attn_mask=same)
        y = plain.patch_embed(F.pad((imgs.flatten(0, 1) - 0.5) / 0.5, (0, 4))) + plain.pos_embed   # exported pos_embed
        for blk in plain.blocks[:2]: y = blk(y)
        assert torch.allclose(x.reshape(12, 91, -1), y, atol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='modalities'): PiMAE(modalities='lidar')
    with pytest.raises(ValueError, match='mask_mode'): PiMAE(mask_mode='block')
    with pytest.raises(ValueError, match='image_encoder'): PiMAE(image_encoder='no_such_vit')
    with pytest.raises(ValueError, match="images"):
        PiMAE(**SMALL)(synthetic_batch(1, 512, image_hw=(48, 100)))
