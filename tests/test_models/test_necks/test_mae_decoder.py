"""VRWKVMAEDecoder: mmpretrain's MAE decoder contract without a class
token, VRWKV and VRWKV6 blocks, both shift modes, and MAE's loss falling
over a few steps on a tiny model."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmvrwkv  # noqa: F401
from mmvrwkv.models import VRWKVMAEDecoder


def decoder(**kwargs):
    cfg = dict(num_patches=16, patch_size=16, embed_dim=32,
               decoder_embed_dim=64, decoder_depth=2)
    cfg.update(kwargs)
    model = VRWKVMAEDecoder(**cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('mode', ['grid', 'official'])
@pytest.mark.parametrize('block', ['VRWKV', 'VRWKV6'])
def test_output_per_patch_in_raster_order(block, mode):
    model = decoder(block=block, mask_mode=mode).eval()
    B, L, n = 2, 16, 5
    ids_restore = torch.stack([torch.randperm(L) for _ in range(B)])
    pred = model(torch.randn(B, n, 32), ids_restore)
    assert pred.shape == (B, L, 16 * 16 * 3) and torch.isfinite(pred).all()
    shift = model.decoder_blocks[0].att.shift_func.__name__
    assert shift == ('single_shift' if mode == 'official' else
                     'q_shift' if block == 'VRWKV' else 'q_shift_multihead')


def test_tokens_are_put_back_by_ids_restore():
    """Token j of the input lands at the grid position whose ids_restore is
    j, mask tokens elsewhere (seen through a decoder of no blocks)."""
    model = decoder(decoder_depth=0, embed_dim=64).eval()
    with torch.no_grad():
        model.decoder_embed.weight.copy_(torch.eye(64))
        model.decoder_embed.bias.zero_()
        model.decoder_pos_embed.zero_()
    x = torch.randn(1, 3, 64)
    ids_restore = torch.tensor([[5, 0, 6, 1, 7, 8, 9, 10, 11, 12, 13, 14,
                                 15, 2, 3, 4]])
    seen = []
    model.ln1.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    model(x, ids_restore)
    grid = seen[0][0]
    for token, pos in ((0, 1), (1, 3), (2, 13)):
        assert torch.equal(grid[pos], x[0, token])
    assert torch.equal(grid[0], model.mask_token[0, 0])


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match='square grid'):
        decoder(num_patches=15)
    with pytest.raises(ValueError, match="block 'ViT' is not one of"):
        decoder(block='ViT')
    with pytest.raises(ValueError, match='built for 16 patches, the encoder '
                       'gave 25'):
        decoder()(torch.randn(1, 4, 32), torch.arange(25)[None])


@pytest.mark.parametrize('family', ['VRWKV', 'VRWKV6'])
def test_mae_loss_falls(family):
    """mmpretrain's MAE (our masked backbone and decoder, its
    MAEPretrainHead with normalised-pixel targets) learns a fixed batch:
    the loss falls over a few AdamW steps."""
    torch.manual_seed(0)
    # mmpretrain's MAE whatever default scope an earlier test left (mmseg
    # has a backbone named MAE), as the configs' default_scope does
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='MAE',
            backbone=dict(type=f'MAE{family}',
                          arch=dict(embed_dims=64, num_layers=2),
                          img_size=64),
            neck=dict(type='VRWKVMAEDecoder', num_patches=16, embed_dim=64,
                      decoder_embed_dim=64, decoder_depth=1, block=family),
            head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                      loss=dict(type='PixelReconstructionLoss',
                                criterion='L2')),
            data_preprocessor=dict(type='SelfSupDataPreprocessor',
                                   mean=[0, 0, 0], std=[1, 1, 1])))
    model.init_weights()
    optim = torch.optim.AdamW(model.parameters(), lr=5e-3)
    # a smooth pattern (noise, normalised per patch, cannot be learnt)
    ramp = torch.linspace(0, 6.28, 64)
    images = torch.sin(ramp[None, :] + ramp[:, None] * 0.5).expand(
        4, 3, 64, 64) + 0.1 * torch.rand(4, 3, 64, 64)
    losses = []
    for step in range(30):
        torch.manual_seed(step)
        loss = model.loss(images, [])['loss']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
