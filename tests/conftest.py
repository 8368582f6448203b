"""Shared fixtures. Tests use tiny models and images; real-data and long checks are
marked ``slow``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: Real data for the tests (read-only; it holds ``camvid-mini/``): the folder named by
#: ``$SEGAL_TEST_DATA``, else ``../shared/data`` beside the checkout (present locally and
#: in CI). Without it the tests that need it are skipped. See docs/datasets.md.
TEST_DATA_ENV = "SEGAL_TEST_DATA"
SHARED_DATA = Path(os.environ.get(TEST_DATA_ENV) or REPO.parent / "shared" / "data").expanduser()


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny networks gain nothing from a second thread, and the suite often shares its
    # two cores with other work. SEGAL_THREADS reaches runs started by the tests too
    # (in this process, where segal_core.prepare applies it, and in subprocesses).
    monkeypatch.setenv("SEGAL_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}: put camvid-mini/ there, or set "
                    f"{TEST_DATA_ENV} to a folder that holds it (docs/datasets.md, 'The tests' data')")
    return SHARED_DATA


@pytest.fixture
def camvid_mini(shared_data: Path) -> Path:
    return shared_data / "camvid-mini"
