"""Where the write token comes from: generated (0600) in development, required and non-placeholder in production."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from citysense_alert_api.auth import resolve_api_token
from citysense_alert_api.settings import build_settings
from citysense_common.settings import SettingsError


def test_development_generates_token_file_0600_and_reuses_it(tmp_path) -> None:
    token, path = resolve_api_token(build_settings(data_dir=tmp_path))
    assert path == tmp_path / "api-token" and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _ = resolve_api_token(build_settings(data_dir=tmp_path))
    assert again == token


def test_explicit_token_wins(tmp_path) -> None:
    assert resolve_api_token(build_settings(data_dir=tmp_path, api_token="changeme")) == ("changeme", None)  # noqa: S106


@pytest.mark.parametrize("token", ["changeme", "secret", "aaaaaaaaaaaaaaaaaaaa", "short-but-real"])
def test_production_refuses_placeholders(tmp_path, token: str) -> None:
    with pytest.raises(SettingsError, match="placeholder"):
        resolve_api_token(build_settings(data_dir=tmp_path, env="production", api_token=token))


def test_production_requires_a_token(tmp_path) -> None:
    with pytest.raises(SettingsError, match="CITYSENSE_API_TOKEN is required"):
        resolve_api_token(build_settings(data_dir=tmp_path, env="production"))


def test_cli_refuses_to_start_with_placeholder_in_production(tmp_path) -> None:
    env = {"CITYSENSE_ENV": "production", "CITYSENSE_API_TOKEN": "changeme", "CITYSENSE_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "citysense_alert_api.cli"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "placeholder" in proc.stderr and "changeme" not in proc.stderr
