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

/// Digits a JSON number may have in a row: enough for any 64-bit integer; a longer run
/// carries nothing a JSON parser keeps (an IEEE double holds 17 significant digits). No
/// schema keyword bounds a number's length, and a small model can repeat digits until its
/// token budget runs out; this cap ends the number instead.
const MAX_DIGIT_RUN: u32 = 20;

/// Compiles output formats into per-request constraints. Built once per model: indexing the
/// vocabulary takes a moment, a request's schema compiles in milliseconds.
pub struct Grammars {
    factory: ParserFactory,
    codec: Arc<TextCodec>,
    /// Tokens whose text starts with an ASCII digit.
    digit_tokens: Arc<Vec<TokenId>>,
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
        let digit_tokens = (0..words.len() as TokenId)
            .filter(|&id| words[id as usize].first().is_some_and(u8::is_ascii_digit))
            .collect();
        let info = TokRxInfo {
            tok_end_of_turn: codec.end_of_generation().get(1).copied(),
            ..TokRxInfo::new(words.len() as u32, eos)
        };
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            codec: Arc::clone(&codec),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self {
            factory,
            codec,
            digit_tokens: Arc::new(digit_tokens),
        })
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
            None => Ok(Constraint {
                matcher,
                codec: Arc::clone(&self.codec),
                digit_tokens: Arc::clone(&self.digit_tokens),
                lexer: JsonLexer::default(),
            }),
        }
    }
}

/// Where the reply so far stands, lexically: inside a string or not, and the digits just
/// written outside strings.
#[derive(Debug, Default)]
struct JsonLexer {
    in_string: bool,
    escaped: bool,
    digit_run: u32,
}

impl JsonLexer {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
            } else if b.is_ascii_digit() {
                self.digit_run += 1;
            } else {
                self.digit_run = 0;
                self.in_string = b == b'"';
            }
        }
    }
}

/// One reply's constraint: which tokens may come next, fed each token chosen.
pub struct Constraint {
    matcher: Matcher,
    codec: Arc<TextCodec>,
    digit_tokens: Arc<Vec<TokenId>>,
    lexer: JsonLexer,
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
        if self.lexer.digit_run >= MAX_DIGIT_RUN {
            // End the number, unless the format allows nothing but more digits.
            let digits = self.digit_tokens.iter();
            let allowed_digits = digits.filter(|&&id| allowed.is_allowed(id)).count();
            if allowed.num_set() > allowed_digits {
                for &id in self.digit_tokens.iter() {
                    if let Some(logit) = logits.get_mut(id as usize) {
                        *logit = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records the token chosen (one the last mask allowed).
    pub fn accept(&mut self, id: u32) -> Result<(), String> {
        self.matcher.consume_token(id).map_err(|e| e.to_string())?;
        self.lexer.push(self.codec.token_bytes(id));
        Ok(())
    }

    /// Tokens the format forces next (a key name, a closing quote): the caller may append
    /// them without asking the model. They are already recorded.
    pub fn forced(&mut self) -> Vec<u32> {
        let forced = self.matcher.consume_ff_tokens();
        for &id in &forced {
            self.lexer.push(self.codec.token_bytes(id));
        }
        forced
    }

    /// The reply is complete: the format allows nothing more.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> JsonLexer {
        let mut lexer = JsonLexer::default();
        for piece in text.as_bytes().chunks(3) {
            lexer.push(piece);
        }
        lexer
    }

    #[test]
    fn digit_runs_count_outside_strings_only() {
        assert_eq!(lex(r#"{"n": 12345"#).digit_run, 5);
        assert_eq!(lex(r#"{"n": 12.345"#).digit_run, 3);
        assert_eq!(lex(r#"{"id": "12345"#).digit_run, 0);
        assert!(lex(r#"{"id": "12345"#).in_string);
        // An escaped quote does not end the string; a real one does.
        assert!(lex(r#"{"a": "x\"1"#).in_string);
        assert!(lex(r#"{"a": "x\\"#).in_string);
        let after = lex(r#"{"a": "x\\", "b": 77"#);
        assert!(!after.in_string);
        assert_eq!(after.digit_run, 2);
    }

    #[test]
    fn the_instruction_joins_the_system_message_or_leads() {
        let format = OutputFormat::JsonSchema(json!({"type": "object"}));
        let user = vec![("user".to_string(), "hi".to_string())];
        let told = format.instruct(&user);
        assert_eq!(told.len(), 2);
        assert_eq!(told[0].0, "system");
        assert!(told[0].1.contains(r#"{"type":"object"}"#), "{}", told[0].1);
        let with_system = vec![
            ("system".to_string(), "Be brief.".to_string()),
            ("user".to_string(), "hi".to_string()),
        ];
        let told = OutputFormat::JsonObject.instruct(&with_system);
        assert_eq!(told.len(), 2);
        assert_eq!(told[0].1, "Be brief.\n\nReply with one JSON object.");
    }

    #[test]
    fn the_layout_replaces_a_clients_guidance_options() {
        let format = OutputFormat::JsonSchema(
            json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}),
        );
        assert_eq!(format.schema()["x-guidance"]["whitespace_flexible"], false);
        assert_eq!(
            OutputFormat::JsonObject.schema()["x-guidance"]["key_separator"],
            ": "
        );
    }
}
