"""Shared fixtures. Tests use tiny models and images; real-data and long checks are
marked ``slow``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: ``../shared/data`` beside the checkout (present locally and in CI, read-only).
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # Tiny networks gain nothing from a second thread, and two threads on a shared
    # two-core machine are many times slower as soon as anything else runs.
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def camvid_mini(shared_data: Path) -> Path:
    return shared_data / "camvid-mini"
