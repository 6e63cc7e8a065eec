"""Outpost server package."""
