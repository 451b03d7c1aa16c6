"""The vendored map libraries match the npm lock (offline drift check), and vendoring verifies what it downloads."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from citysense_common.testing.http_server import serving

WEB = Path(__file__).resolve().parents[2] / "services" / "alert-api" / "web"
_spec = importlib.util.spec_from_file_location("citysense_web_vendor", WEB / "vendor.py")
assert _spec is not None and _spec.loader is not None
vendor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vendor)


def test_vendored_files_match_the_lock() -> None:
    assert vendor.check() == []
    result = subprocess.run([sys.executable, str(WEB / "vendor.py"), "--check"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_package_json_and_lock_agree() -> None:
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    for name, version in package["dependencies"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version  # exact pins, no ranges
        assert name in vendor.FILES


def test_licences_are_vendored() -> None:
    manifest = json.loads((vendor.STATIC / "vendor" / "MANIFEST.json").read_text())
    assert "LICENSE" in manifest["packages"]["leaflet"]["files"]
    assert "MIT-LICENCE.txt" in manifest["packages"]["leaflet.markercluster"]["files"]
    assert "BSD" in (vendor.STATIC / "vendor" / "leaflet" / "LICENSE").read_text()


@pytest.fixture
def static_copy(tmp_path: Path) -> Path:
    shutil.copytree(vendor.STATIC / "vendor", tmp_path / "vendor")
    return tmp_path


def test_an_edited_file_is_drift(static_copy: Path) -> None:
    js = static_copy / "vendor" / "leaflet" / "leaflet.js"
    js.write_bytes(js.read_bytes() + b"\n// patched\n")
    (static_copy / "vendor" / "leaflet.markercluster" / "MarkerCluster.css").unlink()
    (static_copy / "vendor" / "leaflet" / "extra.js").write_text("1")
    problems = vendor.check(vendor.LOCK, static_copy)
    assert any("leaflet.js differs" in p for p in problems), problems
    assert any("MarkerCluster.css is missing" in p for p in problems), problems
    assert any("files not from the package: ['extra.js']" in p for p in problems), problems
    result = subprocess.run([sys.executable, str(WEB / "vendor.py"), "--check", "--static", str(static_copy)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "make vendor-web" in result.stderr


def test_a_changed_lock_is_drift(static_copy: Path, tmp_path: Path) -> None:
    lock = json.loads(vendor.LOCK.read_text())
    lock["packages"]["node_modules/leaflet"]["version"] = "1.9.5"
    changed = tmp_path / "package-lock.json"
    changed.write_text(json.dumps(lock))
    problems = vendor.check(changed, static_copy)
    assert problems == ["leaflet: the lock has version 1.9.5, the vendored copy 1.9.4"]


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def registry() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server standing in for the npm registry: path -> tarball bytes."""
    served: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, served


def _fake_lock(tmp_path: Path, base: str, served: dict[str, bytes], *, corrupt: str | None = None) -> Path:
    packages = {}
    for name, paths in vendor.FILES.items():
        tarball = _tarball({p: f"{name}:{p}".encode() for p in paths})
        served[f"/{name}.tgz"] = tarball
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        if name == corrupt:
            served[f"/{name}.tgz"] = tarball + b"x"
        packages[f"node_modules/{name}"] = {"version": "9.9.9", "resolved": f"{base}/{name}.tgz",
                                            "integrity": integrity}
    lock = tmp_path / "package-lock.json"
    lock.write_text(json.dumps({"packages": packages}))
    return lock


def test_vendoring_copies_verified_files_and_records_them(registry: tuple[str, dict[str, bytes]],
                                                          tmp_path: Path) -> None:
    base, served = registry
    lock = _fake_lock(tmp_path, base, served)
    static = tmp_path / "static"
    manifest = vendor.vendor(lock, static)
    assert (static / "vendor" / "leaflet" / "leaflet.js").read_bytes() == b"leaflet:dist/leaflet.js"
    assert (static / "vendor" / "leaflet.markercluster" / "MIT-LICENCE.txt").read_bytes() == \
        b"leaflet.markercluster:MIT-LICENCE.txt"
    assert manifest["packages"]["leaflet"]["files"]["leaflet.js"] == \
        hashlib.sha256(b"leaflet:dist/leaflet.js").hexdigest()
    assert vendor.check(lock, static) == []


def test_vendoring_refuses_a_tarball_whose_hash_differs(registry: tuple[str, dict[str, bytes]],
                                                        tmp_path: Path) -> None:
    base, served = registry
    lock = _fake_lock(tmp_path, base, served, corrupt="leaflet.markercluster")
    with pytest.raises(vendor.VendorError, match="leaflet.markercluster 9.9.9: the download's sha512 is"):
        vendor.vendor(lock, tmp_path / "static")
    assert not (tmp_path / "static" / "vendor" / "leaflet.markercluster").exists()
