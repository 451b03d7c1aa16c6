"""Where the public warnings' configuration lives: shared by the alert API (CAP feed) and the notifier (email)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from citysense_common.paths import config_dir
from citysense_common.settings import CommonSettings
from citysense_common.warnings.config import PublicWarnings, load_warnings


class PublicWarningSettings(CommonSettings):
    cap_file: Path | None = Field(
        default=None,
        description="public warnings: CAP 1.2 feed and citizen email configuration (sender, public kinds and "
                    "severities, texts per language); default config/cap.yaml; when that default file is absent the "
                    "/v1/cap routes answer 404 and no warning email is sent",
    )
    rules_file: Path | None = Field(
        default=None, description="threshold rules, for the band labels and standards warnings name; default "
                                  "config/rules.yaml (the scorer's file)",
    )

    @property
    def cap_path(self) -> Path:
        return self.cap_file or config_dir() / "cap.yaml"

    @property
    def rules_path(self) -> Path:
        return self.rules_file or config_dir() / "rules.yaml"

    def public_warnings(self) -> PublicWarnings | None:
        """Read the configuration (None: no ``cap.yaml`` at the default path); raises CapConfigError."""
        return load_warnings(self.cap_path, required=self.cap_file is not None, rules_path=self.rules_path,
                             metrics_file=self.metrics_file)
