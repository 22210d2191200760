"""Request and decision shapes of contract 0.2 (WIT interface `types`), as plain dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional


class Role(enum.Enum):
    """Who wrote a chat message (the bindings hand roles as enums, so does the SDK)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass
class Message:
    """One chat message (text content only)."""

    role: Role
    content: str

    @classmethod
    def user(cls, content: str) -> "Message":
        return cls(Role.USER, content)

    @classmethod
    def system(cls, content: str) -> "Message":
        return cls(Role.SYSTEM, content)

    @classmethod
    def assistant(cls, content: str) -> "Message":
        return cls(Role.ASSISTANT, content)


class ResponseFormat(enum.Enum):
    """The output format a client asked for (`response_format`)."""

    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass
class Needs:
    """What a request needs from the model that serves it, read by the host from the body."""

    tools: List[str] = field(default_factory=list)
    response_format: ResponseFormat = ResponseFormat.TEXT
    logprobs: bool = False
    images: int = 0
    n: int = 1


def estimate_tokens(text: str) -> int:
    """The mock host's token count: UTF-8 bytes / 4, rounded up (as the Rust SDK)."""
    return min((len(text.encode("utf-8")) + 3) // 4, 0xFFFFFFFF)


@dataclass
class Request:
    """What the policy sees of a client request. `labels` is a dict (the WIT list of labels)."""

    id: str = "req-1"
    model: str = "auto"
    messages: List[Message] = field(default_factory=list)
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    streaming: bool = False
    tenant: str = "default"
    labels: Dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 0
    needs: Needs = field(default_factory=Needs)
    explicit_model: bool = False

    @classmethod
    def of(cls, messages: List[Message], **fields) -> "Request":
        """A request with `messages`; `prompt_tokens` defaults to the mock count (bytes/4)."""
        if "prompt_tokens" not in fields:
            fields["prompt_tokens"] = min(sum(estimate_tokens(m.content) for m in messages), 0xFFFFFFFF)
        return cls(messages=list(messages), **fields)

    @classmethod
    def user(cls, content: str, **fields) -> "Request":
        """A request holding one user message (see `Request.of`)."""
        return cls.of([Message.user(content)], **fields)

    def text(self) -> str:
        """Every message's content, joined with a newline."""
        return "\n".join(m.content for m in self.messages)

    def last_user_text(self) -> str:
        """The content of the last user message, or "" when there is none."""
        for m in reversed(self.messages):
            if m.role == Role.USER:
                return m.content
        return ""

    def label(self, key: str) -> Optional[str]:
        """The value of client label `key`."""
        return self.labels.get(key)

    def needed_context(self) -> int:
        """Context the request needs: prompt tokens plus the client's completion limit."""
        return self.prompt_tokens + (self.max_tokens or 0)


@dataclass
class Target:
    """One place to send a request: a backend name and an optional model override."""

    backend: str
    model: Optional[str] = None


@dataclass
class Decision:
    """Where to send a request: the first target is primary, the rest fallbacks in order.

    The builder methods change the decision in place and return it, for chaining.
    """

    targets: List[Target] = field(default_factory=list)
    reason: str = ""
    messages: Optional[List[Message]] = None
    max_tokens: Optional[int] = None
    labels: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def to(cls, backend: str, model: Optional[str] = None) -> "Decision":
        """A decision with `backend` (its default model unless `model`) as the primary target."""
        return cls([Target(backend, model)])

    @classmethod
    def to_all(cls, backends: Iterable[str], reason: str = "") -> "Decision":
        """A decision over these backend names (default models), in order."""
        return cls([Target(b) for b in backends], reason=reason)

    def then(self, backend: str, model: Optional[str] = None) -> "Decision":
        """Appends `backend` as the next fallback."""
        self.targets.append(Target(backend, model))
        return self

    def because(self, reason: str) -> "Decision":
        """Sets the reason."""
        self.reason = reason
        return self

    def label(self, key: str, value: str) -> "Decision":
        """Adds a metrics label."""
        self.labels[key] = value
        return self

    def cap_tokens(self, max_tokens: int) -> "Decision":
        """Caps completion tokens (keeps the smaller cap if one is already set)."""
        self.max_tokens = max_tokens if self.max_tokens is None else min(self.max_tokens, max_tokens)
        return self

    def rewrite(self, messages: List[Message]) -> "Decision":
        """Sends `messages` instead of the client's."""
        self.messages = list(messages)
        return self

    def backends(self) -> List[str]:
        """The backend names, in order."""
        return [t.backend for t in self.targets]


@dataclass
class Rejection:
    """Refuse a request: the client gets HTTP `status` with `message`.

    A status outside 400..=599 becomes 500 (as the Rust SDK's `Rejection::new`).
    """

    status: int
    message: str

    def __post_init__(self):
        if not isinstance(self.status, int) or isinstance(self.status, bool) or not 400 <= self.status <= 599:
            self.status = 500

    @classmethod
    def unavailable(cls, message: str) -> "Rejection":
        """503 Service Unavailable: no backend can take the request."""
        return cls(503, message)


@dataclass
class PolicyInfo:
    """What a policy says about itself."""

    name: str
    version: str
    description: str = ""
