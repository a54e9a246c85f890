"""`python -m aggregator` runs the `kairan` CLI."""

from aggregator.cli import main

# Guarded: the parser pool's spawned workers import __main__ again.
if __name__ == "__main__":
    main()
