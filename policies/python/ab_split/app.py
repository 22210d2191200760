"""ab_split component entry: binds the switchyard:policy imports (componentize-py
bindings in `wit_world`) to the logic in ab_split.py and exports `router`."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import backends, logging, params, types

import ab_split

_LEVELS = {
    "trace": logging.Level.TRACE,
    "debug": logging.Level.DEBUG,
    "info": logging.Level.INFO,
    "warn": logging.Level.WARN,
    "error": logging.Level.ERROR,
}


class _Backend:
    """A backend-status with `kind` as the string ab_split expects."""

    def __init__(self, status):
        self.name = status.name
        self.kind = "local" if status.kind == backends.BackendKind.LOCAL else "cloud"
        self.models = status.models
        self.healthy = status.healthy
        self.context_window = status.context_window


class _Host:
    def backends(self):
        return [_Backend(b) for b in backends.list()]

    def params(self):
        return {label.key: label.value for label in params.all()}

    def log(self, level, message, fields):
        logging.log(_LEVELS[level], message, [types.Label(k, v) for k, v in fields])


class Router(exports.Router):
    def info(self) -> types.PolicyInfo:
        return types.PolicyInfo(ab_split.INFO["name"], ab_split.INFO["version"], ab_split.INFO["description"])

    def route(self, request: types.Request) -> types.Decision:
        outcome, value = ab_split.decide(request, _Host())
        if outcome == "err":
            raise Err(types.Rejection(value["status"], value["message"]))
        return types.Decision(
            targets=[types.Target(t["backend"], t["model"]) for t in value["targets"]],
            reason=value["reason"],
            messages=None,
            max_tokens=None,
            labels=[types.Label(k, v) for k, v in value["labels"]],
        )
