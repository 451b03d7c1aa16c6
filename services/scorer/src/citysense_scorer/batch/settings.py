"""Settings of ``citysense-scorer batch`` (environment prefix ``CITYSENSE_``), built once in the entry point."""

from __future__ import annotations

from typing import Annotated, Any

from citysense_common.settings import load_settings
from citysense_common.store.settings import StoreSettings
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from citysense_scorer.batch.aggregates import DEFAULT_ALLOWANCES, Allowance, parse_allowances


class BatchSettings(StoreSettings):
    """Common + store settings (the batch reads readings and writes aggregates) + the exceedance allowances."""

    exceedance_allowances: Annotated[tuple[Allowance, ...], NoDecode] = Field(
        default=DEFAULT_ALLOWANCES, description="daily-mean limits counted as exceedance days, as a JSON list of "
        "{id, metric, limit, allowed_days, source}; empty = the EU limits for PM10 and PM2.5")

    @field_validator("exceedance_allowances", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:  # noqa: ANN401 - JSON text from the environment, or allowances
        return parse_allowances(value) if isinstance(value, str) else value


def batch_settings(**overrides: object) -> BatchSettings:
    return load_settings(BatchSettings, **overrides)
