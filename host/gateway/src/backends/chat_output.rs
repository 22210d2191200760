//! OpenAI's completion and chunk JSON, built by the translating connectors (Anthropic,
//! Gemini) from what their upstream answered: the client gets OpenAI's shapes (key order,
//! `null`s and all) with tool calls, logprobs and every choice, as a `raw` completion or
//! as [`StreamEvent::Chunk`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ChatResponse, StreamEvent, Usage};
use serde::Serialize;

/// One tool call of a reply, its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One choice of a whole reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct OutChoice {
    pub text: String,
    pub tool_calls: Vec<OutToolCall>,
    pub logprobs: Option<Logprobs>,
    /// OpenAI vocabulary.
    pub finish_reason: String,
}

/// OpenAI's `logprobs` of a choice or chunk: `{"content": [...], "refusal": null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Logprobs {
    pub content: Vec<TokenLogprob>,
    pub refusal: Option<String>,
}

/// One generated token with its log probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

/// Seconds since the epoch (`created`).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A completion id for an upstream that gives none: `chatcmpl-` and 24 hex digits, unique
/// in this process.
pub(crate) fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-{:016x}{:08x}", nanos as u64, n as u32)
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<CompletionChoice<'a>>,
    usage: WireUsage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: usize,
    message: Message<'a>,
    logprobs: &'a Option<Logprobs>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<FullToolCall<'a>>,
}

#[derive(Serialize)]
struct FullToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FullFunction<'a>,
}

#[derive(Serialize)]
struct FullFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// The whole reply as OpenAI's `chat.completion` JSON (`raw`), with the first choice's
/// text and finish reason for the gateway's own bookkeeping.
pub(crate) fn completion(
    id: &str,
    model: String,
    choices: &[OutChoice],
    usage: Usage,
) -> ChatResponse {
    let body = Completion {
        id,
        object: "chat.completion",
        created: now_secs(),
        model: &model,
        choices: choices
            .iter()
            .enumerate()
            .map(|(index, c)| CompletionChoice {
                index,
                message: Message {
                    role: "assistant",
                    content: (!c.text.is_empty() || c.tool_calls.is_empty())
                        .then_some(c.text.as_str()),
                    refusal: None,
                    tool_calls: c
                        .tool_calls
                        .iter()
                        .map(|t| FullToolCall {
                            id: &t.id,
                            kind: "function",
                            function: FullFunction {
                                name: &t.name,
                                arguments: &t.arguments,
                            },
                        })
                        .collect(),
                },
                logprobs: &c.logprobs,
                finish_reason: &c.finish_reason,
            })
            .collect(),
        usage: usage.into(),
    };
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let first = choices.first();
    ChatResponse {
        content: first.map(|c| c.text.clone()).unwrap_or_default(),
        finish_reason: first.map_or_else(|| "stop".to_owned(), |c| c.finish_reason.clone()),
        model,
        usage,
        raw: Some(raw.into()),
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    /// `Some(None)`: `"usage": null` (the client asked for usage; it comes last).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<WireUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<&'a Logprobs>,
    finish_reason: Option<&'a str>,
}

/// One choice's delta; absent keys are left out, as OpenAI does.
#[derive(Serialize, Default)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// `Some(None)`: `"refusal": null` (the opening delta).
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl<'a> Delta<'a> {
    /// The opening delta of a choice: `{"role":"assistant","content":"","refusal":null}`.
    pub fn opening() -> Self {
        Self {
            role: Some("assistant"),
            content: Some(""),
            refusal: Some(None),
            tool_calls: None,
        }
    }

    /// More text.
    pub fn text(text: &'a str) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    /// The start of tool call `index` (its id, name and first arguments).
    pub fn tool_call_start(index: u32, id: &'a str, name: &'a str, arguments: &'a str) -> Self {
        Self {
            tool_calls: Some([ToolCallDelta {
                index,
                id: Some(id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(name),
                    arguments,
                },
            }]),
            ..Self::default()
        }
    }

    /// More arguments of tool call `index`.
    pub fn tool_call_arguments(index: u32, arguments: &'a str) -> Self {
        Self {
            tool_calls: Some([ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments,
                },
            }]),
            ..Self::default()
        }
    }

    /// Bytes of generated output this delta carries (text and arguments).
    fn generated_bytes(&self) -> usize {
        let args = self
            .tool_calls
            .as_ref()
            .map_or(0, |[t]| t.function.arguments.len());
        self.content.map_or(0, str::len) + args
    }
}

/// Writes one streamed reply's `chat.completion.chunk`s: same id, model and `created`
/// on each, `usage` null on each when the client asked for usage, the usage chunk last.
#[derive(Debug, Clone)]
pub(crate) struct ChunkWriter {
    pub id: String,
    pub model: String,
    created: u64,
    include_usage: bool,
}

impl ChunkWriter {
    pub fn new(id: String, model: String, include_usage: bool) -> Self {
        Self {
            id,
            model,
            created: now_secs(),
            include_usage,
        }
    }

    fn event(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<WireUsage>) -> StreamEvent {
        let usage_only = choices.is_empty();
        let text_bytes = choices.iter().map(|c| c.delta.generated_bytes()).sum();
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage: if self.include_usage || usage.is_some() {
                Some(usage)
            } else {
                None
            },
        };
        StreamEvent::Chunk {
            json: serde_json::to_string(&chunk).unwrap_or_default(),
            text_bytes,
            usage_only,
        }
    }

    /// A chunk carrying `delta` (and `logprobs`) for choice `index`.
    pub fn delta(&self, index: u32, delta: Delta<'_>, logprobs: Option<&Logprobs>) -> StreamEvent {
        self.event(
            vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: None,
            }],
            None,
        )
    }

    /// The chunk ending choice `index` with `reason` (an empty delta).
    pub fn finish(&self, index: u32, reason: &str) -> StreamEvent {
        self.event(
            vec![ChunkChoice {
                index,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(reason),
            }],
            None,
        )
    }

    /// The last events: the usage chunk (passed to the client when it asked) and the usage
    /// for the gateway's accounting.
    pub fn usage(&self, usage: Usage) -> [StreamEvent; 2] {
        [
            self.event(Vec::new(), Some(usage.into())),
            StreamEvent::Usage(usage),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn completions_have_openais_shape() {
        let response = completion(
            "msg_1",
            "claude".into(),
            &[OutChoice {
                text: String::new(),
                tool_calls: vec![OutToolCall {
                    id: "toolu_1".into(),
                    name: "w".into(),
                    arguments: "{\"c\":\"P\"}".into(),
                }],
                logprobs: None,
                finish_reason: "tool_calls".into(),
            }],
            Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
            },
        );
        let raw = String::from_utf8(response.raw.unwrap().to_vec()).unwrap();
        let created = now_secs();
        let want = format!(
            r#"{{"id":"msg_1","object":"chat.completion","created":{created},"model":"claude","choices":[{{"index":0,"message":{{"role":"assistant","content":null,"refusal":null,"tool_calls":[{{"id":"toolu_1","type":"function","function":{{"name":"w","arguments":"{{\"c\":\"P\"}}"}}}}]}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
        );
        assert_eq!(raw, want);
        assert_eq!(response.finish_reason, "tool_calls");
    }

    #[test]
    fn chunks_have_openais_shape() {
        let w = ChunkWriter::new("id1".into(), "m".into(), true);
        let json = |e: StreamEvent| match e {
            StreamEvent::Chunk { json, .. } => json,
            other => panic!("{other:?}"),
        };
        let c = w.created;
        assert_eq!(
            json(w.delta(0, Delta::opening(), None)),
            format!(
                r#"{{"id":"id1","object":"chat.completion.chunk","created":{c},"model":"m","choices":[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        );
        assert_eq!(
            json(w.delta(0, Delta::tool_call_start(0, "t", "w", ""), None)),
            format!(
                r#"{{"id":"id1","object":"chat.completion.chunk","created":{c},"model":"m","choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"t","type":"function","function":{{"name":"w","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        );
        assert_eq!(
            json(w.finish(0, "stop")),
            format!(
                r#"{{"id":"id1","object":"chat.completion.chunk","created":{c},"model":"m","choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
            )
        );
        let [usage, _] = w.usage(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
        });
        assert_eq!(
            json(usage),
            format!(
                r#"{{"id":"id1","object":"chat.completion.chunk","created":{c},"model":"m","choices":[],"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}}}"#
            )
        );
        let quiet = ChunkWriter::new("id1".into(), "m".into(), false);
        assert!(!json(quiet.delta(0, Delta::text("x"), None)).contains("usage"));
    }
}
