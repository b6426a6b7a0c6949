"""`python -m station` is the `chargepay` command."""

from station.cli import main

main()
