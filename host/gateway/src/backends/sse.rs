//! Incremental server-sent-events parser for upstream streams (OpenAI, Anthropic, Gemini).

/// One SSE event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Upper bound on one buffered event; a longer one is a protocol error.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Feeds bytes in, takes complete events out. Handles `\n`, `\r\n` and `\r` line ends
/// and events split across chunks at any byte.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    has_data: bool,
}

/// The parser's buffer grew beyond [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSE event larger than {MAX_EVENT_BYTES} bytes")]
pub struct SseTooLarge;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                // A lone '\r' at the end may be the first half of "\r\n": wait for more.
                if b == b'\r' && i + 1 == self.buf.len() {
                    break;
                }
                let line = String::from_utf8_lossy(&self.buf[start..i]).into_owned();
                let skip = if b == b'\r' && self.buf.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                i += skip;
                start = i;
                if let Some(ev) = self.line(&line) {
                    out.push(ev);
                }
            } else {
                i += 1;
            }
        }
        self.buf.drain(..start);
        let pending: usize = self.buf.len() + self.data.iter().map(String::len).sum::<usize>();
        if pending > MAX_EVENT_BYTES {
            return Err(SseTooLarge);
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let ev = if self.has_data {
                Some(SseEvent {
                    event: self.event.take(),
                    data: self.data.join("\n"),
                })
            } else {
                None
            };
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return ev;
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push(value.to_owned());
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_at_every_byte() {
        let text = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\ndata: one\ndata: two\n\ndata:[DONE]\n\n";
        let mut p = SseParser::new();
        let mut events = Vec::new();
        for b in text.iter() {
            events.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn refuses_unbounded_events() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.push(&big), Err(SseTooLarge));
    }
}
