"""Where citysense finds its configuration files when running from a checkout or an image."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_ENV = "CITYSENSE_CONFIG_DIR"


def repo_root() -> Path | None:
    """The checkout this package was installed from (editable installs), or None inside an image."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "config" / "metrics.yaml").is_file() and (parent / "libs" / "common").is_dir():
            return parent
    return None


def config_dir() -> Path:
    """``$CITYSENSE_CONFIG_DIR``, else the checkout's ``config/``, else ``/etc/citysense`` (images mount it there)."""
    explicit = os.environ.get(CONFIG_DIR_ENV)
    if explicit:
        return Path(explicit)
    root = repo_root()
    return root / "config" if root else Path("/etc/citysense")
