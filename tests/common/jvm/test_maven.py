"""Resolving JVM components: a cached component is not fetched again, Maven's failures are explained, and Apache
Maven itself is fetched and checked when the machine has none."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from citysense_common.jvm import maven
from citysense_common.jvm.components import KAFKA, JvmComponent


def test_the_pom_lists_every_coordinate_and_pins_the_dependency_plugin() -> None:
    pom = maven.pom(KAFKA)
    assert "<groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>4.4.0</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert f"<version>{maven.DEPENDENCY_PLUGIN}</version>" in pom


def test_a_cached_component_is_used_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = maven.component_home(KAFKA, tmp_path)
    (home / "lib").mkdir(parents=True)
    for name in ("a.jar", "b.jar"):
        (home / "lib" / name).write_bytes(b"jar")
    (home / "classpath.txt").write_text("a.jar\nb.jar\n")
    monkeypatch.setattr(maven, "find_maven", lambda *a, **k: pytest.fail("Maven must not run for a cached component"))
    resolved = maven.resolve(KAFKA, tmp_path)
    assert [j.name for j in resolved.jars] == ["a.jar", "b.jar"]
    assert resolved.classpath.endswith("b.jar")


def test_a_cache_with_a_missing_jar_is_not_trusted(tmp_path: Path) -> None:
    home = maven.component_home(KAFKA, tmp_path)
    (home / "lib").mkdir(parents=True)
    (home / "lib" / "a.jar").write_bytes(b"jar")
    (home / "classpath.txt").write_text("a.jar\ngone.jar\n")
    assert maven.cached(KAFKA, tmp_path) is None


def test_an_artifact_maven_cannot_resolve_is_named_in_the_error(tmp_path: Path) -> None:
    missing = JvmComponent("missing", "No Such Thing", "0.0.1", ("org.citysense.nosuch:nothing:0.0.1",))
    lines: list[str] = []
    with pytest.raises(maven.ResolveError, match=r"No Such Thing 0\.0\.1 \(org\.citysense\.nosuch:nothing:0\.0\.1\)"
                                                 r".*full log: .*maven\.log"):
        maven.resolve(missing, tmp_path, progress=lines.append)
    assert any("fetching No Such Thing" in line for line in lines)
    assert maven.cached(missing, tmp_path) is None


@pytest.fixture
def fake_central(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server standing in for Maven Central's apache-maven downloads."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()


def maven_tarball(version: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        script = b"#!/bin/sh\necho maven\n"
        info = tarfile.TarInfo(f"apache-maven-{version}/bin/mvn")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return out.getvalue()


def test_maven_is_fetched_and_checked_when_none_is_installed(tmp_path: Path, fake_central) -> None:  # noqa: ANN001
    repo, files = fake_central
    path = "/org/apache/maven/apache-maven/9.9.9/apache-maven-9.9.9-bin.tar.gz"
    files[path] = maven_tarball("9.9.9")
    files[path + ".sha512"] = hashlib.sha512(files[path]).hexdigest().encode()
    mvn = maven.bootstrap_maven(tmp_path, "9.9.9", repo, progress=lambda _: None)
    assert mvn == tmp_path / "maven" / "apache-maven-9.9.9" / "bin" / "mvn"
    assert mvn.read_bytes().startswith(b"#!/bin/sh")


def test_a_maven_download_with_the_wrong_checksum_is_refused(tmp_path: Path, fake_central) -> None:  # noqa: ANN001
    repo, files = fake_central
    path = "/org/apache/maven/apache-maven/9.9.8/apache-maven-9.9.8-bin.tar.gz"
    files[path] = maven_tarball("9.9.8")
    files[path + ".sha512"] = hashlib.sha512(b"something else").hexdigest().encode()
    with pytest.raises(maven.ResolveError, match="SHA-512 mismatch"):
        maven.bootstrap_maven(tmp_path, "9.9.8", repo, progress=lambda _: None)
    assert not (tmp_path / "maven" / "apache-maven-9.9.8").exists()
