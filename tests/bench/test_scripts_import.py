"""Every benchmark script imports: they run only under `make bench`, so a name they import from the services that
no longer exists would otherwise surface there, not in CI."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")))
def test_the_script_imports(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    module = importlib.import_module(script)
    assert module.__file__ == str(BENCH / f"{script}.py")
    if script not in ("harness", "pipeline"):  # the shared plumbing has no entry point
        assert callable(getattr(module, "main", None)), f"{script}.py has no main()"
    sys.modules.pop(script, None)
