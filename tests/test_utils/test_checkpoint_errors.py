"""With safe loading on, an unreadable checkpoint file is named in the
error (mmengine's own loader passes torch's message, which names no
file)."""
import pytest
import torch
from mmengine.runner import load_checkpoint

pytestmark = pytest.mark.usefixtures('safe_loading')


@pytest.fixture
def model():
    return torch.nn.Linear(4, 4)


def test_truncated_checkpoint(tmp_path, model):
    good = tmp_path / 'good.pth'
    torch.save(model.state_dict(), good)
    data = good.read_bytes()
    bad = tmp_path / 'cut.pth'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError,
                       match=r'cut\.pth \(\d+ bytes\) is not a readable '
                       'PyTorch checkpoint.*truncated'):
        load_checkpoint(model, str(bad))
    load_checkpoint(model, str(good))  # a complete one still loads


@pytest.mark.parametrize('content', [b'', b'hello, not a checkpoint\n',
                                     b'\x89PNG\r\n\x1a\n' + b'\0' * 64],
                         ids=['empty', 'text', 'png'])
def test_not_a_checkpoint(tmp_path, model, content):
    bad = tmp_path / 'x.pth'
    bad.write_bytes(content)
    with pytest.raises(RuntimeError, match=r'x\.pth .* not a readable'):
        load_checkpoint(model, str(bad))


def test_missing_file_is_still_file_not_found(tmp_path, model):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(model, str(tmp_path / 'nope.pth'))
