"""Logging set-up shared by the services: one line per event, text for people or JSON for collectors.

Secrets (bearer tokens, webhook signing secrets) are masked in every record, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_SECRET_PATTERNS = (
    re.compile(r"(whsec_)[A-Za-z0-9+/=_-]+"),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"((?:token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.IGNORECASE),
)


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


# Libraries that log routine chatter at INFO: py4j writes "Received command c on object id p0" for every Spark
# callback (once per micro-batch in the scorer's log).
QUIET = ("py4j",)


def setup_logging(service: str, level: str = "INFO", fmt: str = "text") -> logging.Logger:
    """Configure the root logger once for a service process and return the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(service)
