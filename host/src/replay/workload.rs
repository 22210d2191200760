//! Replay workloads: the gateway's decision log ([`DecisionLogRecord`], one JSON object
//! per line) and OpenAI request bodies, both read from JSONL into
//! [`WorkloadRecord`]s with line-numbered errors.
//!
//! An input line is a decision-log record when it carries `"schema": "switchyard.decision.v1"`;
//! otherwise it is an OpenAI chat request body:
//!
//! ```json
//! {"model":"auto","messages":[{"role":"user","content":"hi"}],
//!  "tenant":"acme","metadata":{"feature":"chat"},"timestamp":"2026-01-05T09:30:00Z",
//!  "usage":{"prompt_tokens":12,"completion_tokens":40}}
//! ```
//!
//! `timestamp` is RFC 3339 or Unix milliseconds (number or digit string). A record without
//! one takes the previous record's time (the first: the start of the replay's first day).
//! Tenant: `tenant`, else `metadata.tenant`, else `user`, else `default` (as the gateway
//! reads headers and metadata). Labels: string, number and bool `metadata` entries and `user`.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::decision_log::{DECISION_LOG_SCHEMA, DecisionLogRecord, UsageRecord};
use crate::domain::{ChatMessage, Role};
use crate::http::wire::{RequestMessage, routing_inputs};
use crate::time;

/// One request to replay, whatever its source.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRecord {
    /// 1-based input line (synthetic: 1-based index).
    pub line: u64,
    pub id: String,
    /// Unix ms; `None` takes the previous record's time.
    pub timestamp_ms: Option<i64>,
    pub tenant: String,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub labels: BTreeMap<String, String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub streaming: bool,
    /// Observed (usage) or logged prompt tokens; `None`: the host estimate.
    pub prompt_tokens: Option<u32>,
    /// Observed completion tokens; `None`: `--output-ratio` × prompt tokens.
    pub completion_tokens: Option<u32>,
    /// PII kinds recorded by a content-free decision log; `None`: detect in `messages`.
    pub pii_kinds: Option<Vec<String>>,
    /// Synthetic task type (for the generator's own bookkeeping).
    pub task: Option<&'static str>,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

#[derive(Deserialize)]
struct SchemaProbe {
    #[serde(default)]
    schema: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiLine {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    messages: Vec<RequestMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    usage: Option<UsageRecord>,
}

/// A sample value the host PII detector recognises, per kind name.
pub fn pii_sample(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "email" => "jane.doe@example.com",
        "phone" => "+1 415-555-0134",
        "credit-card" => "4111 1111 1111 1111",
        "us-ssn" => "123-45-6789",
        "iban" => "DE89 3704 0044 0532 0130 00",
        "ip-address" => "192.168.10.24",
        "api-key" => "sk-proj-EXAMPLEexampleEXAMPLE0123",
        _ => return None,
    })
}

fn timestamp_ms(value: &serde_json::Value) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| format!("timestamp {n} is not a Unix time in ms")),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<i64>()
            .map_err(|e| format!("timestamp {s:?}: {e}")),
        serde_json::Value::String(s) => time::parse_rfc3339(s),
        other => Err(format!(
            "timestamp must be an RFC 3339 string or Unix ms, got {other}"
        )),
    }
}

fn from_openai(line: u64, body: OpenAiLine) -> Result<WorkloadRecord, String> {
    if body.messages.is_empty() {
        return Err("`messages` must not be empty".into());
    }
    let messages: Vec<_> = body
        .messages
        .into_iter()
        .map(RequestMessage::into_domain)
        .collect();
    let tenant = body.tenant.map(|t| ("tenant".to_owned(), t));
    let (tenant, labels) = routing_inputs(body.user, body.metadata, tenant);
    let timestamp_ms = body.timestamp.as_ref().map(timestamp_ms).transpose()?;
    let usage = body.usage.unwrap_or_default();
    Ok(WorkloadRecord {
        line,
        id: body.id.unwrap_or_else(|| format!("line-{line}")),
        timestamp_ms,
        tenant,
        model: body.model.unwrap_or_else(|| "auto".to_owned()),
        messages,
        labels,
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        temperature: body.temperature,
        streaming: body.stream.unwrap_or(false),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        pii_kinds: None,
        task: None,
    })
}

/// The placeholder message a content-free log record replays with.
pub fn placeholder_message(pii: &[String]) -> ChatMessage {
    let mut content = String::from("[content not logged]");
    for kind in pii {
        if let Some(sample) = pii_sample(kind) {
            content.push(' ');
            content.push_str(sample);
        }
    }
    ChatMessage {
        role: Role::User,
        content,
    }
}

fn from_log(line: u64, rec: DecisionLogRecord) -> Result<WorkloadRecord, String> {
    if rec.schema != DECISION_LOG_SCHEMA {
        return Err(format!(
            "unknown schema {:?} (expected {DECISION_LOG_SCHEMA:?})",
            rec.schema
        ));
    }
    let timestamp_ms = time::parse_rfc3339(&rec.timestamp)?;
    let (messages, pii_kinds) = match rec.messages {
        Some(m) if !m.is_empty() => (m, None),
        _ => (vec![placeholder_message(&rec.pii)], Some(rec.pii)),
    };
    let usage = rec.usage.unwrap_or_default();
    Ok(WorkloadRecord {
        line,
        id: rec.request_id,
        timestamp_ms: Some(timestamp_ms),
        tenant: rec.tenant,
        model: rec.model,
        messages,
        labels: rec.labels,
        max_tokens: rec.max_tokens,
        temperature: rec.temperature,
        streaming: rec.streaming,
        prompt_tokens: usage.prompt_tokens.or(Some(rec.prompt_tokens)),
        completion_tokens: usage.completion_tokens,
        pii_kinds,
        task: None,
    })
}

/// Parses one JSONL line (either format).
pub fn parse_line(line: u64, text: &str) -> Result<WorkloadRecord, LineError> {
    let err = |message: String| LineError { line, message };
    let probe: SchemaProbe =
        serde_json::from_str(text).map_err(|e| err(format!("not a JSON object: {e}")))?;
    if probe.schema.is_some() {
        let rec: DecisionLogRecord = serde_json::from_str(text)
            .map_err(|e| err(format!("invalid decision-log record: {e}")))?;
        from_log(line, rec).map_err(err)
    } else {
        let body: OpenAiLine = serde_json::from_str(text)
            .map_err(|e| err(format!("invalid OpenAI request body: {e}")))?;
        from_openai(line, body).map_err(err)
    }
}

/// Reads records from JSONL, one per non-blank line.
#[derive(Debug)]
pub struct JsonlReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<WorkloadRecord, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            let line = self.line;
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    let Ok(text) = std::str::from_utf8(&self.buf) else {
                        return Some(Err(LineError {
                            line,
                            message: "not UTF-8".into(),
                        }));
                    };
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(parse_line(line, text));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(LineError {
                        line,
                        message: format!("read error: {e}"),
                    }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::LoggedVerdict;
    use crate::domain::Target;

    #[test]
    fn openai_body_with_tenant_metadata_usage_and_time() {
        let line = r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],
            "metadata":{"tenant":"acme","feature":"chat","n":3,"obj":{}},"user":"bob",
            "timestamp":"2026-01-05T00:00:01Z","usage":{"prompt_tokens":12,"completion_tokens":40},
            "max_tokens":100,"extra_field":true}"#;
        let r = parse_line(7, &line.replace('\n', " ")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.tenant, "acme");
        assert_eq!(r.labels.get("feature").map(String::as_str), Some("chat"));
        assert_eq!(r.labels.get("n").map(String::as_str), Some("3"));
        assert_eq!(r.labels.get("user").map(String::as_str), Some("bob"));
        assert!(!r.labels.contains_key("tenant"));
        assert_eq!(r.prompt_tokens, Some(12));
        assert_eq!(r.completion_tokens, Some(40));
        assert_eq!(r.max_tokens, Some(100));
        assert_eq!(r.id, "line-7");
        let day = time::days_from_civil(2026, 1, 5);
        assert_eq!(r.timestamp_ms, Some(day * time::DAY_MS + 1000));
    }

    #[test]
    fn tenant_field_and_unix_ms() {
        let r = parse_line(
            1,
            r#"{"model":"m","messages":[{"role":"system","content":"x"}],"tenant":"t1","user":"u","timestamp":1767225600000}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.tenant, "t1");
        assert_eq!(r.timestamp_ms, Some(1_767_225_600_000));
        let r = parse_line(
            2,
            r#"{"messages":[{"role":"user","content":"x"}],"user":"u"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.tenant.as_str(), r.model.as_str()), ("u", "auto"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let input = "\n{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}\nnot json\n{\"model\":\"x\"}\n{\"messages\":[]}\n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"timestamp\":\"yesterday\"}\n";
        let results: Vec<_> = JsonlReader::new(input.as_bytes()).collect();
        assert_eq!(results.len(), 5);
        assert!(results[0].is_ok());
        let errs: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        assert!(errs[0].to_string().starts_with("line 3: not a JSON object"));
        assert!(errs[1].message.contains("messages"), "{}", errs[1]);
        assert!(errs[3].message.contains("RFC 3339"), "{}", errs[3]);
    }

    #[test]
    fn decision_log_round_trip_without_content() {
        let rec = DecisionLogRecord {
            schema: DECISION_LOG_SCHEMA.into(),
            timestamp: "2026-01-02T03:04:05Z".into(),
            request_id: "r1".into(),
            tenant: "acme".into(),
            model: "auto".into(),
            labels: BTreeMap::new(),
            prompt_tokens: 321,
            max_tokens: None,
            temperature: None,
            streaming: false,
            message_count: 2,
            pii: vec!["email".into(), "credit-card".into()],
            messages: None,
            policy: "privacy@0123456789ab".into(),
            decision: Some(LoggedVerdict::Route {
                targets: vec![Target {
                    backend: "local".into(),
                    model: None,
                }],
                reason: "pii".into(),
                rewritten: false,
                max_tokens: None,
            }),
            policy_failure: None,
            host_override: None,
            decision_us: Some(40),
            backend: Some("local".into()),
            served_model: Some("smollm2-135m-instruct".into()),
            status: Some(200),
            usage: Some(UsageRecord {
                prompt_tokens: Some(330),
                completion_tokens: Some(90),
            }),
            latency_ms: Some(812.0),
            cost_usd: Some(0.0),
        };
        let line = serde_json::to_string(&rec).unwrap_or_default();
        assert!(!line.contains("messages"));
        let r = parse_line(1, &line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.prompt_tokens, Some(330));
        assert_eq!(r.completion_tokens, Some(90));
        assert_eq!(r.pii_kinds.as_deref().map(<[String]>::len), Some(2));
        let found: Vec<_> = policy_sdk::pii::detect(&r.messages[0].content)
            .into_iter()
            .map(|m| m.kind.as_str())
            .collect();
        assert_eq!(found, ["email", "credit-card"]);
    }
}
