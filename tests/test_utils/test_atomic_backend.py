"""Checkpoint writes through 'atomic_local' replace the file whole or not
at all."""
import os

import pytest
from mmengine.fileio import get_file_backend

from mmvrwkv.utils import (AtomicLocalBackend, atomic_write,
                           register_atomic_backend)


def test_backend_is_registered_and_writes(tmp_path, mmengine_registries):
    register_atomic_backend()
    backend = get_file_backend(str(tmp_path),
                               backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'abc', str(tmp_path / 'sub' / 'x.pth'))
    backend.put_text('iter_1.pth', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'sub' / 'x.pth').read_bytes() == b'abc'
    assert (tmp_path / 'last_checkpoint').read_text() == 'iter_1.pth'


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    path.write_bytes(b'old complete checkpoint')
    with pytest.raises(TypeError):
        atomic_write('not bytes', str(path))  # fails inside the write
    assert path.read_bytes() == b'old complete checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # no temporary left
