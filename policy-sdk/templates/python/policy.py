"""__TITLE__: the routing rules (switchyard_policy SDK). Code requests go to the cheapest
healthy cloud backend that fits; tenant `legal` never leaves local backends; everything
else goes local first.

Params (all optional):
  local_only_tenants  comma-separated tenants kept on local backends (default "legal")
  code_words          comma-separated words that mark a code request (default: CODE_WORDS)
"""

import re

from switchyard_policy import BackendKind, Decision, Policy, Rejection, select

CODE_WORDS = ("```", "def ", "function", "class ", "implement", "refactor", "debug", "compile",
              "stack trace", "traceback", "regex", "sql")


def words_pattern(words):
    """A regex finding any of `words` at the start of a word, case-insensitively."""
    return re.compile(r"(?<![a-z])(?:%s)" % "|".join(re.escape(w.lower()) for w in words))


# Compiled at build time (componentize-py runs module-level code once, before the snapshot);
# compiling per decision would cost milliseconds in every fresh instance.
CODE_PATTERN = words_pattern(CODE_WORDS)


def is_code(request, pattern):
    """A code request: label `task=code`, or a code word in the last user message."""
    if (request.label("task") or "").lower() == "code":
        return True
    return pattern.search(request.last_user_text().lower()) is not None


class RoutingPolicy(Policy):
    name = "__NAME__"
    version = "0.1.0"
    description = "__TITLE__: code to the cheapest cloud that fits, tenant legal local only, else local first"

    def route(self, request, host):
        needed = request.needed_context()
        backends = host.backends()
        local = select.of_kind(backends, BackendKind.LOCAL)
        cloud = select.by_price(select.of_kind(backends, BackendKind.CLOUD))
        words = host.param_list("code_words")
        code_pattern = words_pattern(words) if words else CODE_PATTERN

        # `usable` drops backends too small for the request and puts unhealthy ones last.
        if request.tenant in host.param_list_or("local_only_tenants", ["legal"]):
            order, route = select.usable(local, needed), "local-only"
        elif is_code(request, code_pattern):
            order, route = select.usable(cloud + local, needed), "code-cloud"
        else:
            order, route = select.usable(local + cloud, needed), "local-first"
        if not order:
            where = "local backend" if route == "local-only" else "backend"
            return Rejection(503, "__NAME__: no %s can hold this request (%d tokens)" % (where, needed))
        decision = Decision.to_all(select.names(order), "__NAME__:" + route).label("route", route)
        if not order[0].healthy:
            decision.label("degraded", "true")
        return decision
