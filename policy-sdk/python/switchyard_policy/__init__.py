"""Switchyard policy SDK for Python: write routing policies against contract
switchyard:policy@0.2.0, build them with componentize-py (`component.export`), and test
them natively with `testing.MockHost` and the case runner (`cases`)."""

from .backend import BackendKind, BackendStatus, ModelCapabilities, SpendStatus
from .host import NO_EMBEDDING_MODEL, Host, HostError, LogLevel, split_list
from .pii import PiiKind, PiiMatch
from .policy import Policy
from .types import (Decision, Message, Needs, PolicyInfo, Rejection, Request, ResponseFormat, Role, Target,
                    estimate_tokens)

__version__ = "0.2.0"

__all__ = [
    "BackendKind", "BackendStatus", "Decision", "Host", "HostError", "LogLevel", "Message", "ModelCapabilities",
    "NO_EMBEDDING_MODEL", "Needs", "PiiKind", "PiiMatch", "Policy", "PolicyInfo", "Rejection", "Request",
    "ResponseFormat", "Role", "SpendStatus", "Target", "estimate_tokens", "split_list",
]
