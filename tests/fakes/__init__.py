"""In-memory fakes of the station's ports (contract-tested beside the real adapters)."""
