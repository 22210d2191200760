//! Host side of the `pii.detect` import: the shared detector `policy_sdk::pii`, so the
//! host, the SDK's mock host and native tests agree on every span.

pub(crate) use policy_sdk::pii::{PiiKind as Kind, detect};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_email_and_ssn_with_byte_spans() {
        let text = "mail bob@example.com ssn 123-45-6789";
        let found: Vec<policy_sdk::pii::PiiMatch> = detect(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].kind, Kind::Email);
        assert_eq!(&text[found[0].start..found[0].end], "bob@example.com");
        assert_eq!(found[1].kind, Kind::UsSsn);
        assert_eq!(&text[found[1].start..found[1].end], "123-45-6789");
        assert!(detect("nothing here").is_empty());
    }

    #[test]
    fn spans_are_bytes_after_multibyte_text() {
        let text = "héllo — bob@example.com";
        let found = detect(text);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].start..found[0].end], "bob@example.com");
        assert_eq!(Some(found[0].start), text.find("bob"));
    }
}
