"""HTTP API for agents and operators (FastAPI)."""
