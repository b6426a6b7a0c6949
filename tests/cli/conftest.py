"""The end-to-end world (a running station, an operator client, one agent) for the CLI tests."""

from tests.e2e.conftest import make_world, world

__all__ = ["make_world", "world"]
