//! Text from clients, policies or upstreams made safe for one log line: control
//! characters escaped, length capped.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with control characters escaped (`\n`, `\r`, `\t`, `\u{..}`) and cut at a char
/// boundary to at most `max` bytes of the original, with `…[+N bytes]` naming what was cut.
/// Borrows when there is nothing to change.
pub fn sanitize(s: &str, max: usize) -> Cow<'_, str> {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let kept = &s[..end];
    if end == s.len() && !kept.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(kept.len() + 16);
    for c in kept.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    if end < s.len() {
        let _ = write!(out, "…[+{} bytes]", s.len() - end);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::sanitize;
    use std::borrow::Cow;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(sanitize("hello", 10), Cow::Borrowed("hello")));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            sanitize("a\nb\r\tc\u{1b}[31m\u{7f}", 100),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7f}"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        assert_eq!(sanitize("hello world", 5), "hello…[+6 bytes]");
        assert_eq!(sanitize("héllo", 2), "h…[+5 bytes]");
        assert_eq!(sanitize("", 0), "");
    }
}
