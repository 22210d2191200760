//! The complexity stage: classifies a request as simple or complex (client `task` label,
//! prompt length, keyword categories) and orders backends for it. Self-contained (only
//! `policy_sdk`), so the `hybrid` policy compiles it in as well.

use std::borrow::Cow;

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
    pub task: &'static str,
    pub level: Level,
    /// Lowercase; the built-in ones are borrowed, a `<task>_keywords` list is owned.
    pub keywords: Vec<Cow<'static, str>>,
}

/// Built-in categories in priority order (complex ones first: when a request matches
/// both, quality wins): task, the param that replaces its keywords, level, keywords
/// (lowercase).
const CATEGORIES: &[(&str, &str, Level, &[&str])] = &[
    (
        "code",
        "code_keywords",
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
        "reasoning_keywords",
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
        "creative_keywords",
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
        "classification_keywords",
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
        "extraction_keywords",
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
        "conversion_keywords",
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
        "qa_keywords",
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
        "summary_keywords",
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
            .map(|&(task, param, level, builtin)| Category {
                task,
                level,
                keywords: match host.param_list(param) {
                    Some(list) => list.iter().map(|k| Cow::Owned(k.to_lowercase())).collect(),
                    None => builtin.iter().map(|&k| Cow::Borrowed(k)).collect(),
                },
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
    pub task: &'static str,
    pub source: Source,
    /// The keyword that matched (source `Keyword`).
    pub keyword: Option<String>,
}

impl Class {
    fn new(level: Level, task: &'static str, source: Source) -> Self {
        Self {
            level,
            task,
            source,
            keyword: None,
        }
    }
}

/// The reason a class gives: `simple:<task>` or `complex:<task>`.
impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.task)
    }
}

/// Classifies `request`: the task label, then prompt length, then keyword categories in
/// priority order over the last user message, then the default.
pub fn classify(host: &dyn Host, request: &Request, cfg: &Config) -> Class {
    if let Some(task) = request.label(&cfg.task_label) {
        let task = task.trim().to_lowercase();
        if let Some(c) = cfg.categories.iter().find(|c| c.task == task) {
            return Class::new(c.level, c.task, Source::Label);
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
                keyword: Some(k.to_string()),
                ..Class::new(c.level, c.task, Source::Keyword)
            };
        }
    }
    Class::new(cfg.default_level, "general", Source::Default)
}

/// Bits in the [`Words`] filter: a 1 KB prompt has ~100 distinct words, so with two
/// bits per word a word it lacks passes the filter about once in 400 lookups.
const WORD_BITS: usize = 4096;

/// A one-pass summary of a text for [`has_keyword`], built without allocating: the ASCII
/// characters other than letters and digits it contains, and a Bloom filter over its
/// words (maximal alphanumeric runs). It only says "certainly absent" or "maybe
/// present"; [`contains_word`] confirms the rest.
#[derive(Debug, Clone)]
pub struct Words {
    separators: [u64; 2],
    words: [u64; WORD_BITS / 64],
}

impl Words {
    /// False for an ASCII separator (not a letter or digit) the text lacks.
    fn may_have_byte(&self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || !b.is_ascii()
            || self.separators[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// The two filter bits of a word with hash `hash`.
    fn bits(hash: u64) -> [usize; 2] {
        // Both indices are masked below WORD_BITS: the casts cannot truncate.
        let mask = (WORD_BITS - 1) as u64;
        [(hash & mask) as usize, ((hash >> 32) & mask) as usize]
    }

    fn add_word(&mut self, hash: u64) {
        for bit in Self::bits(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_have_word(&self, word: &str) -> bool {
        Self::bits(WordHash::of(word.as_bytes()))
            .iter()
            .all(|&bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The hash a word is filed under in [`Words`]: a rotate and xor per byte (no multiply
/// chain: it runs over every byte of the prompt), mixed once at the end.
#[derive(Debug, Default, Clone, Copy)]
struct WordHash(u64);

impl WordHash {
    fn add(&mut self, b: u8) {
        self.0 = self.0.rotate_left(7) ^ u64::from(b);
    }

    /// The SplitMix64 finalizer of the state.
    fn finish(self) -> u64 {
        let mut h = self.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }

    fn of(bytes: &[u8]) -> u64 {
        let mut h = Self::default();
        bytes.iter().for_each(|&b| h.add(b));
        h.finish()
    }
}

/// The summary of `text` for [`has_keyword`].
pub fn words_of(text: &str) -> Words {
    let mut out = Words {
        separators: [0; 2],
        words: [0; WORD_BITS / 64],
    };
    let bytes = text.as_bytes();
    let mut word = WordHash::default();
    let mut in_word = false;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        // ASCII directly; anything else one whole character at a time.
        let alphanumeric = if b.is_ascii() {
            at += 1;
            if b.is_ascii_alphanumeric() {
                word.add(b);
            } else {
                out.separators[usize::from(b >> 6)] |= 1 << (b & 63);
            }
            b.is_ascii_alphanumeric()
        } else {
            let c = text
                .get(at..)
                .and_then(|t| t.chars().next())
                .unwrap_or('\0');
            let encoded = bytes.get(at..at + c.len_utf8()).unwrap_or_default();
            at += encoded.len().max(1);
            if c.is_alphanumeric() {
                encoded.iter().for_each(|&e| word.add(e));
            }
            c.is_alphanumeric()
        };
        if alphanumeric {
            in_word = true;
        } else if in_word {
            out.add_word(word.finish());
            word = WordHash::default();
            in_word = false;
        }
    }
    if in_word {
        out.add_word(word.finish());
    }
    out
}

/// [`contains_word`], with the answer "no" taken from `words` (the summary of `text`)
/// where it can be: a keyword needs each of its ASCII separators in the text, and each
/// of its alphanumeric runs as a whole word of the text for an unglued occurrence. Only
/// keywords that pass are scanned for.
pub fn has_keyword(text: &str, words: &Words, keyword: &str) -> bool {
    if !keyword.bytes().all(|b| words.may_have_byte(b)) {
        return false;
    }
    let mut runs = keyword
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    runs.all(|w| words.may_have_word(w)) && contains_word(text, keyword)
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
        .label("task", class.task)
        .label("complexity-source", class.source.as_str());
    match &class.keyword {
        Some(k) => d.label("keyword", k.as_str()),
        None => d,
    }
}
