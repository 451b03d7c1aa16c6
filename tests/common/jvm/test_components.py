"""The components table in docs/components.md names exactly what citysense_common.jvm.components resolves."""

from __future__ import annotations

from pathlib import Path

from citysense_common.jvm.components import COMPONENTS

DOC = Path(__file__).resolve().parents[3] / "docs" / "components.md"


def table_rows() -> dict[str, list[str]]:
    """The first table of the page (the components), by component title."""
    rows: dict[str, list[str]] = {}
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| component |"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_every_component_is_in_the_docs_table_with_its_coordinates_and_version() -> None:
    rows = table_rows()
    assert set(rows) == {c.title for c in COMPONENTS.values()}
    for component in COMPONENTS.values():
        _, coordinates, version, runs_as, _ = rows[component.title]
        assert version == component.version
        assert component.main_class in runs_as
        for coordinate in component.coordinates:
            group, artifact, ver = coordinate.split(":")
            assert f"{group}:{artifact}" in coordinates, coordinate
            assert ver == component.version or coordinate in coordinates, coordinate
