"""Shared settings of the benchmark suite."""
import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every benchmark runs on one torch thread, as each run of the matrix does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
