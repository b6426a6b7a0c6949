"""Every table, gathered on one metadata (for Alembic and the drift test).

Each area owns its module: `charging` (charge points, connectors,
transactions, meter samples, anomalies), `trust` (agents, nonces, operator
switches), `audit` (the hash-chained log) and `payments` (negotiations,
offers, challenges, sessions, settlements).
"""

from station.store import audit, charging, cluster, payments, trust
from station.store.base import Base

__all__ = ["Base", "audit", "charging", "cluster", "payments", "trust"]
