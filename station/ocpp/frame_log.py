"""The frame log: every OCPP frame in and out, counted and appended to ``ocpp_messages``.

Id tokens and passwords are replaced by ``***`` before anything is stored or
logged. Rows go to the group-commit writer with the next batch (``append``:
nobody waits for them); the payload is encoded here, once, so the batch
writes it as it is. Each frame also moves the station's
``chargepay_ocpp_messages`` counter (and ``chargepay_ocpp_errors`` for a
CALLERROR), whose label children are looked up once per action. An answer
to no call in flight is not logged at all: `dropped` only counts it
(``chargepay_ocpp_unsolicited_answers``), so a flood of them stores nothing.

The message id and action columns are text: a lone surrogate or NUL in them
is written as a backslash escape (`rpc.storable_text`), and both are cut to
their column's 64 characters, so no frame can make its row unstorable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201
from prometheus_client import Counter

from station.logs import get_logger
from station.metrics import StationMetrics
from station.ocpp import wire
from station.ocpp.rpc import storable_text
from station.store.charging import OcppMessageRow
from station.store.writer import GroupCommitWriter, JsonText

_MESSAGES = OcppMessageRow.__table__
_SECRET_KEYS = frozenset(
    {"idTag", "parentIdTag", "idToken", "password", "basicAuthPassword", "authorizationKey"}
)
_COLUMNS = ("charge_point_id", "direction", "message_type", "message_id", "action", "payload", "at")
_frames_log = logging.getLogger("station.ocpp.frames")
# Metric labels come from the peer: only names OCPP defines become label values,
# so a charge point inventing actions or error codes cannot grow the registry.
_ACTIONS = frozenset(a.value for enum in (Action16, Action201, Action21) for a in enum)
_ERROR_CODES = frozenset(
    {
        "FormatViolation", "FormationViolation", "GenericError", "InternalError",
        "MessageTypeNotSupported", "NotImplemented", "NotSupported",
        "OccurrenceConstraintViolation", "OccurenceConstraintViolation",
        "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError",
        "SecurityError", "TypeConstraintViolation",
    }
)  # fmt: skip


def redact(value: Any) -> Any:
    """A copy of a payload with id tokens and passwords replaced by ``***``."""
    if isinstance(value, dict):
        return {
            k: "***" if k in _SECRET_KEYS and isinstance(v, str) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _maybe_secret(text: str) -> bool:
    """Whether a frame may hold one of those keys (a frame without them needs no redaction)."""
    return "idT" in text or "arentIdTag" in text or "assword" in text or "uthorizationKey" in text


class FrameLog:
    def __init__(
        self, writer: GroupCommitWriter | None = None, metrics: StationMetrics | None = None
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self._messages: dict[tuple[str, str], Counter] = {}

    def record(
        self,
        charge_point_id: str,
        direction: str,
        kind: int,
        unique_id: str,
        action: str | None,
        payload: Any,
        text: str | None = None,
    ) -> None:
        """Log one frame; ``text`` is the frame as on the wire (None: not known)."""
        stored = redact(payload) if text is None or _maybe_secret(text) else payload
        if _frames_log.isEnabledFor(logging.DEBUG):
            get_logger(_frames_log.name, charge_point_id=charge_point_id).debug(
                "ocpp.frame", direction=direction, action=action, payload=stored
            )
        if self.metrics is not None:
            self._count(direction, kind, action, stored)
        if self.writer is not None:
            if not unique_id.isascii() or "\x00" in unique_id:
                unique_id = storable_text(unique_id)
            if action is not None and (not action.isascii() or "\x00" in action):
                action = storable_text(action)
            self.writer.append_values(
                _MESSAGES,  # type: ignore[arg-type]
                _COLUMNS,
                (
                    charge_point_id,
                    direction,
                    kind,
                    unique_id[:64],
                    None if action is None else action[:64],
                    JsonText(wire.encode(stored)),
                    datetime.now(UTC),
                ),
            )

    def dropped(self, charge_point_id: str, kind: int) -> None:
        """Count an incoming answer (CALLRESULT 3 / CALLERROR 4) to no call in flight."""
        if self.metrics is not None:
            self.metrics.ocpp_unsolicited.labels(message_type=str(kind)).inc()

    def _count(self, direction: str, kind: int, action: str | None, payload: Any) -> None:
        assert self.metrics is not None
        action = "unknown" if action is None else action if action in _ACTIONS else "other"
        key = (action, direction)
        counter = self._messages.get(key)
        if counter is None:
            counter = self.metrics.ocpp_messages.labels(action=action, direction=direction)
            self._messages[key] = counter
        counter.inc()
        if kind == 4:
            code = payload[0] if isinstance(payload, list) and payload else "unknown"
            code = code if isinstance(code, str) and code in _ERROR_CODES else "other"
            self.metrics.ocpp_errors.labels(action=action, error=code).inc()
