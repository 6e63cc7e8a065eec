"""Outpost's gRPC service: settings, servicers, the scoring pipeline and the action policy."""

from server._app import OutpostApp, create_server, serve
from server._errors import ModelPathError, PolicyError, ServerError, SettingsError, StartupError
from server._pipeline import (
    MIN_MODEL_POINTS,
    Decisions,
    DecisionSink,
    ScoringPipeline,
    Snapshot,
    decide,
    max_action,
)
from server._policy import ActionPolicy, ChannelPolicy
from server._reasons import REASON_SOURCES, Reason, ranked_reasons, reason_message, reason_words
from server._settings import Settings, load_settings

__all__ = [
    "MIN_MODEL_POINTS",
    "REASON_SOURCES",
    "ActionPolicy",
    "ChannelPolicy",
    "DecisionSink",
    "Decisions",
    "ModelPathError",
    "OutpostApp",
    "PolicyError",
    "Reason",
    "ScoringPipeline",
    "ServerError",
    "Settings",
    "SettingsError",
    "Snapshot",
    "StartupError",
    "create_server",
    "decide",
    "load_settings",
    "max_action",
    "ranked_reasons",
    "reason_message",
    "reason_words",
    "serve",
]
