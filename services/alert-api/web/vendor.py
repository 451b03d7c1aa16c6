#!/usr/bin/env python3
"""Vendor the citizen map's browser libraries from npm into the alert API's ``static/vendor`` (no CDN at run time).

``package.json`` names the packages, ``package-lock.json`` pins each one's tarball and its sha512 ``integrity``.
This script downloads exactly those tarballs, refuses one whose hash differs from the lock, and copies only the
files the page needs (and each package's licence) to ``static/vendor/<package>/``. ``static/vendor/MANIFEST.json``
records the version, integrity and the sha256 of every copied file; ``--check`` compares the vendored files with
it and it with the lock without any network (the tests run it), so a changed lock or an edited file is caught.

    python services/alert-api/web/vendor.py           # fetch and copy (make vendor-web)
    python services/alert-api/web/vendor.py --check   # offline drift check
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = HERE / "package-lock.json"
STATIC = HERE.parent / "src" / "citysense_alert_api" / "static"
MANIFEST = "MANIFEST.json"
TIMEOUT_S = 60
# Per package: the files the page loads (paths inside the tarball's package/ folder), licences included. The
# cluster icons are the page's own (style.css), so MarkerCluster.Default.css is not among them.
FILES: dict[str, tuple[str, ...]] = {
    "leaflet": ("LICENSE", "dist/leaflet.js", "dist/leaflet.css", "dist/images/layers.png",
                "dist/images/layers-2x.png", "dist/images/marker-icon.png", "dist/images/marker-icon-2x.png",
                "dist/images/marker-shadow.png"),
    "leaflet.markercluster": ("MIT-LICENCE.txt", "dist/leaflet.markercluster.js", "dist/MarkerCluster.css"),
}


class VendorError(Exception):
    """The lock, a tarball or the vendored files are not what they should be; the message says which."""


def locked_packages(lock_path: Path) -> dict[str, dict[str, str]]:
    """name -> {version, resolved, integrity} of every package in FILES, from the lock."""
    try:
        lock = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VendorError(f"cannot read the lock {lock_path}: {exc}") from None
    packages = lock.get("packages", {})
    found: dict[str, dict[str, str]] = {}
    for name in FILES:
        entry = packages.get(f"node_modules/{name}")
        if not entry or not all(entry.get(k) for k in ("version", "resolved", "integrity")):
            raise VendorError(f"{lock_path}: no version, resolved and integrity for {name}; regenerate the lock with "
                              "npm install --package-lock-only --omit-lockfile-registry-resolved=false")
        found[name] = {k: entry[k] for k in ("version", "resolved", "integrity")}
    return found


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """Subresource-integrity check (``sha512-<base64>``, as npm records it)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in {"sha512", "sha384", "sha256"}:
        raise VendorError(f"{what}: unsupported integrity {integrity!r}")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise VendorError(f"{what}: the download's {algorithm} is {actual}, the lock says {expected}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vendor(lock_path: Path = LOCK, static: Path = STATIC) -> dict[str, object]:
    """Download, verify and copy; returns the manifest written."""
    manifest: dict[str, object] = {"source": "npm: services/alert-api/web/package-lock.json, copied by vendor.py",
                                   "packages": {}}
    for name, entry in locked_packages(lock_path).items():
        with urllib.request.urlopen(entry["resolved"], timeout=TIMEOUT_S) as response:  # noqa: S310 - https from lock
            tarball = response.read()
        check_integrity(tarball, entry["integrity"], f"{name} {entry['version']}")
        target = static / "vendor" / name
        shutil.rmtree(target, ignore_errors=True)
        files: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for member_path in FILES[name]:
                try:
                    member = archive.extractfile(f"package/{member_path}")
                except KeyError:
                    member = None
                if member is None:
                    raise VendorError(f"{name} {entry['version']}: no file {member_path} in the tarball")
                data = member.read()
                relative = member_path.removeprefix("dist/")
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                (target / relative).write_bytes(data)
                files[relative] = sha256(data)
        manifest["packages"][name] = {"version": entry["version"], "integrity": entry["integrity"],  # type: ignore[index]
                                      "files": files}
    (static / "vendor" / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def check(lock_path: Path = LOCK, static: Path = STATIC) -> list[str]:
    """Offline: every difference between the lock, the manifest and the vendored files (empty = none)."""
    problems: list[str] = []
    try:
        manifest = json.loads((static / "vendor" / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"cannot read {static / 'vendor' / MANIFEST}: {exc}"]
    recorded = manifest.get("packages", {})
    for name, entry in locked_packages(lock_path).items():
        got = recorded.get(name)
        if got is None:
            problems.append(f"{name}: in the lock but not vendored")
            continue
        for key in ("version", "integrity"):
            if got.get(key) != entry[key]:
                problems.append(f"{name}: the lock has {key} {entry[key]}, the vendored copy {got.get(key)}")
        wanted = {p.removeprefix("dist/") for p in FILES[name]}
        if set(got.get("files", {})) != wanted:
            problems.append(f"{name}: the manifest lists {sorted(got.get('files', {}))}, vendor.py copies "
                            f"{sorted(wanted)}")
        folder = static / "vendor" / name
        for relative, digest in sorted(got.get("files", {}).items()):
            path = folder / relative
            if not path.is_file():
                problems.append(f"{name}: {relative} is missing")
            elif sha256(path.read_bytes()) != digest:
                problems.append(f"{name}: {relative} differs from the copy of {name} {got.get('version')}")
        if folder.is_dir():
            extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                           if p.is_file() and str(p.relative_to(folder)) not in got.get("files", {}))
            if extra:
                problems.append(f"{name}: files not from the package: {extra}")
    for name in sorted(set(recorded) - set(FILES)):
        problems.append(f"{name}: vendored but not in the lock")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare lock, manifest and files; no network")
    parser.add_argument("--lock", type=Path, default=LOCK, help=argparse.SUPPRESS)
    parser.add_argument("--static", type=Path, default=STATIC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.lock, args.static)
            for problem in problems:
                print(f"vendor drift: {problem}", file=sys.stderr)
            if problems:
                print("run `make vendor-web` to vendor the locked versions again", file=sys.stderr)
            return 1 if problems else 0
        manifest = vendor(args.lock, args.static)
    except VendorError as exc:
        print(f"vendor.py: {exc}", file=sys.stderr)
        return 1
    for name, entry in manifest["packages"].items():  # type: ignore[attr-defined]
        print(f"vendored {name} {entry['version']}: {len(entry['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
