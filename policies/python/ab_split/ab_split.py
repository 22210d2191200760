"""A/B (canary) split, written with the switchyard_policy SDK: `AbSplit.route(request, host)`
returns a Decision or a Rejection. `app.py` exports it as the component's router; the unit
tests (`test_ab_split.py`) and the native case runner drive it with the SDK's MockHost.

Params (all optional):
  a_share        percent of traffic in arm A, 0..100, decimals allowed (default 50)
  a_kind/b_kind  backend kind each arm prefers: local | cloud | any
                 (defaults: A = local, B = cloud)
  a_backends/b_backends
                 comma-separated backend names for an arm (overrides its kind)
  a_model/b_model
                 model override for the arm's targets that serve that model
  key            what is hashed: tenant (default) | user | request
  salt           mixed into the hash; change it to reshuffle the arms
  experiment     name put in the `ab-experiment` label (default "ab")
"""

from switchyard_policy import Decision, LogLevel, Policy, Rejection, Target, split_list

BUCKETS = 10_000

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = 0xFFFFFFFFFFFFFFFF


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a hash."""
    h = FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * FNV_PRIME) & MASK64
    return h


def bucket_of(key: str, salt: str = "") -> int:
    """Stable bucket in 0..BUCKETS for `key`.

    FNV-1a's low bits mix poorly for short, similar keys, so the 64-bit hash is
    folded (xor-shift, then a multiply, as in splitmix64's finaliser) before
    taking it modulo BUCKETS.
    """
    h = fnv1a64((salt + "\x00" + key).encode("utf-8"))
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    return h % BUCKETS


class Config:
    """Parsed params; bad values fall back to defaults (and are reported)."""

    def __init__(self, params, warn):
        self.a_share = 50.0
        raw = params.get("a_share")
        if raw is not None:
            try:
                value = float(raw)
                if not 0.0 <= value <= 100.0:
                    raise ValueError("out of range")
                self.a_share = value
            except ValueError:
                warn("a_share must be a number in 0..100; using 50", raw)
        self.kinds = {
            "a": _choice(params.get("a_kind"), ("local", "cloud", "any"), "local"),
            "b": _choice(params.get("b_kind"), ("local", "cloud", "any"), "cloud"),
        }
        self.names = {
            "a": split_list(params.get("a_backends") or ""),
            "b": split_list(params.get("b_backends") or ""),
        }
        self.models = {"a": params.get("a_model") or None, "b": params.get("b_model") or None}
        self.key = _choice(params.get("key"), ("tenant", "user", "request"), "tenant")
        self.salt = params.get("salt") or ""
        self.experiment = params.get("experiment") or "ab"


def _choice(value, allowed, default):
    value = (value or "").strip().lower()
    return value if value in allowed else default


def hash_key(request, key_kind):
    """(what, value) hashed for this request: tenant, else user label, else request id.

    The unauthenticated tenant "default" is shared by everyone, so it is not a
    useful split key: such requests fall through to the `user` label, then the id.
    """
    labels = request.labels
    order = {"tenant": ("tenant", "user", "request"), "user": ("user", "request"), "request": ("request",)}[key_kind]
    for what in order:
        if what == "tenant" and request.tenant and request.tenant != "default":
            return "tenant", request.tenant
        if what == "user" and labels.get("user"):
            return "user", labels["user"]
        if what == "request":
            return "request", request.id
    return "request", request.id


def arm_backends(arm, config, backends):
    """The arm's backends: named ones in the given order, else those of its kind."""
    names = config.names[arm]
    if names:
        by_name = {b.name: b for b in backends}
        return [by_name[n] for n in names if n in by_name]
    kind = config.kinds[arm]
    return [b for b in backends if kind == "any" or b.kind.value == kind]


def fits(backend, request):
    needed = request.prompt_tokens + (request.max_tokens or 0)
    return backend.context_window == 0 or needed <= backend.context_window


class AbSplit(Policy):
    name = "ab_split"
    version = "0.1.0"
    description = "A/B or canary split by a stable hash of the tenant (Python)."

    def route(self, request, host):
        """Route `request`: the arm's usable backends, then the other arm's, unhealthy last."""

        def warn(message, detail):
            host.log(LogLevel.WARN, message, [("detail", str(detail))])

        config = Config(host.params(), warn)
        key_kind, key = hash_key(request, config.key)
        bucket = bucket_of(key, config.salt)
        arm = "a" if bucket < config.a_share * (BUCKETS // 100) else "b"
        other = "b" if arm == "a" else "a"

        backends = host.backends()
        own = [b for b in arm_backends(arm, config, backends) if fits(b, request)]
        alt = [b for b in arm_backends(other, config, backends) if fits(b, request)]

        ordered = []
        for group in (
            [b for b in own if b.healthy],
            [b for b in alt if b.healthy],
            [b for b in own if not b.healthy],
            [b for b in alt if not b.healthy],
        ):
            for b in group:
                if all(b.name != seen.name for seen, _ in ordered):
                    ordered.append((b, arm if any(b is o for o in own) else other))
        if not ordered:
            return Rejection(503, "ab_split: no backend fits this request")

        decision = Decision(reason="ab:%s:%s" % (config.experiment, arm))
        for b, which in ordered:
            model = config.models[which]
            decision.targets.append(Target(b.name, model if model and model in b.models else None))
        decision.label("ab-experiment", config.experiment).label("ab-arm", arm)
        decision.label("ab-bucket", str(bucket)).label("ab-key", key_kind)
        if ordered[0][1] != arm:
            decision.label("ab-degraded", "true")
        return decision
