"""docs/notebooks: valid nbformat, every code cell compiles, and it reads through the API only."""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "docs" / "notebooks").glob("*.ipynb"))


def test_there_is_one_notebook() -> None:
    assert [p.name for p in NOTEBOOKS] == ["station-week.ipynb"]


def test_notebook_is_valid_and_its_code_compiles() -> None:
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        cells = [c for c in notebook.cells if c.cell_type == "code"]
        assert cells, path
        for index, cell in enumerate(cells):
            compile(cell.source, f"{path.name}[code cell {index}]", "exec")
            assert not cell.get("outputs"), f"{path.name}: commit the notebook without outputs"
        source = "\n".join(c.source for c in cells)
        assert "/v1/stations" in source and "/v1/alerts" in source  # through the API, not the store
        assert "citysense_common" not in source
