"""Pure domain logic: no I/O, no frameworks (an import-linter contract keeps it so)."""
