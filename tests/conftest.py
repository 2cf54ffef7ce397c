import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data_dir():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_torch_threads():
    # Tests are small: more threads only add scheduling noise on the 2-core CI machine.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, int(os.environ.get("SKSSL_TEST_THREADS", "2"))))
    yield
    torch.set_num_threads(previous)
