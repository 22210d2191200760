//! The upstream HTTP plumbing every cloud connector shares: the client, endpoint URLs,
//! sending with a first-byte timeout, non-2xx statuses as [`BackendError::Status`], reply
//! bodies read up to a cap, and an upstream SSE body as a stream of [`StreamEvent`]s.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::sse::{SseEvent, SseParser};
use super::{BackendError, ChatStream, ProviderError, StreamEvent};
use crate::config::Timeouts;

/// `{base_url}/{path}`, parsed once: each request clones it instead of parsing it.
pub(crate) fn endpoint(base_url: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{base_url}/{path}"))
        .map_err(|e| format!("base_url {base_url:?}: {e}"))
}

/// The HTTP client every cloud connector uses: rustls, no redirects, TCP_NODELAY,
/// the backend's connect and total timeouts.
pub(crate) fn http_client(timeouts: &Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
}

/// Sends a prepared request, waiting at most `first_byte` for the response headers, and
/// maps a non-2xx status to [`BackendError::Status`].
pub(crate) async fn send(
    builder: reqwest::RequestBuilder,
    first_byte: std::time::Duration,
) -> Result<reqwest::Response, BackendError> {
    let response = tokio::time::timeout(first_byte, builder.send())
        .await
        .map_err(|_| BackendError::Timeout("response headers"))?
        .map_err(|e| BackendError::from_reqwest(e, "response headers"))?;
    check_status(response).await
}

/// Turns a non-2xx response into [`BackendError::Status`] with the upstream's message.
pub(crate) async fn check_status(
    response: reqwest::Response,
) -> Result<reqwest::Response, BackendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after_s = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = error_body(response).await;
    Err(BackendError::Status {
        status: status.as_u16(),
        message: upstream_message(&body),
        retry_after_s,
        provider: provider_error(&body).map(Box::new),
    })
}

/// The most of a reply body the gateway reads: a longer one is a protocol error.
pub(crate) const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

/// The most of an error body the gateway reads (the rest is not read).
pub(crate) const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Reads a reply body of at most `cap` bytes, chunk by chunk; a longer one (by its
/// `content-length` or as it arrives) is [`BackendError::Protocol`], so the next target
/// is tried.
pub(crate) async fn reply_body(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, BackendError> {
    let too_long = || BackendError::Protocol(format!("reply body larger than {cap} bytes"));
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_long());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BackendError::from_reqwest(e, "response body"))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first [`MAX_ERROR_BYTES`] of an error body (whatever arrived, on a read error).
async fn error_body(mut response: reqwest::Response) -> Bytes {
    let mut body = bytes::BytesMut::new();
    while body.len() < MAX_ERROR_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body.freeze()
}

/// The provider's error type and code from an error body: OpenAI's and Anthropic's
/// `error.type` / `error.code`, Gemini's `error.status`. Each is cut to 64 characters of
/// `A-Z a-z 0-9 _ - .` (they travel into the client's error body).
pub(crate) fn provider_error(body: &[u8]) -> Option<ProviderError> {
    let parsed: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = parsed.get("error")?;
    let text = |v: Option<&serde_json::Value>| {
        let s = match v? {
            serde_json::Value::String(s) => s.clone(),
            _ => return None,
        };
        let clean: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
            .take(64)
            .collect();
        (!clean.is_empty()).then_some(clean)
    };
    let kind = text(error.get("type")).or_else(|| text(error.get("status")));
    let code = text(error.get("code"));
    (kind.is_some() || code.is_some()).then_some(ProviderError { kind, code })
}

/// The `error.message` (or `message`) of an upstream error body, else its first 300 bytes.
pub(crate) fn upstream_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Inner>,
        message: Option<String>,
    }
    let parsed: Option<Outer> = serde_json::from_slice(body).ok();
    let msg = parsed
        .and_then(|o| o.error.and_then(|e| e.message).or(o.message))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let mut msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        msg.push_str("(empty body)");
    }
    msg
}

/// What a connector makes of one upstream SSE event.
pub(crate) enum Step {
    /// These events; the stream goes on.
    More(Vec<StreamEvent>),
    /// These events, then the stream ends (the provider's end marker).
    End(Vec<StreamEvent>),
}

/// A connector's translation of its upstream's SSE events into [`StreamEvent`]s.
pub(crate) trait Translate: Send + 'static {
    /// One upstream event.
    fn event(&mut self, event: &SseEvent) -> Result<Step, BackendError>;
    /// The body ended without an end marker: an error, unless the provider has none
    /// (Gemini), which then flushes what it holds.
    fn end_of_body(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        Err(BackendError::Protocol(
            "stream ended before its end marker".into(),
        ))
    }
}

/// Maps an upstream byte stream through an SSE parser and a connector's [`Translate`]
/// into [`StreamEvent`]s.
pub(crate) fn sse_events<S, T>(bytes: S, translate: T) -> ChatStream
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    T: Translate,
{
    struct State<S, T> {
        bytes: std::pin::Pin<Box<S>>,
        parser: SseParser,
        pending: VecDeque<Result<StreamEvent, BackendError>>,
        translate: T,
        done: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        parser: SseParser::new(),
        pending: VecDeque::new(),
        translate,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((ev, st));
            }
            if st.done {
                return None;
            }
            match st.bytes.next().await {
                None => {
                    st.done = true;
                    match st.translate.end_of_body() {
                        Ok(events) => st.pending.extend(events.into_iter().map(Ok)),
                        Err(e) => st.pending.push_back(Err(e)),
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(BackendError::from_reqwest(e, "stream body")), st));
                }
                Some(Ok(chunk)) => {
                    let events = match st.parser.push(&chunk) {
                        Ok(evs) => evs,
                        Err(e) => {
                            st.done = true;
                            return Some((Err(BackendError::Protocol(e.to_string())), st));
                        }
                    };
                    for ev in &events {
                        match st.translate.event(ev) {
                            Ok(Step::More(out)) => st.pending.extend(out.into_iter().map(Ok)),
                            Ok(Step::End(out)) => {
                                st.pending.extend(out.into_iter().map(Ok));
                                st.done = true;
                                break;
                            }
                            Err(e) => {
                                st.done = true;
                                st.pending.clear();
                                return Some((Err(e), st));
                            }
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_extracted_and_bounded() {
        assert_eq!(
            upstream_message(br#"{"error":{"message":"Rate limit","type":"x"}}"#),
            "Rate limit"
        );
        assert_eq!(upstream_message(&[b'a'; 1000]).len(), 300);
    }

    #[test]
    fn provider_error_type_and_code_are_kept() {
        let openai = provider_error(
            br#"{"error":{"message":"m","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        )
        .unwrap_or_default();
        assert_eq!(openai.kind.as_deref(), Some("invalid_request_error"));
        assert_eq!(openai.code.as_deref(), Some("context_length_exceeded"));
        let gemini =
            provider_error(br#"{"error":{"code":400,"message":"m","status":"INVALID_ARGUMENT"}}"#)
                .unwrap_or_default();
        assert_eq!(gemini.kind.as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(gemini.code, None);
        let hostile = provider_error(br#"{"error":{"type":"a\nb<script>"}}"#).unwrap_or_default();
        assert_eq!(hostile.kind.as_deref(), Some("abscript"));
        assert_eq!(provider_error(b"not json"), None);
    }
}
