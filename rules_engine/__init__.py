"""Outpost rules_engine package."""
