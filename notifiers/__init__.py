"""Kairan's delivery channels: one module per channel."""
