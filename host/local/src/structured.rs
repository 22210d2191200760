//! Structured output: a `response_format` (any JSON object, or a JSON Schema) compiled by
//! llguidance into a grammar whose token mask is applied at every decoding step, so the
//! local model's reply always parses and matches the schema.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::tokenizer::TextCodec;

/// What a reply must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON value that matches this JSON Schema (`response_format.json_schema.schema`).
    JsonSchema(Value),
}

impl OutputFormat {
    /// What the model is told in its system message, so it writes the JSON it is held to
    /// instead of fighting the mask (as OpenAI puts a `json_schema` in the model's context).
    pub fn instruction(&self) -> String {
        match self {
            OutputFormat::JsonObject => "Reply with one JSON object.".into(),
            OutputFormat::JsonSchema(schema) => {
                format!("Reply with one JSON value that matches this JSON Schema: {schema}")
            }
        }
    }

    /// `messages` with [`Self::instruction`] appended to the first system message, or put
    /// in one of its own in front.
    pub fn instruct(&self, messages: &[(String, String)]) -> Vec<(String, String)> {
        let mut messages = messages.to_vec();
        match messages.iter_mut().find(|(role, _)| role == "system") {
            Some((_, content)) => {
                content.push_str("\n\n");
                content.push_str(&self.instruction());
            }
            None => messages.insert(0, ("system".into(), self.instruction())),
        }
        messages
    }

    /// The schema llguidance compiles, with the layout the reply is held to: one space after
    /// `,` and `:` and no other whitespace between tokens (a small model allowed free
    /// whitespace can spend its whole budget on newlines). The layout replaces any
    /// `x-guidance` options a client put in its schema.
    fn schema(&self) -> Value {
        let mut schema = match self {
            OutputFormat::JsonObject => json!({"type": "object"}),
            OutputFormat::JsonSchema(schema) => schema.clone(),
        };
        if let Value::Object(map) = &mut schema {
            map.insert(
                "x-guidance".into(),
                json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
            );
        }
        schema
    }
}

/// The model's vocabulary as llguidance reads it: a byte trie of the tokens, and the model's
/// own tokenizer for the text a grammar forces.
struct Vocabulary {
    trie: TokTrie,
    codec: Arc<TextCodec>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        std::str::from_utf8(s)
            .ok()
            .and_then(|text| self.codec.encode(text, false).ok())
            .unwrap_or_else(|| self.trie.greedy_tokenize(s))
    }
}

/// Compiles output formats into per-request constraints. Built once per model: indexing the
/// vocabulary takes a moment, a request's schema compiles in milliseconds.
pub struct Grammars {
    factory: ParserFactory,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars").finish_non_exhaustive()
    }
}

impl Grammars {
    pub fn new(codec: Arc<TextCodec>) -> Result<Self, String> {
        let eos = *codec
            .end_of_generation()
            .first()
            .ok_or("the model names no end-of-generation token")?;
        let words = codec.vocabulary_bytes();
        let info = TokRxInfo {
            tok_end_of_turn: codec.end_of_generation().get(1).copied(),
            ..TokRxInfo::new(words.len() as u32, eos)
        };
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocabulary { trie, codec });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh constraint for one reply; a schema llguidance cannot compile is an error that
    /// names the problem.
    pub fn constraint(&self, format: &OutputFormat) -> Result<Constraint, String> {
        let grammar = TopLevelGrammar::from_json_schema(format.schema());
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(Constraint { matcher }),
        }
    }
}

/// One reply's constraint: which tokens may come next, fed each token chosen.
pub struct Constraint {
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Constraint {
    /// Sets the logit of every token the format does not allow next to −∞. The EOS token is
    /// allowed only where the reply may end.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        if allowed.is_zero() {
            return Err("the output format allows no next token".into());
        }
        let known = allowed.len();
        for (id, logit) in logits.iter_mut().enumerate() {
            if id >= known || !allowed.is_allowed(id as TokenId) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Records the token chosen (one the last mask allowed).
    pub fn accept(&mut self, id: u32) -> Result<(), String> {
        self.matcher.consume_token(id).map_err(|e| e.to_string())
    }

    /// Tokens the format forces next (a key name, a closing quote): the caller may append
    /// them without asking the model. They are already recorded.
    pub fn forced(&mut self) -> Vec<u32> {
        self.matcher.consume_ff_tokens()
    }

    /// The reply is complete: the format allows nothing more.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}
