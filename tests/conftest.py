import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end tests (minutes)')


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
