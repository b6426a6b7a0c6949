"""chargepay station: the charge-point operator's central system."""

__version__ = "0.1.0"
