"""The charging session's state machine: an enum and guarded transitions.

    authorized ──▶ charging ──▶ stopping ──▶ settled
        │             │            │
        └─────────────┴────────────┴──▶ cancelled (nothing delivered, hold released)
                                       failed (detail says why)

`advance(current, target)` returns the new status or raises
`IllegalTransition`; moving to the status a session already has is allowed
(events can arrive twice) and returns it unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from station.errors import IllegalTransition


class SessionStatus(StrEnum):
    AUTHORIZED = "authorized"
    CHARGING = "charging"
    STOPPING = "stopping"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in _FINAL

    @property
    def can_charge(self) -> bool:
        """May a charge point start or continue energy transfer for this session?"""
        return self in (SessionStatus.AUTHORIZED, SessionStatus.CHARGING)


_FINAL = frozenset({SessionStatus.SETTLED, SessionStatus.CANCELLED, SessionStatus.FAILED})

_ALLOWED: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.AUTHORIZED: frozenset(
        {
            SessionStatus.CHARGING,
            SessionStatus.STOPPING,
            SessionStatus.CANCELLED,
            SessionStatus.FAILED,
        }
    ),
    SessionStatus.CHARGING: frozenset({SessionStatus.STOPPING, SessionStatus.FAILED}),
    SessionStatus.STOPPING: frozenset(
        {SessionStatus.SETTLED, SessionStatus.CANCELLED, SessionStatus.FAILED}
    ),
    SessionStatus.SETTLED: frozenset(),
    SessionStatus.CANCELLED: frozenset(),
    SessionStatus.FAILED: frozenset(),
}


def can_advance(current: SessionStatus, target: SessionStatus) -> bool:
    return target == current or target in _ALLOWED[current]


def advance(current: SessionStatus, target: SessionStatus) -> SessionStatus:
    """The status after moving `current` to `target`; raises IllegalTransition if not allowed."""
    if not can_advance(current, target):
        raise IllegalTransition(f"session cannot move from {current} to {target}")
    return target
