"""Outpost models package."""
