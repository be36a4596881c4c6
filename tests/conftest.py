"""Shared fixtures: the real Sentinel-2 samples in ../shared/realdata (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REALDATA = Path(
    os.environ.get(
        "CLOUDFREE_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"
    )
)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real samples; tests using it skip with the reason when it is not there."""
    if not REALDATA.is_dir():
        pytest.skip(f"real Sentinel-2 samples not found at {REALDATA} (set CLOUDFREE_REALDATA)")
    return REALDATA
