"""Shared fixtures for the Outpost test suite."""

from hypothesis import settings

# Hypothesis' per-example deadline is a timing check: on a shared machine, or when a numba kernel compiles at its
# first example (a fresh clone has no cache), it fails correct code. The properties here are about results; speed
# is measured by `make bench`.
settings.register_profile("outpost", deadline=None)
settings.load_profile("outpost")
