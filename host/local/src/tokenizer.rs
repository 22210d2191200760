//! Text side of the model, all from GGUF metadata: the byte-level BPE tokenizer
//! (`tokenizer.ggml.*` → Hugging Face `tokenizers`), the chat template
//! (`tokenizer.chat_template` → minijinja, HF dialect), and streaming detokenization that
//! never splits a UTF-8 character.

use crate::gguf::{GgufError, GgufFile};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model '{0}' is not supported (only byte-level BPE, 'gpt2')")]
    UnsupportedModel(String),
    #[error("building the tokenizer: {0}")]
    Build(String),
    #[error("chat template (tokenizer.chat_template): {0}")]
    Template(String),
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Texts that end a turn in the common chat formats (llama.cpp's end-of-generation set).
const END_OF_TURN: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|eom_id|>",
];

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer and chat template of one model.
#[derive(Debug)]
pub struct TextCodec {
    /// Parses special tokens in its input.
    special: Tokenizer,
    /// Encodes special-token text as ordinary text.
    plain: Tokenizer,
    /// Bytes of each token when it is printed (empty for control tokens).
    token_bytes: Vec<Vec<u8>>,
    /// Control tokens (id, text): `<|im_start|>` etc.
    control: Vec<(u32, String)>,
    end_of_generation: Vec<u32>,
    bos_text: String,
    eos_text: String,
    /// Holds the chat template (`CHAT_TEMPLATE`).
    templates: minijinja::Environment<'static>,
}

/// Inverse of GPT-2's byte→char table: which byte each printable char stands for.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, u8::try_from(b).ok()?)))
        .collect()
}

impl TextCodec {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = file.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let tokens = file.str_array("tokenizer.ggml.tokens")?;
        let types = file
            .opt_i64_array("tokenizer.ggml.token_type")?
            .unwrap_or_else(|| vec![1; tokens.len()]);
        if types.len() != tokens.len() {
            return Err(GgufError::Metadata {
                key: "tokenizer.ggml.token_type".into(),
                problem: format!("{} entries for {} tokens", types.len(), tokens.len()),
            }
            .into());
        }
        let merges = file
            .str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| GgufError::Metadata {
                        key: "tokenizer.ggml.merges".into(),
                        problem: format!("merge '{m}' is not two space-separated tokens"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(false)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;

        let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
        let byte_level = |regex: bool| ByteLevel::new(false, false, regex);
        let split = |re: &str| {
            Split::new(
                SplitPattern::Regex(re.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Build(e.to_string()))
        };
        let pre_tokenizer = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]),
            "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" => {
                Sequence::new(vec![split(LLAMA3_REGEX)?.into(), byte_level(false).into()])
            }
            "qwen2" => Sequence::new(vec![split(QWEN2_REGEX)?.into(), byte_level(false).into()]),
            _ => Sequence::new(vec![byte_level(true).into()]),
        };
        let mut special = Tokenizer::new(bpe);
        special
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_decoder(Some(ByteLevelDecoder::default()));

        let decoder = byte_decoder();
        let mut added = Vec::new();
        let mut control = Vec::new();
        let mut token_bytes = Vec::with_capacity(tokens.len());
        for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
            match *ty {
                TOKEN_CONTROL => {
                    added.push(AddedToken::from(*tok, true));
                    control.push((id as u32, tok.to_string()));
                    token_bytes.push(Vec::new());
                }
                TOKEN_USER_DEFINED => {
                    added.push(AddedToken::from(*tok, false));
                    token_bytes.push(tok.as_bytes().to_vec());
                }
                _ => token_bytes.push(
                    tok.chars()
                        .map(|c| decoder.get(&c).copied())
                        .collect::<Option<Vec<u8>>>()
                        .unwrap_or_else(|| tok.as_bytes().to_vec()),
                ),
            }
        }
        special.add_special_tokens(&added);
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);

        let id_of = |key: &str| -> Result<Option<u32>, GgufError> {
            Ok(file
                .opt_u64(key)?
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len()))
        };
        let bos = id_of("tokenizer.ggml.bos_token_id")?;
        let eos = id_of("tokenizer.ggml.eos_token_id")?;
        let mut end_of_generation: Vec<u32> = [eos, id_of("tokenizer.ggml.eot_token_id")?]
            .into_iter()
            .flatten()
            .collect();
        for (i, tok) in tokens.iter().enumerate() {
            if types[i] == TOKEN_CONTROL
                && END_OF_TURN.contains(tok)
                && !end_of_generation.contains(&(i as u32))
            {
                end_of_generation.push(i as u32);
            }
        }
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tokens.get(i as usize))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        Ok(Self {
            special,
            plain,
            token_bytes,
            control,
            end_of_generation,
            bos_text: text_of(bos),
            eos_text: text_of(eos),
            templates: template_env(file.opt_str("tokenizer.chat_template")?)?,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Token ids of `text`; with `parse_special`, special-token text (`<|im_start|>`) becomes
    /// its single id. No BOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let tk = if parse_special {
            &self.special
        } else {
            &self.plain
        };
        tk.encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Build(e.to_string()))
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }

    /// The tokens that end a generation (EOS first, then end-of-turn tokens).
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Each token's bytes as a grammar engine indexes them: what it prints, or for a
    /// control token `0xFF` and its text (llguidance's marker for special tokens).
    pub fn vocabulary_bytes(&self) -> Vec<Vec<u8>> {
        let mut words = self.token_bytes.clone();
        for (id, text) in &self.control {
            let mut word = vec![0xFF];
            word.extend_from_slice(text.as_bytes());
            words[*id as usize] = word;
        }
        words
    }

    /// Bytes a token prints as (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Renders the chat template for `messages` (role, content) with the generation prompt.
    pub fn render_chat(&self, messages: &[(String, String)]) -> Result<String, TokenizerError> {
        let msgs: Vec<_> = messages
            .iter()
            .map(|(role, content)| minijinja::context! { role => role, content => content })
            .collect();
        self.templates
            .get_template(CHAT_TEMPLATE)
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => msgs,
                    add_generation_prompt => true,
                    bos_token => &self.bos_text,
                    eos_token => &self.eos_text,
                })
            })
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))
    }
}

/// The name of the chat template inside `TextCodec::templates`.
const CHAT_TEMPLATE: &str = "chat";

/// ChatML, used when the file carries no `tokenizer.chat_template`.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A minijinja environment in the Hugging Face template dialect (trim/lstrip blocks, Python
/// string methods, `raise_exception`) holding the chat template.
fn template_env(source: Option<&str>) -> Result<minijinja::Environment<'static>, TokenizerError> {
    let err = |e: minijinja::Error| TokenizerError::Template(format!("{e:#}"));
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(err)?;
    env.set_syntax(syntax);
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template_owned(CHAT_TEMPLATE, source.unwrap_or(CHATML).to_string())
        .map_err(err)?;
    Ok(env)
}

/// Turns generated token ids into text pieces that always end on a UTF-8 character boundary.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, codec: &TextCodec, id: u32) -> String {
        self.pending.extend_from_slice(codec.token_bytes(id));
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An invalid sequence (not just an unfinished one) can never complete: emit it
            // lossily rather than holding the stream back forever.
            Err(e) if e.error_len().is_some() => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return text;
            }
            Err(e) => e.valid_up_to(),
        };
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// Whatever is left at the end of generation.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
