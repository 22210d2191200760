//! Text for log lines and error messages: client- and guest-controlled text made safe for
//! one log line (control characters escaped: no forged lines; length capped: no log
//! amplification), and an error with its causes.

use std::borrow::Cow;
use std::fmt::Write;

/// `err` and its causes, joined by ": " (a library's own text often does not say what went
/// wrong: tokio-postgres's "db error", reqwest's "error sending request").
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `s` with control characters escaped as `\n`, `\r`, `\t` or `\u{..}`, cut at a char
/// boundary so the escaped text is at most `max` bytes, then `…[+N bytes]` naming the
/// bytes of `s` left out. Borrowed when `s` is already clean and short.
pub fn sanitize(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(max.min(s.len()) + 16);
    let mut kept = 0;
    for (i, c) in s.char_indices() {
        let before = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
        if out.len() > max {
            out.truncate(before);
            break;
        }
        kept = i + c.len_utf8();
    }
    if kept < s.len() {
        let _ = write!(out, "…[+{} bytes]", s.len() - kept);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_short_text_is_borrowed() {
        assert!(matches!(sanitize("acme-1", 64), Cow::Borrowed("acme-1")));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            sanitize("a\nb\rc\td\u{1b}[31m\u{7f}", 64),
            "a\\nb\\rc\\td\\u{1b}[31m\\u{7f}"
        );
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_and_says_how_much_was_dropped() {
        assert_eq!(sanitize("abcdef", 4), "abcd…[+2 bytes]");
        // 'é' is two bytes: it does not fit in the third and fourth byte.
        assert_eq!(sanitize("abcé", 4), "abc…[+2 bytes]");
        // An escape is never split.
        assert_eq!(sanitize("abc\n", 4), "abc…[+1 bytes]");
        let huge = "x\n".repeat(1 << 20);
        let out = sanitize(&huge, 256);
        assert!(out.len() < 300, "{}", out.len());
        assert!(!out.contains('\n'));
    }
}
