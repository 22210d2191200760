//! The complexity stage: classifies a request as simple or complex (client `task` label,
//! prompt length, keyword categories) and orders backends for it. Self-contained (only
//! `policy_sdk`), so the `hybrid` policy compiles it in as well.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use policy_sdk::fnv::Fnv1a;
use policy_sdk::{BackendStatus, Decision, Host, LogLevel, Request, select};

/// How demanding a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A local model handles it: classification, extraction, conversion, Q&A with context.
    Simple,
    /// It needs a cloud model: reasoning, code, creative writing, long context, knowledge.
    Complex,
}

impl Level {
    /// `simple` or `complex`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Simple => "simple",
            Level::Complex => "complex",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "simple" | "local" => Some(Level::Simple),
            "complex" | "cloud" => Some(Level::Complex),
            _ => None,
        }
    }
}

/// A task category and the keywords that reveal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub task: String,
    pub level: Level,
    pub keywords: Vec<String>,
}

/// Built-in categories in priority order (complex ones first: when a request matches
/// both, quality wins). Param `<task>_keywords` replaces a category's keywords.
const CATEGORIES: &[(&str, Level, &[&str])] = &[
    (
        "code",
        Level::Complex,
        &[
            "```",
            "code",
            "function",
            "implement",
            "refactor",
            "debug",
            "compile",
            "script",
            "program",
            "algorithm",
            "regex",
            "sql",
            "unit test",
            "stack trace",
        ],
    ),
    (
        "reasoning",
        Level::Complex,
        &[
            "step by step",
            "prove",
            "proof",
            "reason",
            "reasoning",
            "why",
            "analyze",
            "analyse",
            "compare",
            "evaluate",
            "derive",
            "plan",
            "strategy",
            "trade-offs",
            "tradeoffs",
            "pros and cons",
            "solve",
            "calculate",
        ],
    ),
    (
        "creative",
        Level::Complex,
        &[
            "story",
            "poem",
            "essay",
            "creative",
            "brainstorm",
            "song",
            "lyrics",
            "novel",
            "slogan",
            "fiction",
            "screenplay",
        ],
    ),
    (
        "classification",
        Level::Simple,
        &[
            "classify",
            "classification",
            "categorize",
            "categorise",
            "sentiment",
            "spam",
            "intent",
            "which category",
            "label this",
            "tag this",
        ],
    ),
    (
        "extraction",
        Level::Simple,
        &[
            "extract",
            "entities",
            "named entity",
            "pull out",
            "find all",
            "list all",
            "parse",
        ],
    ),
    (
        "conversion",
        Level::Simple,
        &[
            "convert",
            "reformat",
            "format as",
            "to json",
            "as json",
            "into json",
            "to csv",
            "to yaml",
            "markdown table",
            "translate",
            "transform",
        ],
    ),
    (
        "qa",
        Level::Simple,
        &[
            "based on the",
            "according to the",
            "given the following",
            "context:",
            "from the text",
            "in the passage",
            "answer using",
        ],
    ),
    (
        "summary",
        Level::Simple,
        &["summarize", "summarise", "summary", "tl;dr", "key points"],
    ),
];

/// Which order cloud backends take for complex requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudOrder {
    /// Config order (the operator lists premium first).
    Config,
    /// Cheapest first.
    Price,
}

/// The stage's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Client label that names the task (`task_label`, default `task`).
    pub task_label: String,
    /// Prompts of at least this many tokens are complex (`long_context_tokens`, 4000).
    pub long_context_tokens: u32,
    /// Categories in priority order.
    pub categories: Vec<Category>,
    /// Level when nothing matched (`default`, `complex`).
    pub default_level: Level,
    /// Cloud order for complex requests (`complex_order`: `config` or `price`).
    pub complex_order: CloudOrder,
    /// Simple requests may fall back to the cloud (`fallback_cloud`, true).
    pub fallback_cloud: bool,
    /// Complex requests may fall back to local backends (`fallback_local`, true).
    pub fallback_local: bool,
    /// Backend names instead of all local ones (`local_backends`).
    pub local_names: Option<Vec<String>>,
    /// Backend names instead of all cloud ones, in order (`cloud_backends`).
    pub cloud_names: Option<Vec<String>>,
}

impl Config {
    /// Reads the parameters (see the fields).
    pub fn from_host(host: &dyn Host) -> Self {
        let categories = CATEGORIES
            .iter()
            .map(|(task, level, keywords)| Category {
                task: (*task).to_owned(),
                level: *level,
                keywords: host
                    .param_list_or(&format!("{task}_keywords"), keywords)
                    .into_iter()
                    .map(|k| k.to_lowercase())
                    .collect(),
            })
            .collect();
        let default_level = Level::parse(&host.param_or("default", "complex").to_lowercase())
            .unwrap_or_else(|| {
                host.log(
                    LogLevel::Warn,
                    "unknown default level, using complex",
                    &[("param", "default")],
                );
                Level::Complex
            });
        let complex_order = match host.param_or("complex_order", "config").as_str() {
            "price" => CloudOrder::Price,
            _ => CloudOrder::Config,
        };
        Self {
            task_label: host.param_or("task_label", "task"),
            long_context_tokens: host.param_u32("long_context_tokens", 4000),
            categories,
            default_level,
            complex_order,
            fallback_cloud: host.param_bool("fallback_cloud", true),
            fallback_local: host.param_bool("fallback_local", true),
            local_names: host.param_list("local_backends"),
            cloud_names: host.param_list("cloud_backends"),
        }
    }
}

/// Why a request got its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's task label.
    Label,
    /// The prompt's length.
    Tokens,
    /// A keyword in the last user message.
    Keyword,
    /// Nothing matched.
    Default,
}

impl Source {
    /// `label`, `tokens`, `keyword` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Label => "label",
            Source::Tokens => "tokens",
            Source::Keyword => "keyword",
            Source::Default => "default",
        }
    }
}

/// A classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub level: Level,
    /// The task, e.g. `classification`, `code`, `long-context`, `general`.
    pub task: String,
    pub source: Source,
    /// The keyword that matched (source `Keyword`).
    pub keyword: Option<String>,
}

impl Class {
    fn new(level: Level, task: &str, source: Source) -> Self {
        Self {
            level,
            task: task.to_owned(),
            source,
            keyword: None,
        }
    }

    /// `simple:<task>` or `complex:<task>`.
    pub fn reason(&self) -> String {
        format!("{}:{}", self.level.as_str(), self.task)
    }
}

/// Classifies `request`: the task label, then prompt length, then keyword categories in
/// priority order over the last user message, then the default.
pub fn classify(host: &dyn Host, request: &Request, cfg: &Config) -> Class {
    if let Some(task) = request.label(&cfg.task_label) {
        let task = task.trim().to_lowercase();
        if let Some(c) = cfg.categories.iter().find(|c| c.task == task) {
            return Class::new(c.level, &c.task, Source::Label);
        }
        if let Some(level) = Level::parse(&task) {
            return Class::new(level, "client", Source::Label);
        }
        host.log(
            LogLevel::Debug,
            "unknown task label ignored",
            &[("task", &task)],
        );
    }
    if request.prompt_tokens >= cfg.long_context_tokens {
        return Class::new(Level::Complex, "long-context", Source::Tokens);
    }
    let text = request.last_user_text().to_lowercase();
    let words = words_of(&text);
    for c in &cfg.categories {
        if let Some(k) = c.keywords.iter().find(|k| has_keyword(&text, &words, k)) {
            return Class {
                keyword: Some(k.clone()),
                ..Class::new(c.level, &c.task, Source::Keyword)
            };
        }
    }
    Class::new(cfg.default_level, "general", Source::Default)
}

/// The words (maximal alphanumeric runs) of a text (FNV: no random hash keys to fetch
/// from the host in a fresh instance).
pub type Words<'a> = HashSet<&'a str, BuildHasherDefault<Fnv1a>>;

/// The words of `text`, for [`has_keyword`].
pub fn words_of(text: &str) -> Words<'_> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// [`contains_word`], answered from `words` (the words of `text`) where possible: every
/// alphanumeric run of a keyword must be a whole word of the text for an unglued
/// occurrence, and a keyword that is one such run occurs exactly when it is a word. Only
/// phrases whose words are all present are scanned for.
pub fn has_keyword(text: &str, words: &Words<'_>, keyword: &str) -> bool {
    let mut runs = keyword
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    if !runs.all(|w| words.contains(w)) {
        return false;
    }
    if !keyword.is_empty() && keyword.chars().all(char::is_alphanumeric) {
        return true;
    }
    contains_word(text, keyword)
}

/// True when `needle` occurs in `haystack` not glued to letters or digits on an edge
/// that is itself a letter or digit (so `plan` does not match `planet`).
pub fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let glued = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let starts_alnum = needle.chars().next().is_some_and(char::is_alphanumeric);
    let ends_alnum = needle.chars().last().is_some_and(char::is_alphanumeric);
    haystack.match_indices(needle).any(|(i, m)| {
        let before = haystack.get(..i).and_then(|h| h.chars().next_back());
        let after = haystack.get(i + m.len()..).and_then(|h| h.chars().next());
        let glued_before = starts_alnum && glued(before);
        let glued_after = ends_alnum && glued(after);
        !glued_before && !glued_after
    })
}

/// The backends for `level`, before dropping those that cannot hold the prompt:
/// simple → local, then cloud cheapest first; complex → cloud in `complex_order` (or
/// `cloud_backends` order), then local.
pub fn order<'a>(
    backends: &'a [BackendStatus],
    level: Level,
    cfg: &Config,
) -> Vec<&'a BackendStatus> {
    let local = match &cfg.local_names {
        Some(names) => select::named(backends, names),
        None => backends.iter().filter(|b| b.is_local()).collect(),
    };
    let mut cloud = match &cfg.cloud_names {
        Some(names) => select::named(backends, names),
        None => backends.iter().filter(|b| b.is_cloud()).collect(),
    };
    match level {
        Level::Simple => {
            select::sort_by_price(&mut cloud);
            if cfg.fallback_cloud {
                [local, cloud].concat()
            } else {
                local
            }
        }
        Level::Complex => {
            if cfg.complex_order == CloudOrder::Price && cfg.cloud_names.is_none() {
                select::sort_by_price(&mut cloud);
            }
            if cfg.fallback_local {
                [cloud, local].concat()
            } else {
                cloud
            }
        }
    }
}

/// Adds the classification labels to `d`.
pub fn labelled(d: Decision, class: &Class) -> Decision {
    let d = d
        .label("complexity", class.level.as_str())
        .label("task", class.task.as_str())
        .label("complexity-source", class.source.as_str());
    match &class.keyword {
        Some(k) => d.label("keyword", k.as_str()),
        None => d,
    }
}
