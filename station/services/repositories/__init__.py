"""The repositories of the unit-of-work port (`station.services.unit_of_work`), one per aggregate.

Each module holds an aggregate's record (a frozen dataclass, or a domain value)
and its repository `Protocol`; the adapters live in `station.store.repositories`
and `tests.fakes`.
"""
