"""The service layer: carries out the domain's decisions with the adapters."""
