"""Shared test setup: offline W&B without the stats monitor, fresh gin state per test."""
import os

import gin
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_X_DISABLE_STATS", "true")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
