"""SQLAlchemy repositories of the unit-of-work port, one module per aggregate.

Each maps its table's rows to the port's records (`station.services.repositories`)
and back; ORM rows never leave these modules.
"""
