"""Attention processors and position-id builders (DESIGN.md decisions 3 and 4)."""
