"""MAEVRWKV and MAEVRWKV6, the masked backbones of MAE pre-training: the
MAEViT contract, both sparse-input modes, independence from the pixels of
removed patches, loading into the fine-tuning models, autocast, errors."""
import copy

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

import mmvrwkv  # noqa: F401
from mmvrwkv.models import (MAEVRWKV, MAEVRWKV6, VRWKV, VRWKV6, VRWKV6Adapter,
                            VRWKVAdapter)

FAMILIES = {'VRWKV': (MAEVRWKV, VRWKV, VRWKVAdapter),
            'VRWKV6': (MAEVRWKV6, VRWKV6, VRWKV6Adapter)}
ARCH = dict(embed_dims=64, num_layers=2)
MODES = ['grid', 'official']


def tiny(family, **kwargs):
    cfg = dict(arch=dict(ARCH), img_size=64, patch_size=16)
    cfg.update(kwargs)
    model = FAMILIES[family][0](**cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('family', list(FAMILIES))
def test_masked_forward_contract(family, mode):
    torch.manual_seed(0)
    model = tiny(family, mask_mode=mode, mask_ratio=0.75)
    latent, mask, ids_restore = model(torch.randn(3, 3, 64, 64))
    L = 16
    assert latent.shape == (3, 4, 64) and torch.isfinite(latent).all()
    assert mask.shape == (3, L) and torch.all(mask.sum(1) == L - 4)
    assert set(mask.unique().tolist()) <= {0., 1.}
    # ids_restore is a permutation; the visible tokens are those of mask 0,
    # in the order the latent holds them
    assert torch.all(ids_restore.sort(1).values == torch.arange(L))
    visible = ids_restore < 4  # their place in cat(latent, mask tokens)
    assert torch.equal(visible, mask == 0)
    if mode == 'grid':  # raster order: the positions rise along the latent
        order = ids_restore.masked_fill(~visible, L)
        for b in range(3):
            pos = order[b].argsort()[:4]
            assert torch.all(pos[1:] > pos[:-1])


@pytest.mark.parametrize('mask_ratio', [0.0, 0.5, 0.9])
def test_mask_ratio(mask_ratio):
    model = tiny('VRWKV', mask_ratio=mask_ratio)
    latent, mask, _ = model(torch.randn(1, 3, 64, 64))
    kept = int(16 * (1 - mask_ratio))
    assert latent.shape[1] == kept and mask.sum() == 16 - kept


@pytest.mark.parametrize('family', list(FAMILIES))
def test_unmasked_forward_is_the_plain_backbone(family):
    """mask=None runs the backbone of the same weights and names."""
    masked = tiny(family, out_type='featmap')
    plain = FAMILIES[family][1](arch=dict(ARCH), img_size=64)
    assert plain.load_state_dict(masked.state_dict()) is not None
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(masked(x, mask=None), plain(x)):
            assert torch.equal(a, b)
        assert torch.equal(masked(x, mask=False)[0], plain(x)[0])
    assert set(masked.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('family', list(FAMILIES))
def test_latent_ignores_removed_pixels(family, mode):
    """Changing the pixels of the removed patches changes nothing in the
    latent (bitwise), in both modes."""
    model = tiny(family, mask_mode=mode).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    latent, mask, _ = model(x)
    # the removed patches of each image, filled with other values
    patches = mask.view(2, 1, 4, 1, 4, 1).expand(2, 3, 4, 16, 4, 16)
    removed = patches.reshape(2, 3, 64, 64).bool()
    y = torch.where(removed, torch.randn_like(x) * 100, x)
    assert not torch.equal(x, y)
    torch.manual_seed(1)
    latent2, mask2, _ = model(y)
    assert torch.equal(mask, mask2)
    assert torch.equal(latent, latent2)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_modes_differ_and_official_is_a_shuffled_sequence(family):
    """Same weights and masks, different arithmetic: the two modes give
    different latents; 'official' keeps the tokens in the masking's random
    order."""
    grid = tiny(family, mask_mode='grid').eval()
    official = tiny(family, mask_mode='official').eval()
    official.load_state_dict(grid.state_dict())
    x = torch.randn(1, 3, 64, 64)
    torch.manual_seed(3)
    a, mask_a, ids_a = grid(x)
    torch.manual_seed(3)
    b, mask_b, ids_b = official(x)
    assert torch.equal(mask_a, mask_b)
    assert not torch.allclose(a.sort(1).values, b.sort(1).values)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_checkpoint_loads_into_fine_tuning_backbones(family):
    """The encoder's state dict is the backbone's: it loads strictly into
    VRWKV / VRWKV6 (classifier backbone), and into the adapter with only the
    adapter's own modules missing and the final norm (which the adapter
    drops) unexpected."""
    masked, plain, adapter = FAMILIES[family]
    state = tiny(family).state_dict()
    model = plain(arch=dict(ARCH), img_size=64)
    model.load_state_dict(state, strict=True)
    arch = dict(ARCH, deform_num_heads=2, deform_ratio=1.0,
                interaction_indexes=[[0, 0], [1, 1]])
    adapted = adapter(arch=arch, img_size=64, vrwkv_feature=None)
    result = adapted.load_state_dict(state, strict=False)
    assert set(result.unexpected_keys) == {'ln1.weight', 'ln1.bias'}
    own = ('level_embed', 'spm.', 'interactions.', 'up.', 'norm1.',
           'norm2.', 'norm3.', 'norm4.')
    assert result.missing_keys and all(k.startswith(own)
                                       for k in result.missing_keys)


def test_position_embedding_is_fixed_sincos():
    from mmvrwkv.models.layers.pos_embed import sincos_2d
    model = tiny('VRWKV')
    assert not model.pos_embed.requires_grad
    assert torch.equal(model.pos_embed.data, sincos_2d((4, 4), 64))


@pytest.mark.parametrize('family', list(FAMILIES))
def test_bfloat16_autocast(family):
    """Under bfloat16 autocast (the CPU's --amp) the masked forward and
    backward run, close to float32 for the same mask."""
    model = tiny(family)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(2)
    want, _, _ = model(x)
    torch.manual_seed(2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        latent, mask, _ = model(x)
    assert torch.isfinite(latent.float()).all()
    err = (latent.float() - want).abs().max() / want.abs().max()
    assert err < 0.05, err
    latent.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('kwargs, x, match', [
    (dict(mask_ratio=1.0), None, r'mask_ratio must be in \[0, 1\)'),
    (dict(mask_ratio=-0.1), None, r'mask_ratio must be in \[0, 1\)'),
    (dict(mask_mode='random'), None, "'random' is not one of: official"),
    (dict(), torch.randn(1, 3, 64, 72), 'multiples of the patch size 16'),
    (dict(), torch.randn(1, 3, 64, 96), 'square images'),
], ids=['ratio-1', 'ratio-negative', 'mode', 'not-multiple', 'not-square'])
def test_bad_input_names_the_fix(kwargs, x, match):
    with pytest.raises(ValueError, match=match):
        model = tiny('VRWKV', **kwargs)
        model(x)


def test_registered_for_mmpretrains_mae():
    """mmpretrain's MAE algorithm builds our backbone and decoder from its
    registry, with its MAEPretrainHead."""
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    cfg = dict(
        type='MAE',
        backbone=dict(type='MAEVRWKV', arch=dict(ARCH), img_size=64),
        neck=dict(type='VRWKVMAEDecoder', num_patches=16, embed_dim=64,
                  decoder_embed_dim=64, decoder_depth=1),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2')))
    # an earlier test may have left another default scope (mmseg has a
    # backbone named MAE): mm configs set default_scope='mmpretrain'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MMPRETRAIN_MODELS.build(copy.deepcopy(cfg))
    assert type(model.backbone) is MAEVRWKV
    assert MODELS.get('MAEVRWKV6') is MAEVRWKV6
