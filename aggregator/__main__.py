"""`python -m aggregator` runs the `kairan` CLI."""

from aggregator.cli import main

main()
