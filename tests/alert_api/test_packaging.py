"""The installable package carries the citizen page: an image built with `pip install` must serve `/`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_the_static_page(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(REPO / "services/alert-api")], check=True, timeout=300)
    wheel = next(tmp_path.glob("citysense_alert_api-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "app.js", "style.css", "docs.html", "docs.js"):
        assert f"citysense_alert_api/static/{asset}" in names, sorted(names)
    for asset in ("leaflet/leaflet.js", "leaflet/leaflet.css", "leaflet/LICENSE",
                  "leaflet.markercluster/leaflet.markercluster.js", "leaflet.markercluster/MIT-LICENCE.txt"):
        assert f"citysense_alert_api/static/vendor/{asset}" in names, sorted(names)
