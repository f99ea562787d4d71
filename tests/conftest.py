import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch as th

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small networks on a 2-core machine: more torch threads only contend (and slow every test down)."""
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)


@pytest.fixture(scope="session")
def results_table() -> ModuleType:
    """``scripts/results_table.py``, imported (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
