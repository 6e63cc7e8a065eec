"""Shared fixtures for the Outpost test suite."""
