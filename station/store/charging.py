"""Tables of the charging area (filled in by its owner)."""
