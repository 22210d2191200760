"""The policy an author writes: a `Policy` subclass (or any object or class with
`route(request, host)`, or a plain function), and how the SDK finds its route and info."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

from .host import Host
from .types import Decision, PolicyInfo, Rejection, Request

Route = Callable[[Request, Host], Union[Decision, Rejection]]


class Policy:
    """Base class for policies: set `name`, `version`, `description` and write `route`."""

    name = "policy"
    version = "0.1.0"
    description = ""

    def info(self) -> PolicyInfo:
        """Name, version and a one-line description (from the class attributes)."""
        return PolicyInfo(self.name, self.version, self.description)

    def route(self, request: Request, host: Host) -> Union[Decision, Rejection]:
        """Decide where `request` goes (a Decision) or refuse it (a Rejection)."""
        raise NotImplementedError("%s.route is not written" % type(self).__name__)


def resolve(policy: Any, info: Optional[PolicyInfo] = None) -> Tuple[Route, PolicyInfo]:
    """The route function and info of `policy`: a Policy (or any object with `route`), a
    class of one (instantiated without arguments), or a function `route(request, host)`.
    `info` overrides what the policy says of itself. Raises TypeError when it is none of them."""
    if isinstance(policy, type):
        policy = policy()
    route = getattr(policy, "route", None)
    if callable(route):
        if info is None:
            own = getattr(policy, "info", None)
            info = own() if callable(own) else PolicyInfo(
                str(getattr(policy, "name", type(policy).__name__)),
                str(getattr(policy, "version", "0.1.0")),
                str(getattr(policy, "description", "")))
        return route, info
    if callable(policy):
        if info is None:
            doc = (policy.__doc__ or "").strip().splitlines()
            info = PolicyInfo(getattr(policy, "__name__", "policy"), "0.1.0", doc[0] if doc else "")
        return policy, info
    raise TypeError("a policy is an object or class with route(request, host), or a function "
                    "route(request, host); got %r" % (policy,))


def describe_error(e: BaseException) -> str:
    """`Type: message at file:line` of the innermost frame, without reading any source file
    (inside a component every file access traps)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = "" if tb is None else " at %s:%d" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    return "%s: %s%s" % (type(e).__name__, e, where)
