"""With ``enable_safe_loading()``, checkpoints load without running pickled
code (local files and URLs, as mmengine's loaders see them), and
.safetensors files load wherever a checkpoint path is taken."""
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

from mmvrwkv.utils import load_checkpoint_file, save_safetensors
from mmvrwkv.utils.safe_loading import SAFE_SCHEMES

pytestmark = pytest.mark.usefixtures('safe_loading')


def test_every_scheme_is_ours():
    for prefixes, loader in SAFE_SCHEMES.items():
        for prefix in (prefixes, ) if isinstance(prefixes, str) \
                else prefixes:
            path = prefix + 'name.pth'
            assert CheckpointLoader._get_checkpoint_loader(path) is loader


def test_local_pickled_code_is_refused(malicious, monkeypatch):
    # torch.load's default becomes weights_only=False with this variable;
    # our loader passes weights_only=True explicitly.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path, marker = malicious
    with pytest.raises(RuntimeError, match='never runs code stored'):
        _load_checkpoint(str(path))             # init_cfg, load_from, ...
    with pytest.raises(RuntimeError, match="weights_only=False\\)\\['st"):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_downloaded_pickled_code_is_refused(malicious, http_server, tmp_path):
    # mmengine's own http loader calls torch.hub with weights_only=False
    path, marker = malicious
    with pytest.raises(RuntimeError, match='never runs code stored'):
        CheckpointLoader.load_checkpoint(f'{http_server}/malicious.pth')
    assert not marker.exists()
    assert (tmp_path / 'hub' / 'hub' / 'checkpoints' / path.name).exists()


def test_mmengine_types_load_and_torch_is_left_alone(tmp_path):
    import numpy as np
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'loss': buffer}},
                'meta': {'seed': np.int64(3), 'lr': np.array([0.1])}}, path)
    before = torch.serialization.get_safe_globals()
    ckpt = _load_checkpoint(str(path))
    assert ckpt['message_hub']['log_scalars']['loss'].current() == 1.5
    assert ckpt['meta']['seed'] == 3
    # torch itself may add its own types (e.g. when torch.distributed.tensor
    # is first imported); nothing of mmengine's or numpy's may stay allowed.
    leaked = [
        g for g in torch.serialization.get_safe_globals() if g not in before
        and not getattr(g[0] if isinstance(g, tuple) else g, '__module__',
                        '').startswith('torch')
    ]
    assert not leaked


def test_safetensors_everywhere(tmp_path, http_server):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    state = model.state_dict()
    path = tmp_path / 'served' / 'model.safetensors'
    meta = dict(dataset_meta=dict(classes=['a', 'b']))
    save_safetensors(state, str(path), meta)

    ckpt = CheckpointLoader.load_checkpoint(str(path))
    assert ckpt['meta'] == meta
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    load_checkpoint(other, str(path), strict=True)
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, state[key])

    by_url = CheckpointLoader.load_checkpoint(
        f'{http_server}/model.safetensors')
    torch.testing.assert_close(by_url['state_dict']['0.weight'],
                               state['0.weight'])

    # without metadata: a bare state dict, which mmengine accepts too
    save_safetensors(state, str(tmp_path / 'bare.safetensors'))
    assert set(_load_checkpoint(str(tmp_path / 'bare.safetensors'))) == \
        set(state)


def test_shared_tensors_and_non_tensors(tmp_path):
    w = torch.randn(4, 4)
    save_safetensors({'a': w, 'b': w}, str(tmp_path / 'tied.safetensors'))
    loaded = load_checkpoint_file(str(tmp_path / 'tied.safetensors'))
    torch.testing.assert_close(loaded['a'], loaded['b'])
    with pytest.raises(TypeError, match='not a tensor'):
        save_safetensors({'a': 1}, str(tmp_path / 'bad.safetensors'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_checkpoint_file(str(tmp_path / 'missing.pth'))
