"""Operator switches on the `operator_switches` table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from station.services.repositories.switches import Switch
from station.store.trust import SwitchRow


def switch_of(row: SwitchRow) -> Switch:
    return Switch(row.name, row.on, row.reason, row.actor, row.changed_at)


class SqlSwitches:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _row(self, name: str, *, lock: bool) -> SwitchRow | None:
        query = select(SwitchRow).where(SwitchRow.name == name)
        return (await self._session.scalars(query.with_for_update() if lock else query)).first()

    async def get(self, name: str, *, lock: bool = False) -> Switch | None:
        row = await self._row(name, lock=lock)
        return switch_of(row) if row is not None else None

    async def put(self, switch: Switch) -> None:
        row = await self._row(switch.name, lock=True)
        if row is None:
            row = SwitchRow(name=switch.name)
            self._session.add(row)
        row.on, row.reason, row.actor = switch.on, switch.reason, switch.actor
        row.changed_at = switch.changed_at
        await self._session.flush()
