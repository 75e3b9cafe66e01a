"""Bad input to the backbones gets a ValueError (RuntimeError for NaN/Inf,
checked without a host sync) naming the problem and the fix, not a deep
torch error or silent garbage (docs/reliability.md)."""
import pytest
import torch
from mmengine.runner import load_checkpoint

from mmvrwkv.models import VRWKV, VRWKVAdapter

SMALL = dict(embed_dims=32, num_layers=2)
ADAPTER = dict(arch=SMALL, img_size=64, conv_inplane=8, deform_num_heads=2,
               deform_ratio=1.0, interaction_indexes=[[0, 0], [1, 1]],
               vrwkv_feature='final')


def nan_image():
    x = torch.randn(1, 3, 64, 64)
    x[0, 1, 5, 7] = float('nan')
    x[0, 2, 0, 0] = float('inf')
    return x


@pytest.mark.parametrize('model', [
    lambda: VRWKV(arch=SMALL, img_size=64), lambda: VRWKVAdapter(**ADAPTER)],
    ids=['vrwkv', 'adapter'])
@pytest.mark.parametrize('x, match', [
    (torch.randn(1, 3, 8, 40), r'input 8x40 is smaller than .*Resize'),
    (torch.randn(1, 1, 64, 64), r'3-channel images, got 1 .*in_channels=1'),
    (torch.randn(1, 4, 64, 64), r'got 4 .*drops alpha'),
    (torch.randn(3, 64, 64), r'\(B, C, H, W\)'),
], ids=['smaller-than-patch', 'grayscale', 'rgba', 'no-batch'])
def test_bad_images(model, x, match):
    with pytest.raises(ValueError, match=match):
        model()(x)


@pytest.mark.parametrize('model', [
    lambda: VRWKV(arch=SMALL, img_size=64), lambda: VRWKVAdapter(**ADAPTER)],
    ids=['vrwkv', 'adapter'])
def test_nan_images(model):
    # checked without a host sync (torch._assert_async), which raises
    # RuntimeError on the CPU
    with pytest.raises(RuntimeError, match='contain NaN/Inf values'):
        model()(nan_image())


def test_image_of_exactly_one_patch_works():
    out = VRWKV(arch=SMALL, img_size=64)(torch.randn(1, 3, 16, 16))[0]
    assert out.shape == (1, 32, 1, 1)


@pytest.mark.parametrize('cls', [VRWKV, VRWKVAdapter])
def test_unknown_arch_lists_the_valid_ones(cls):
    with pytest.raises(ValueError,
                       match="'gigantic' is not one of: base, large, small, "
                       'tiny'):
        cls(arch='gigantic')


@pytest.mark.parametrize('index', [12, -13])
def test_out_indices_out_of_range(index):
    with pytest.raises(ValueError, match=r'valid: -12\.\.11'):
        VRWKV(arch='tiny', out_indices=index)


def test_adapter_takes_no_out_indices():
    with pytest.raises(TypeError, match='always returns four maps'):
        VRWKVAdapter(**ADAPTER, out_indices=(0, ))


def test_checkpoint_of_another_preset(tmp_path):
    small = VRWKV(arch=dict(embed_dims=64, num_layers=2), img_size=64)
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               small.state_dict().items()}}, path)
    with pytest.raises(ValueError,
                       match='embed_dims=64, this model 32; it is for '
                       'another arch preset'):
        load_checkpoint(VRWKV(arch=SMALL, img_size=64), path,
                        revise_keys=[(r'^backbone\.', '')])
    # the mm way, init_cfg=Pretrained, reaches the same check
    model = VRWKVAdapter(**ADAPTER, init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix='backbone.'))
    with pytest.raises(ValueError, match='another arch preset'):
        model.init_weights()
