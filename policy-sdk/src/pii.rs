//! PII detection shared by the policy runtime (`pii.detect` import) and `MockHost`:
//! emails, phone numbers, Luhn-checked card numbers, US SSNs, mod-97-checked IBANs,
//! IPv4/IPv6 addresses and common API-key shapes, reported as sorted byte spans.

use regex::Regex;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

/// The kind of personal or secret data a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    CreditCard,
    UsSsn,
    Iban,
    IpAddress,
    ApiKey,
}

impl PiiKind {
    /// Stable lowercase name (`email`, `phone`, `credit-card`, `us-ssn`, `iban`, `ip-address`, `api-key`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CreditCard => "credit-card",
            PiiKind::UsSsn => "us-ssn",
            PiiKind::Iban => "iban",
            PiiKind::IpAddress => "ip-address",
            PiiKind::ApiKey => "api-key",
        }
    }
}

/// One detected span: `text[start..end]` (byte offsets) holds data of `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

type Validator = fn(&str) -> bool;

/// What a text must contain for a pattern to have any chance of matching (a literal
/// every match holds, ASCII digits counted over the whole text, the longest run of them,
/// and a few adjacencies every match has); texts without it skip that pattern's scan.
/// Most prose has no `@`, `+`, `_`, key prefix or colons, and too few digits, in the
/// wrong places, for the numeric patterns.
#[derive(Clone, Copy)]
struct Needs {
    /// Empty: none.
    literal: &'static str,
    colons: usize,
    digits: usize,
    digit_run: usize,
    /// An uppercase ASCII letter right before a digit (`[A-Z][0-9]`).
    upper_digit: bool,
    /// A digit, a dot, a digit (`[0-9]\.[0-9]`).
    dotted_digits: bool,
}

impl Needs {
    const NOTHING: Needs = Needs {
        literal: "",
        colons: 0,
        digits: 0,
        digit_run: 0,
        upper_digit: false,
        dotted_digits: false,
    };

    const fn literal(literal: &'static str) -> Needs {
        Needs {
            literal,
            ..Needs::NOTHING
        }
    }

    const fn digits(digits: usize, digit_run: usize) -> Needs {
        Needs {
            digits,
            digit_run,
            ..Needs::NOTHING
        }
    }
}

/// The facts `Needs` is checked against, gathered in one pass over the text (digit
/// chunks only: the rest is skipped 32 bytes at a time).
#[derive(Debug, PartialEq, Eq)]
struct Traits {
    /// Up to two.
    colons: usize,
    digits: usize,
    digit_run: usize,
    upper_digit: bool,
    dotted_digits: bool,
}

impl Traits {
    fn of(bytes: &[u8]) -> Self {
        let mut t = Traits {
            colons: memchr::memchr_iter(b':', bytes).take(2).count(),
            digits: 0,
            digit_run: 0,
            upper_digit: false,
            dotted_digits: false,
        };
        let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
        let mut run = 0;
        for (c, chunk) in bytes.chunks(32).enumerate() {
            // The test vectorizes; most chunks of prose hold no digit.
            if !chunk.iter().fold(false, |any, b| any | b.is_ascii_digit()) {
                run = 0;
                continue;
            }
            for (j, b) in chunk.iter().enumerate() {
                if !b.is_ascii_digit() {
                    run = 0;
                    continue;
                }
                let i = c * 32 + j;
                t.digits += 1;
                run += 1;
                t.digit_run = t.digit_run.max(run);
                t.upper_digit |= i > 0 && at(i - 1).is_ascii_uppercase();
                t.dotted_digits |= at(i + 1) == b'.' && at(i + 2).is_ascii_digit();
            }
        }
        t
    }

    /// Whether `bytes` (the text these are the traits of) may hold a match.
    fn allow(&self, needs: Needs, bytes: &[u8]) -> bool {
        self.colons >= needs.colons
            && self.digits >= needs.digits
            && self.digit_run >= needs.digit_run
            && (self.upper_digit || !needs.upper_digit)
            && (self.dotted_digits || !needs.dotted_digits)
            && (needs.literal.is_empty()
                || memchr::memmem::find(bytes, needs.literal.as_bytes()).is_some())
    }
}

struct Pattern {
    kind: PiiKind,
    regex: Regex,
    validate: Validator,
    needs: Needs,
}

/// Patterns in priority order (kind, regex, validator, the validator's name in
/// `policy-sdk/pii/patterns.json`, prefilter): on equal start and length the earlier one
/// wins. The Python and JavaScript SDKs read the same table from that file; a test keeps
/// the two equal.
const SOURCES: &[(PiiKind, &str, Validator, &str, Needs)] = &[
    (
        PiiKind::ApiKey,
        r"sk-ant-[A-Za-z0-9_\-]{20,}",
        always,
        "none",
        Needs::literal("sk-ant-"),
    ),
    (
        PiiKind::ApiKey,
        r"sk-(?:proj-)?[A-Za-z0-9_\-]{20,}",
        always,
        "none",
        Needs::literal("sk-"),
    ),
    (
        PiiKind::ApiKey,
        r"AKIA[0-9A-Z]{16}",
        always,
        "none",
        Needs::literal("AKIA"),
    ),
    (
        PiiKind::ApiKey,
        r"gh[pousr]_[A-Za-z0-9]{36,}",
        always,
        "none",
        Needs::literal("_"),
    ),
    (
        PiiKind::ApiKey,
        r"xox[bpars]-[A-Za-z0-9\-]{10,}",
        always,
        "none",
        Needs::literal("xox"),
    ),
    (
        PiiKind::ApiKey,
        r"AIza[0-9A-Za-z_\-]{35}",
        always,
        "none",
        Needs::literal("AIza"),
    ),
    (
        PiiKind::Email,
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
        always,
        "none",
        Needs::literal("@"),
    ),
    (
        PiiKind::Iban,
        r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
        iban_ok,
        "iban-mod97",
        // `[A-Z]{2}[0-9]{2}`.
        Needs {
            upper_digit: true,
            ..Needs::digits(2, 2)
        },
    ),
    (
        PiiKind::UsSsn,
        r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
        ssn_ok,
        "us-ssn",
        Needs::digits(9, 4),
    ),
    (
        PiiKind::CreditCard,
        r"[0-9](?:[ \-]?[0-9]){12,18}",
        card_ok,
        "luhn",
        Needs::digits(13, 1),
    ),
    (
        PiiKind::Phone,
        r"(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{3}\)[ .\-]?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}",
        always,
        "none",
        Needs::digits(10, 4),
    ),
    (
        PiiKind::Phone,
        r"\+[0-9]{1,3}(?:[ .\-]?[0-9]{2,4}){2,5}",
        phone_intl_ok,
        "phone-intl-digits",
        // `phone_intl_ok` wants 8 digits.
        Needs {
            literal: "+",
            ..Needs::digits(8, 1)
        },
    ),
    (
        PiiKind::IpAddress,
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        ipv4_ok,
        "ipv4",
        Needs {
            dotted_digits: true,
            ..Needs::digits(4, 1)
        },
    ),
    (
        PiiKind::IpAddress,
        r"[0-9A-Fa-f:]{2,39}",
        ipv6_ok,
        "ipv6",
        // `ipv6_ok` wants two colons.
        Needs {
            colons: 2,
            ..Needs::NOTHING
        },
    ),
];

fn patterns() -> &'static [Pattern] {
    static PATTERNS: OnceLock<Vec<Pattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        SOURCES
            .iter()
            .filter_map(|(kind, src, validate, _, needs)| {
                Regex::new(src).ok().map(|regex| Pattern {
                    kind: *kind,
                    regex,
                    validate: *validate,
                    needs: *needs,
                })
            })
            .collect()
    })
}

fn always(_: &str) -> bool {
    true
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// Luhn checksum over 13–19 digits, rejecting runs of one repeated digit.
fn card_ok(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    // Separators, if any, must be consistent (all spaces or all dashes).
    if s.contains(' ') && s.contains('-') {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// US SSN area/group/serial rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_ok(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// ISO 13616 mod-97 check on 15–34 alphanumerics.
fn iban_ok(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(compact[..4].iter());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// International numbers need 8–15 digits in total.
fn phone_intl_ok(s: &str) -> bool {
    (8..=15).contains(&digits(s).len())
}

fn ipv4_ok(s: &str) -> bool {
    s.split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')))
}

/// Valid IPv6 text with at least three groups (so `12:30` or `a::b` stay prose).
fn ipv6_ok(s: &str) -> bool {
    s.matches(':').count() >= 2
        && s.split(':').filter(|g| !g.is_empty()).count() >= 3
        && s.parse::<Ipv6Addr>().is_ok()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A candidate must not continue a word, number or dotted sequence on either side
/// (so `1.2.3.4.5` or `v2024-01-15-0001` are not read as an IP or SSN).
fn bounded(text: &[u8], start: usize, end: usize, kind: PiiKind) -> bool {
    let before = start.checked_sub(1).and_then(|i| text.get(i)).copied();
    let after = text.get(end).copied();
    let joins = |b: u8| is_word(b) || matches!(b, b'-' | b'+' | b'/');
    let dotted_num = |b: Option<u8>, next: Option<u8>| {
        b == Some(b'.') && next.is_some_and(|n| n.is_ascii_alphanumeric())
    };
    if before.is_some_and(joins) || after.is_some_and(joins) {
        // Emails may follow punctuation only; word characters around them are joined.
        return false;
    }
    if before == Some(b'.') && start >= 2 && text[start - 2].is_ascii_alphanumeric() {
        return false;
    }
    let after_next = text.get(end + 1).copied();
    if kind != PiiKind::Email && dotted_num(after, after_next) {
        return false;
    }
    if matches!(kind, PiiKind::IpAddress) && (before == Some(b':') || after == Some(b':')) {
        return false;
    }
    true
}

/// Finds PII in `text`; matches are sorted by start and never overlap (the earliest,
/// then longest, then highest-priority candidate wins).
pub fn detect(text: &str) -> Vec<PiiMatch> {
    scan(text, Some(&Traits::of(text.as_bytes())))
}

/// [`detect`], skipping the patterns `traits` rules out (none without them).
fn scan(text: &str, traits: Option<&Traits>) -> Vec<PiiMatch> {
    let bytes = text.as_bytes();
    let mut candidates: Vec<(usize, usize, usize, PiiKind)> = Vec::new();
    for (priority, p) in patterns().iter().enumerate() {
        if traits.is_some_and(|t| !t.allow(p.needs, bytes)) {
            continue;
        }
        for m in p.regex.find_iter(text) {
            let (start, mut end) = (m.start(), m.end());
            // A sentence-ending dot is not part of an email's domain.
            while p.kind == PiiKind::Email && bytes.get(end - 1) == Some(&b'.') {
                end -= 1;
            }
            let span = &text[start..end];
            if bounded(bytes, start, end, p.kind) && (p.validate)(span) {
                candidates.push((start, end, priority, p.kind));
            }
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut out: Vec<PiiMatch> = Vec::new();
    for (start, end, _, kind) in candidates {
        if out.last().is_none_or(|last| start >= last.end) {
            out.push(PiiMatch { kind, start, end });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        detect(text)
            .into_iter()
            .map(|m| (m.kind, &text[m.start..m.end]))
            .collect()
    }

    /// `policy-sdk/pii/fixtures.json`: texts and the findings every mock host (Rust,
    /// Python, JavaScript) and the runtime's `pii.detect` must report.
    #[test]
    fn shared_fixtures() {
        let fixtures: serde_json::Value =
            serde_json::from_str(include_str!("../pii/fixtures.json")).unwrap_or_default();
        let cases = fixtures["cases"].as_array().cloned().unwrap_or_default();
        assert!(cases.len() >= 30, "fixtures missing");
        let mut actual = Vec::new();
        for case in &cases {
            let text = case["text"].as_str().unwrap_or_default();
            let findings: Vec<serde_json::Value> = detect(text)
                .iter()
                .map(|m| {
                    serde_json::json!({"kind": m.kind.as_str(), "start": m.start, "end": m.end,
                        "match": &text[m.start..m.end]})
                })
                .collect();
            actual.push(serde_json::json!({"text": text, "findings": findings}));
        }
        assert!(
            actual == cases,
            "detect() differs from pii/fixtures.json; it reports:\n{}",
            serde_json::to_string_pretty(&actual).unwrap_or_default()
        );
    }

    /// `policy-sdk/pii/patterns.json` (what the Python and JavaScript SDKs compile) lists
    /// exactly this detector's patterns, in order.
    #[test]
    fn shared_patterns() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../pii/patterns.json")).unwrap_or_default();
        let listed: Vec<(String, String, String)> = file["patterns"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                        (field("kind"), field("regex"), field("check"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ours: Vec<(String, String, String)> = SOURCES
            .iter()
            .map(|(kind, regex, _, check, _)| {
                (
                    kind.as_str().to_owned(),
                    (*regex).to_owned(),
                    (*check).to_owned(),
                )
            })
            .collect();
        assert_eq!(listed, ours);
        for check in ours.iter().map(|(_, _, c)| c) {
            assert!(file["checks"][check].is_string(), "{check} undocumented");
        }
    }

    #[test]
    fn email() {
        assert_eq!(
            kinds("mail bob.smith+x@example.co.uk."),
            vec![(PiiKind::Email, "bob.smith+x@example.co.uk")]
        );
    }

    #[test]
    fn phones() {
        assert_eq!(
            kinds("call (555) 123-4567 or +44 20 7946 0958"),
            vec![
                (PiiKind::Phone, "(555) 123-4567"),
                (PiiKind::Phone, "+44 20 7946 0958")
            ]
        );
        assert_eq!(
            kinds("555.123.4567"),
            vec![(PiiKind::Phone, "555.123.4567")]
        );
    }

    #[test]
    fn credit_cards_are_luhn_checked() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 ok"),
            vec![(PiiKind::CreditCard, "4111 1111 1111 1111")]
        );
        assert_eq!(
            kinds("card 5500-0000-0000-0004"),
            vec![(PiiKind::CreditCard, "5500-0000-0000-0004")]
        );
        assert!(kinds("order 4111111111111112 shipped").is_empty());
        assert!(kinds("0000000000000000").is_empty());
    }

    #[test]
    fn ssn_rules() {
        assert_eq!(
            kinds("ssn 123-45-6789"),
            vec![(PiiKind::UsSsn, "123-45-6789")]
        );
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(kinds(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn iban_mod97() {
        assert_eq!(
            kinds("pay DE89 3704 0044 0532 0130 00 now"),
            vec![(PiiKind::Iban, "DE89 3704 0044 0532 0130 00")]
        );
        assert_eq!(
            kinds("GB82WEST12345698765432"),
            vec![(PiiKind::Iban, "GB82WEST12345698765432")]
        );
        assert!(kinds("DE88 3704 0044 0532 0130 00").is_empty());
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            kinds("host 192.168.1.20."),
            vec![(PiiKind::IpAddress, "192.168.1.20")]
        );
        assert_eq!(
            kinds("v6 2001:db8::8a2e:370:7334 up"),
            vec![(PiiKind::IpAddress, "2001:db8::8a2e:370:7334")]
        );
        assert!(kinds("999.1.1.1").is_empty());
        assert!(kinds("at 12:30:45 today").is_empty());
    }

    #[test]
    fn api_keys() {
        let text = "keys sk-ant-api03-abcdefghijklmnopqrstuv AKIAIOSFODNN7EXAMPLE \
                    ghp_abcdefghijklmnopqrstuvwxyz0123456789 xoxb-1234567890-abc \
                    AIzaSyA1234567890abcdefghijklmnopqrstuv sk-proj-ABCDEFGHIJKLMNOPQRSTUV";
        let found = kinds(text);
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found.iter().all(|(k, _)| *k == PiiKind::ApiKey));
        assert_eq!(found[0].1, "sk-ant-api03-abcdefghijklmnopqrstuv");
    }

    #[test]
    fn false_positives() {
        for text in [
            "order #123456789 shipped 2024-01-15",
            "version 1.2.3 and 10.0.19045.2965",
            "meeting at 10:30, room 12-34",
            "ORD-2024-000123 invoice 20240115",
            "isbn 978-3-16-148410-0",
            "the task-force met",
            "price 1,234,567.89 USD",
        ] {
            assert!(detect(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn sorted_and_non_overlapping() {
        let text = "a@b.io 123-45-6789 10.0.0.1 a@b.io";
        let found = detect(text);
        assert_eq!(found.len(), 4);
        assert!(found.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn traits_of_a_text() {
        let t = Traits::of(b"GB82 at 10.0.0.1, +44 (0) 20 7946 0958 a@b:c:d");
        let want = Traits {
            colons: 2,
            digits: 20,
            digit_run: 4,
            upper_digit: true,
            dotted_digits: true,
        };
        assert_eq!(t, want);
        // Digits split across the 32-byte chunks the scan skips by still count as a run.
        let mut text = vec![b'x'; 30];
        text.extend_from_slice(b"1234567");
        let t = Traits::of(&text);
        assert_eq!((t.digits, t.digit_run, t.upper_digit), (7, 7, false));
    }

    #[test]
    fn skipping_patterns_never_changes_the_findings() {
        let prose = "Please summarise the quarterly figures for the northern region and \
                     compare them with the previous year, noting any change above 5 percent. ";
        let texts = [
            prose.repeat(8),
            format!("{prose} call 555-123-4567 or +1 (415) 555-0100, ssn 123-45-6789"),
            format!("{prose} card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00"),
            "GB82WEST12345698765432 and 10.0.0.1 and 2001:db8::1 and a@b.io".to_owned(),
            "+44 20 7946 0958 x +1 2 3 version 1.2 at 12:30 in 2024 AB12".to_owned(),
            "sk-ant-api03-abcdefghijklmnopqrstuv AKIAIOSFODNN7EXAMPLE 1 xoxb-1234567890-abc \
             ghp_abcdefghijklmnopqrstuvwxyz0123456789 AIzaSyA1234567890abcdefghijklmnopqrstuv"
                .to_owned(),
            "123456789012 12345678 1234 99.1 A1 +1234567 x:y:z".to_owned(),
        ];
        for text in &texts {
            assert_eq!(detect(text), scan(text, None), "{text}");
        }
        assert!(!detect(&texts[1]).is_empty() && !detect(&texts[2]).is_empty());
    }

    #[test]
    fn non_ascii_text_is_safe() {
        let text = "café ünïcode — bob@exämple.com 🙂 123-45-6789";
        let found = detect(text);
        assert!(
            found
                .iter()
                .all(|m| text.is_char_boundary(m.start) && text.is_char_boundary(m.end))
        );
        assert!(found.iter().any(|m| m.kind == PiiKind::UsSsn));
    }
}
