"""PII kinds and the mock host's detector: the patterns of `policy-sdk/pii/patterns.json`
(packaged as `pii_patterns.json`) with the Rust detector's checks, boundary and overlap rules.
Spans are UTF-8 byte offsets, as the host's `pii.detect` import reports them."""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple


class PiiKind(enum.Enum):
    """The kind of personal or secret data a span holds (values: the stable names)."""

    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit-card"
    US_SSN = "us-ssn"
    IBAN = "iban"
    IP_ADDRESS = "ip-address"
    API_KEY = "api-key"


@dataclass(frozen=True)
class PiiMatch:
    """One finding: `text.encode()[start:end]` holds data of `kind`."""

    kind: PiiKind
    start: int
    end: int

    def text_of(self, text: str) -> str:
        """The matched part of `text` (offsets are UTF-8 bytes)."""
        return text.encode("utf-8")[self.start:self.end].decode("utf-8", errors="replace")


def _digits(s: str) -> List[int]:
    return [ord(c) - 48 for c in s if "0" <= c <= "9"]


def _luhn(s: str) -> bool:
    d = _digits(s)
    if not 13 <= len(d) <= 19 or all(x == d[0] for x in d):
        return False
    if " " in s and "-" in s:
        return False
    total = 0
    for i, x in enumerate(reversed(d)):
        if i % 2 == 1:
            x *= 2
            x = x - 9 if x > 9 else x
        total += x
    return total % 10 == 0


def _ssn(s: str) -> bool:
    parts = s.split("-")
    if len(parts) < 3:
        return False
    area, group, serial = parts[0], parts[1], parts[2]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _iban(s: str) -> bool:
    compact = [c for c in s if not c.isspace()]
    if not 15 <= len(compact) <= 34:
        return False
    rem = 0
    for c in compact[4:] + compact[:4]:
        if not c.isascii() or not c.isalnum():
            return False
        v = int(c, 36)
        rem = (rem * 100 + v) % 97 if v >= 10 else (rem * 10 + v) % 97
    return rem == 1


def _phone_intl(s: str) -> bool:
    return 8 <= len(_digits(s)) <= 15


def _ipv4(s: str) -> bool:
    for part in s.split("."):
        if not part.isascii() or not part.isdigit() or int(part) > 255:
            return False
        if len(part) != 1 and part.startswith("0"):
            return False
    return True


def _ipv6(s: str) -> bool:
    if s.count(":") < 2 or len([g for g in s.split(":") if g]) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


CHECKS: Dict[str, Callable[[str], bool]] = {
    "none": lambda s: True,
    "luhn": _luhn,
    "us-ssn": _ssn,
    "iban-mod97": _iban,
    "phone-intl-digits": _phone_intl,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
}

PATTERNS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pii_patterns.json")

_compiled: Optional[List[Tuple[PiiKind, "re.Pattern[bytes]", Callable[[str], bool]]]] = None


def load_patterns(path: str = PATTERNS_FILE) -> List[Tuple[PiiKind, "re.Pattern[bytes]", Callable[[str], bool]]]:
    """Compiles a patterns file (format of `policy-sdk/pii/patterns.json`), in priority order.

    Raises ValueError naming the file and the entry when it cannot be used.
    """
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)["patterns"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError("cannot read PII patterns from %s: %s" % (path, e)) from None
    out = []
    for i, row in enumerate(rows):
        try:
            kind = PiiKind(row["kind"])
            regex = re.compile(row["regex"].encode("ascii"))
            check = CHECKS[row["check"]]
        except (KeyError, ValueError, TypeError, AttributeError, re.error) as e:
            raise ValueError("PII pattern %d in %s is not usable: %r" % (i, path, e)) from None
        out.append((kind, regex, check))
    return out


def _is_word(b: int) -> bool:
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b == 95


def _alnum(b: Optional[int]) -> bool:
    return b is not None and b != 95 and _is_word(b)


def _bounded(text: bytes, start: int, end: int, kind: PiiKind) -> bool:
    """The boundary rule of patterns.json: a candidate must not continue a word, number
    or dotted sequence on either side."""
    before = text[start - 1] if start > 0 else None
    after = text[end] if end < len(text) else None
    after_next = text[end + 1] if end + 1 < len(text) else None

    def joins(b: Optional[int]) -> bool:
        return b is not None and (_is_word(b) or b in b"-+/")

    if joins(before) or joins(after):
        return False
    if before == 0x2E and start >= 2 and _alnum(text[start - 2]):
        return False
    if kind != PiiKind.EMAIL and after == 0x2E and _alnum(after_next):
        return False
    if kind == PiiKind.IP_ADDRESS and (before == 0x3A or after == 0x3A):
        return False
    return True


def detect(text: str) -> List[PiiMatch]:
    """PII in `text`, sorted by start, never overlapping (the earliest, then longest, then
    highest-priority candidate wins), as the host's `pii.detect`."""
    global _compiled
    if _compiled is None:
        _compiled = load_patterns()
    data = text.encode("utf-8")
    candidates = []
    for priority, (kind, regex, check) in enumerate(_compiled):
        for m in regex.finditer(data):
            start, end = m.start(), m.end()
            while kind == PiiKind.EMAIL and end > start and data[end - 1] == 0x2E:
                end -= 1
            span = data[start:end].decode("utf-8", errors="replace")
            if _bounded(data, start, end, kind) and check(span):
                candidates.append((start, -end, priority, kind))
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    out: List[PiiMatch] = []
    for start, neg_end, _, kind in candidates:
        if not out or start >= out[-1].end:
            out.append(PiiMatch(kind, start, -neg_end))
    return out
