//! Host side of the `pii.detect` import: finds PII byte spans in a text. Stand-in until
//! `policy_sdk::pii::detect` lands; same contract (sorted by start, non-overlapping).

use std::sync::OnceLock;

use regex::Regex;

/// Kinds the host reports, mirroring the WIT `pii-kind` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Email,
    Phone,
    CreditCard,
    UsSsn,
    Iban,
    IpAddress,
    ApiKey,
}

fn patterns() -> &'static [(Kind, Regex)] {
    static PATTERNS: OnceLock<Vec<(Kind, Regex)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let raw = [
            (
                Kind::Email,
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            ),
            (Kind::ApiKey, r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b"),
            (
                Kind::Iban,
                r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",
            ),
            (
                Kind::CreditCard,
                r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,4}\b",
            ),
            (Kind::UsSsn, r"\b\d{3}-\d{2}-\d{4}\b"),
            (Kind::IpAddress, r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            (
                Kind::Phone,
                r"\+?\(?\d{1,3}\)?[ .-]?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b",
            ),
        ];
        raw.into_iter()
            .filter_map(|(kind, re)| Regex::new(re).ok().map(|re| (kind, re)))
            .collect()
    })
}

/// PII spans in `text`, sorted by start, non-overlapping (earlier patterns win ties).
pub(crate) fn detect(text: &str) -> Vec<(Kind, usize, usize)> {
    let mut found: Vec<(Kind, usize, usize)> = Vec::new();
    for (kind, re) in patterns() {
        for m in re.find_iter(text) {
            let overlaps = found.iter().any(|(_, s, e)| m.start() < *e && *s < m.end());
            if !overlaps {
                found.push((*kind, m.start(), m.end()));
            }
        }
    }
    found.sort_by_key(|(_, s, _)| *s);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_email_and_ssn() {
        let text = "mail bob@example.com ssn 123-45-6789";
        let found = detect(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, Kind::Email);
        assert_eq!(&text[found[0].1..found[0].2], "bob@example.com");
        assert_eq!(found[1].0, Kind::UsSsn);
        assert!(detect("nothing here").is_empty());
    }
}
