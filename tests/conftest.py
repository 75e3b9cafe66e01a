import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end tests (minutes)')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
