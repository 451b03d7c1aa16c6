"""Images pinned by digest: `<component>.image.digest` makes every reference to that image in the rendered chart
`repository:tag@sha256:...` (the container runtime pulls by the digest; the tag stays for people reading it), and
the schema accepts only a full sha256 digest. The e2e run pins its base images by ID (docker/README.md)."""

from __future__ import annotations

import re

from chart_helpers import REPO, render, template_raw

COMPONENTS = {"simulator": "simulator", "alertApi": "alert-api", "notifier": "notifier", "scorer": "scorer"}
DIGESTS = {key: "sha256:" + f"{n:x}" * 64 for n, key in enumerate(COMPONENTS, start=10)}


def images(node: object) -> list[str]:
    """Every `image:` string in a rendered document (pods, SparkApplication driver/executor, helm test pods)."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "image" and isinstance(v, str)]
        return found + [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def test_without_digests_images_are_referenced_by_tag() -> None:
    refs = [i for doc in render() for i in images(doc)]
    assert refs and all("@" not in ref for ref in refs), refs


def test_every_reference_to_a_component_image_carries_its_digest() -> None:
    values = {f"{key}.image.digest": digest for key, digest in DIGESTS.items()}
    values["global.imageRegistry"] = "registry.example.org"
    refs = [i for doc in render(values=values) for i in images(doc)]
    seen = set()
    for ref in refs:
        match = re.fullmatch(r"registry\.example\.org/citysense/([a-z-]+):([^@]+)@(sha256:[0-9a-f]{64})", ref)
        assert match, ref
        key = next(k for k, name in COMPONENTS.items() if name == match[1])
        assert match[3] == DIGESTS[key], ref
        seen.add(key)
    assert seen == set(COMPONENTS)


def test_the_schema_accepts_only_a_full_sha256_digest() -> None:
    for bad in ("latest", "sha256:abc", "sha512:" + "0" * 128, "SHA256:" + "0" * 64):
        result = template_raw(values={"notifier.image.digest": bad})
        assert result.returncode != 0 and "digest" in result.stderr, bad


def test_the_e2e_run_builds_from_its_base_images_by_id() -> None:
    """docker/e2e_containers.py resolves the Dockerfile's base-image tags to image IDs once and passes the IDs as
    the base-image build arguments of every build (services and broker), then checks each image's layer chain."""
    e2e = (REPO / "docker" / "e2e_containers.py").read_text(encoding="utf-8")
    assert 'extra += ["--build-arg", f"{arg}={image_id}"]' in e2e
    assert "bases=bases)" in e2e and 'bases={"PYTHON_IMAGE": bases["PYTHON_IMAGE"]}' in e2e
    dockerfile = (REPO / "docker" / "python-service.Dockerfile").read_text(encoding="utf-8")
    args = re.findall(r"^ARG ([A-Z]+_IMAGE)=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert dict(args).keys() == {"PYTHON_IMAGE", "SPARK_IMAGE"}
    broker = (REPO / "docker" / "broker" / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG PYTHON_IMAGE={dict(args)['PYTHON_IMAGE']}" in broker
