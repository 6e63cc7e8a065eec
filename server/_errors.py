"""Errors of the server package.

ServerError
├── SettingsError      a configuration value is wrong; the message names the variable and how to fix it
├── PolicyError        the action policy file is invalid
├── StartupError       a dependency (rules, model, state) could not be loaded at start-up
└── ModelPathError     ReloadModel named a model outside the model registry
"""

from __future__ import annotations

__all__ = ["ModelPathError", "PolicyError", "ServerError", "SettingsError", "StartupError"]


class ServerError(Exception):
    """Root of every error raised by ``server``."""


class SettingsError(ServerError):
    """A setting is invalid. The message names the setting and says what a valid value looks like."""


class PolicyError(ServerError):
    """The action policy is invalid."""


class StartupError(ServerError):
    """Outpost could not start: rules, model or state failed to load."""


class ModelPathError(ServerError):
    """ReloadModel may load versions from the model registry only; the message names the registry."""
