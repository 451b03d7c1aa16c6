"""The image build files: one parametrised Dockerfile for the four services, and the broker sharing the scorer's JRE
layer (docker/README.md). The images themselves are built and checked by `make e2e-containers`."""

from __future__ import annotations

import re

from chart_helpers import REPO

SERVICES = ("simulator", "scorer", "alert-api", "notifier")
DOCKERFILE = REPO / "docker" / "python-service.Dockerfile"


def instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    joined = code.replace("\\\n", " ")
    return [" ".join(ln.split()) for ln in joined.splitlines() if ln.strip()]


def test_one_dockerfile_has_a_stage_per_service_and_ends_on_the_chosen_one() -> None:
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    stages = [m.group(1) for s in steps if (m := re.fullmatch(r"FROM \S+ AS (\S+)", s))]
    assert set(SERVICES) <= set(stages)
    assert steps[-1] == "FROM ${SERVICE}"
    assert not list(REPO.glob("services/*/Dockerfile")), "the per-service copies are gone"
    # The build stage refuses an unknown or missing SERVICE before doing any work.
    assert any(s.startswith('RUN case "$SERVICE" in simulator|scorer|alert-api|notifier) ;;') for s in steps)


def test_builders_pass_the_service_and_its_target() -> None:
    mk = (REPO / "mk" / "cluster.mk").read_text(encoding="utf-8")
    assert "-f docker/python-service.Dockerfile" in mk
    assert "--build-arg SERVICE=$$svc --target $$svc" in mk
    e2e = (REPO / "docker" / "e2e_containers.py").read_text(encoding="utf-8")
    assert '"docker/python-service.Dockerfile"' in e2e
    assert '"--build-arg", f"SERVICE={service}", "--target", service' in e2e


def test_broker_repeats_the_scorer_jre_instruction_so_the_layer_is_built_once() -> None:
    scorer = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    scorer = scorer[scorer.index(next(s for s in scorer if s.endswith(" AS scorer"))):]
    broker = instructions((REPO / "docker" / "broker" / "Dockerfile").read_text(encoding="utf-8"))
    jre = [s for s in scorer if "default-jre-headless" in s]
    assert len(jre) == 1
    # Same parent (the Python base image) and the identical first RUN: the classic builder's cache key.
    assert scorer[0].split(" AS ")[0] == next(s for s in broker if s.startswith("FROM "))
    assert next(s for s in scorer if s.startswith("RUN ")) == jre[0]
    assert next(s for s in broker if s.startswith("RUN ")) == jre[0]


def test_broker_build_context_is_never_committed() -> None:
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/docker/broker/build/" in ignored
