"""Checkpoints load without running pickled code (local files and URLs, as
mmengine's loaders see them), and .safetensors files load wherever a
checkpoint path is taken."""
import pathlib

import pytest
import torch
from mmengine.runner import CheckpointLoader, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint, load_from_http

import mmvrwkv  # noqa: F401  (registers the loaders)
from mmvrwkv.utils import load_checkpoint_file, save_safetensors


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker), )


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'malicious.pth'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': Payload(str(marker))}, path)
    return path, marker


def test_local_pickled_code_is_refused(malicious):
    path, marker = malicious
    with pytest.raises(RuntimeError, match='never runs code stored'):
        _load_checkpoint(str(path))             # init_cfg, load_from, ...
    with pytest.raises(RuntimeError, match="weights_only=False\\)\\['st"):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_downloaded_pickled_code_is_refused(malicious, tmp_path,
                                            monkeypatch):
    # mmengine's http loader used torch.hub with weights_only=False; a
    # file:// URL goes through the same download-and-load path offline.
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    path, marker = malicious
    with pytest.raises(RuntimeError, match='never runs code stored'):
        load_from_http(path.as_uri())
    assert not marker.exists()
    assert (tmp_path / 'hub' / 'checkpoints' / path.name).exists()


def test_safetensors_everywhere(tmp_path, monkeypatch):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    state = model.state_dict()
    path = tmp_path / 'model.safetensors'
    meta = dict(dataset_meta=dict(classes=['a', 'b']))
    save_safetensors(state, str(path), meta)

    ckpt = CheckpointLoader.load_checkpoint(str(path))
    assert ckpt['meta'] == meta
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    load_checkpoint(other, str(path), strict=True)
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, state[key])

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    by_url = load_from_http(path.as_uri())
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
