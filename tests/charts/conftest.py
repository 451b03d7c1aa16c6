"""Chart and cluster-manifest tests: make chart_helpers importable (the suite runs with --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_helpers import render  # noqa: E402


@pytest.fixture(scope="session")
def default_docs() -> list[dict]:
    return render()
