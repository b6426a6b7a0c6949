"""The agent's structured logs: constant event names, data in fields.

    log = get_logger(__name__).bind(agent_id="agt_1")
    log.info("agent.receipt", session_id="ses_1", verdict="accepted")

Lines go to the standard `logging` module (logger names under `vehicle.`);
the embedding application decides handlers and format; `configure` is the
CLI's.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal | datetime) else value


class BoundLogger:
    """A logger with context fields that every line carries."""

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._context = context or {}

    def bind(self, **context: Any) -> BoundLogger:
        return BoundLogger(self._logger, {**self._context, **context})

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            extra = {k: v for k, v in {**self._context, **fields}.items() if k not in _RESERVED}
            self._logger.log(level, event, extra=extra, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)


def get_logger(name: str, **context: Any) -> BoundLogger:
    return BoundLogger(logging.getLogger(name), context)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update({k: _plain(v) for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{k}={_plain(v)!s}" for k, v in record.__dict__.items() if k not in _RESERVED
        )
        return f"{record.levelname.lower():5} {record.getMessage()} {fields}".rstrip()


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """One line per event on stderr at `level`: JSON, or key=value (`fmt="text"`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
