//! Plain-Rust mirrors of the WIT request/decision shapes (`types` interface), with helpers
//! to read a request and builders to write a decision.

use std::collections::BTreeMap;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message (text content only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// A message from `role` with `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// The output format a client asked for (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseFormat {
    /// Plain text.
    #[default]
    Text,
    /// JSON mode (`json_object`).
    JsonObject,
    /// Structured output (`json_schema`).
    JsonSchema,
}

/// What a request needs from the model that serves it, read by the host from the
/// client's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Names of the tools (functions) offered; empty: none.
    pub tools: Vec<String>,
    pub response_format: ResponseFormat,
    /// The client asked for `logprobs`.
    pub logprobs: bool,
    /// Image parts across all messages.
    pub images: u32,
    /// Choices asked for (`n`).
    pub n: u32,
}

impl Default for Needs {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            response_format: ResponseFormat::Text,
            logprobs: false,
            images: 0,
            n: 1,
        }
    }
}

/// What the policy sees of a client request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Gateway request id.
    pub id: String,
    /// The model alias the client asked for, e.g. `auto` or `gpt-4o`.
    pub model: String,
    pub messages: Vec<Message>,
    /// The client's completion-token limit, if any.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// True for an SSE streaming request.
    pub streaming: bool,
    /// Tenant the request is billed to (`default` when unauthenticated).
    pub tenant: String,
    /// Client metadata; well-known keys: `data-class`, `user`, `task`.
    pub labels: BTreeMap<String, String>,
    /// Prompt tokens of all messages, counted by the host.
    pub prompt_tokens: u32,
    /// What the request needs from the model (tools, JSON, logprobs, images, `n`).
    pub needs: Needs,
    /// `model` names a model a configured backend serves (not an alias such as `auto`).
    pub explicit_model: bool,
}

impl Request {
    /// A request with `messages`, model `auto`, tenant `default`, no labels, and prompt
    /// tokens estimated as bytes/4 (the mock host's count). For tests and examples.
    pub fn new(messages: Vec<Message>) -> Self {
        let prompt_tokens = messages
            .iter()
            .map(|m| crate::host::estimate_tokens(&m.content))
            .fold(0u32, u32::saturating_add);
        Self {
            id: "req-1".to_owned(),
            model: "auto".to_owned(),
            messages,
            max_tokens: None,
            temperature: None,
            streaming: false,
            tenant: "default".to_owned(),
            labels: BTreeMap::new(),
            prompt_tokens,
            needs: Needs::default(),
            explicit_model: false,
        }
    }

    /// Sets what the request needs.
    pub fn needs(mut self, needs: Needs) -> Self {
        self.needs = needs;
        self
    }

    /// Asks for `model` explicitly (sets `explicit_model`).
    pub fn explicit(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self.explicit_model = true;
        self
    }

    /// A request holding one user message (see [`Request::new`]).
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(vec![Message::user(content)])
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Adds a client label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the prompt token count.
    pub fn prompt_tokens(mut self, tokens: u32) -> Self {
        self.prompt_tokens = tokens;
        self
    }

    /// Sets the client's completion-token limit.
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = Some(tokens);
        self
    }

    /// Every message's content, joined with `\n`.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.messages.iter().map(|m| m.content.as_str()).collect();
        parts.join("\n")
    }

    /// The content of the last user message, or `""` when there is none.
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str())
    }

    /// The value of client label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Context the request needs: prompt tokens plus the client's completion limit.
    pub fn needed_context(&self) -> u32 {
        self.prompt_tokens
            .saturating_add(self.max_tokens.unwrap_or(0))
    }
}

/// One place to send a request: a backend name and an optional model override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: String,
    /// `None`: the backend's default model.
    pub model: Option<String>,
}

impl Target {
    /// The backend's default model.
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            model: None,
        }
    }

    /// A specific model on `backend`.
    pub fn with_model(backend: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            model: Some(model.into()),
        }
    }
}

/// Where to send a request: the first target is primary, the rest fallbacks in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub targets: Vec<Target>,
    /// Short machine-friendly reason, e.g. `pii:email`.
    pub reason: String,
    /// Replacement messages sent instead of the client's (e.g. redacted).
    pub messages: Option<Vec<Message>>,
    /// Cap on completion tokens, on top of the client's own limit.
    pub max_tokens: Option<u32>,
    /// Labels attached to metrics and logs.
    pub labels: BTreeMap<String, String>,
}

impl Decision {
    /// A decision with `backend` (default model) as the primary target.
    pub fn to(backend: impl Into<String>) -> Self {
        Self::new(vec![Target::new(backend)])
    }

    /// A decision with these targets, in order.
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets,
            ..Self::default()
        }
    }

    /// A decision over these backend names (default models), in order.
    pub fn to_all<I, S>(backends: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(backends.into_iter().map(Target::new).collect())
    }

    /// Appends `backend` (default model) as the next fallback.
    pub fn then(mut self, backend: impl Into<String>) -> Self {
        self.targets.push(Target::new(backend));
        self
    }

    /// Appends `target` as the next fallback.
    pub fn then_target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Adds a metrics label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Caps completion tokens (keeps the smaller cap if one is already set).
    pub fn cap_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(self.max_tokens.map_or(max_tokens, |m| m.min(max_tokens)));
        self
    }

    /// Sends `messages` instead of the client's.
    pub fn rewrite(mut self, messages: Vec<Message>) -> Self {
        self.messages = Some(messages);
        self
    }

    /// The backend names, in order.
    pub fn backends(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.backend.as_str()).collect()
    }
}

/// Refuse a request: the client gets HTTP `status` with `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// An HTTP status in 400..=599.
    pub status: u16,
    pub message: String,
}

impl Rejection {
    /// A rejection; a status outside 400..=599 becomes 500.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: if (400..=599).contains(&status) {
                status
            } else {
                500
            },
            message: message.into(),
        }
    }

    /// 503 Service Unavailable: no backend can take the request.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

impl PolicyInfo {
    /// Name, version and a one-line description.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_helpers() {
        let r = Request::new(vec![
            Message::system("be brief"),
            Message::user("first"),
            Message::assistant("ok"),
            Message::user("second"),
        ])
        .with_label("task", "qa")
        .max_tokens(10);
        assert_eq!(r.text(), "be brief\nfirst\nok\nsecond");
        assert_eq!(r.last_user_text(), "second");
        assert_eq!(r.label("task"), Some("qa"));
        assert_eq!(r.label("nope"), None);
        assert_eq!(r.needed_context(), r.prompt_tokens + 10);
        assert_eq!(Request::new(vec![]).last_user_text(), "");
    }

    #[test]
    fn decision_builder() {
        let d = Decision::to("local")
            .then("openai")
            .then_target(Target::with_model("openai", "gpt-4o-mini"))
            .reason("pii:email")
            .label("k", "v")
            .cap_tokens(100)
            .cap_tokens(200)
            .rewrite(vec![Message::user("x")]);
        assert_eq!(d.backends(), ["local", "openai", "openai"]);
        assert_eq!(d.targets[2].model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(d.max_tokens, Some(100));
        assert_eq!(d.labels.get("k").map(String::as_str), Some("v"));
        assert!(d.messages.is_some());
        assert_eq!(Decision::to_all(["a", "b"]).backends(), ["a", "b"]);
    }

    #[test]
    fn rejection_status_is_clamped() {
        assert_eq!(Rejection::new(429, "x").status, 429);
        assert_eq!(Rejection::new(200, "x").status, 500);
    }
}
