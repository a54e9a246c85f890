"""Kairan: a self-hosted feed aggregator and notification service."""

__version__ = "0.1.0.dev0"
