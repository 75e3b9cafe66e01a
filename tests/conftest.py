import functools
import http.server
import pathlib
import threading

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end tests (minutes)')
    config.addinivalue_line(
        'markers', 'gpu: runs only on a GPU (skipped elsewhere); '
        'tools/gpu_check.sh runs `pytest -m gpu`')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread. bfloat16 and the end-to-end
    subprocess tests use it: one reduction order everywhere, and no OpenMP
    spin-waiting when the machine is busy (two threads on two shared cores
    made some steps 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mmengine_registries(monkeypatch):
    """mmengine's checkpoint loaders and file backends are put back as they
    were after the test, for tests that register mmvrwkv's (directly or
    through CheckpointSafetyHook): the other tests see mmengine as it
    ships."""
    from mmengine.fileio.backends import backends, prefix_to_backends
    from mmengine.runner import CheckpointLoader
    monkeypatch.setattr(CheckpointLoader, '_schemes',
                        CheckpointLoader._schemes.copy())
    saved = dict(backends), dict(prefix_to_backends)
    yield
    for registry, before in zip((backends, prefix_to_backends), saved):
        registry.clear()
        registry.update(before)


@pytest.fixture
def safe_loading(mmengine_registries):
    """mmvrwkv's safe checkpoint loading on for one test
    (``enable_safe_loading``, as CheckpointSafetyHook does)."""
    from mmvrwkv.utils import enable_safe_loading
    enable_safe_loading()


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker), )


@pytest.fixture
def malicious(tmp_path):
    """A checkpoint whose unpickling would run code (create the file
    ``marker``), in ``tmp_path/served``. Yields ``(path, marker)``."""
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'served' / 'malicious.pth'
    path.parent.mkdir(exist_ok=True)
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': _Payload(str(marker))}, path)
    return path, marker


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 for the files in ``tmp_path/served``;
    torch's hub cache in ``tmp_path/hub``. Yields the base URL."""
    (tmp_path / 'served').mkdir(exist_ok=True)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / 'served'))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True,
                              kwargs=dict(poll_interval=0.05))
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()
