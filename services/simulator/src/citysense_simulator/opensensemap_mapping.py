"""openSenseMap phenomena and units -> registry metrics, from ``config/opensensemap.yaml`` plus an optional override.

Sensor titles and units on openSenseMap are free text typed by box owners, so the mapping is configuration, not
code: a new spelling is a line in the YAML file. Anything unmapped is reported once per (title, unit) and skipped,
because guessing a unit would publish wrong numbers that look right.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml
from citysense_common.paths import config_dir
from citysense_common.registry import Registry

MAPPING_FILE_ENV = "CITYSENSE_OPENSENSEMAP_MAPPING"
log = logging.getLogger("citysense.simulator.opensensemap")


class MappingError(ValueError):
    """The mapping file is missing or malformed; the message names the file and the entry."""


def normalise_title(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def normalise_unit(text: str) -> str:
    # NFKC folds the micro sign into Greek mu and superscripts into digits, so "µg/m³" == "μg/m3".
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


@dataclass(frozen=True)
class Conversion:
    """How one (phenomenon, unit) becomes a registry metric value: ``value * scale + offset``."""

    metric: str
    scale: float = 1.0
    offset: float = 0.0

    def apply(self, value: float) -> float:
        if self.scale == 1.0 and self.offset == 0.0:
            return value
        # Rounded so that 101325 Pa -> 1013.25 hPa, not 1013.2500000000001.
        return round(value * self.scale + self.offset, 9)


class PhenomenonMapper:
    """Resolves a sensor's (title, unit) to a :class:`Conversion`, remembering what it could not map."""

    def __init__(self, titles: dict[str, str], units: dict[str, dict[str, Conversion]]) -> None:
        self._titles = titles  # normalised title -> metric
        self._units = units  # metric -> normalised unit -> conversion
        self.unmapped: set[tuple[str, str]] = set()

    def metric_for_title(self, title: str) -> str | None:
        return self._titles.get(normalise_title(title))

    def resolve(self, title: str, unit: str | None) -> Conversion | None:
        """The conversion for this sensor, or None (logged once per distinct title and unit)."""
        metric = self.metric_for_title(title)
        conversion: Conversion | None = None
        reason = f"no metric for phenomenon {title!r}"
        if metric is not None:
            unit_key = normalise_unit(unit or "")
            known = self._units.get(metric, {})
            if not unit_key or not known:
                conversion = Conversion(metric)  # no unit given, or the metric declares no unit table
            else:
                conversion = known.get(unit_key)
                reason = f"phenomenon {title!r} is {metric}, but its unit {unit!r} has no conversion"
        if conversion is None:
            key = (title, unit or "")
            if key not in self.unmapped:
                self.unmapped.add(key)
                log.warning("skipping openSenseMap sensors with %s (add it to config/opensensemap.yaml or a "
                            "--mapping file)", reason)
        return conversion


def default_mapping_file() -> Path:
    return config_dir() / "opensensemap.yaml"


def _read(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read openSenseMap mapping {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: expected a mapping with 'phenomena' and 'units'")
    return doc


def load_mapper(registry: Registry, override: str | Path | None = None) -> PhenomenonMapper:
    """The default mapping merged with ``override`` (or ``$CITYSENSE_OPENSENSEMAP_MAPPING``), checked against the
    registry so a typo in a metric name fails at start-up instead of producing readings the scorer rejects."""
    files = [default_mapping_file()]
    extra = override or os.environ.get(MAPPING_FILE_ENV)
    if extra:
        files.append(Path(extra))
    titles: dict[str, str] = {}
    units: dict[str, dict[str, Conversion]] = {}
    for path in files:
        doc = _read(path)
        for metric, names in (doc.get("phenomena") or {}).items():
            _check_metric(registry, metric, path, "phenomena")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise MappingError(f"{path}: phenomena.{metric}: expected a list of sensor titles")
            for name in names:
                titles[normalise_title(name)] = metric
        for metric, table in (doc.get("units") or {}).items():
            _check_metric(registry, metric, path, "units")
            if not isinstance(table, dict):
                raise MappingError(f"{path}: units.{metric}: expected 'unit: {{scale, offset}}' entries")
            for unit, spec in table.items():
                spec = spec or {}
                if not isinstance(spec, dict) or set(spec) - {"scale", "offset"}:
                    raise MappingError(f"{path}: units.{metric}.{unit}: only 'scale' and 'offset' are allowed")
                try:
                    conversion = Conversion(metric, float(spec.get("scale", 1.0)), float(spec.get("offset", 0.0)))
                except (TypeError, ValueError):
                    raise MappingError(f"{path}: units.{metric}.{unit}: scale and offset must be numbers") from None
                units.setdefault(metric, {})[normalise_unit(str(unit))] = conversion
    return PhenomenonMapper(titles, units)


def _check_metric(registry: Registry, metric: str, path: Path, section: str) -> None:
    if metric not in registry.metrics:
        raise MappingError(f"{path}: {section}.{metric}: not a metric of the registry; "
                           f"choose one of {sorted(registry.metrics)}")
