from collections.abc import Iterator

import pytest
import torch as th


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small networks on a 2-core machine: more torch threads only contend (and slow every test down)."""
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)
