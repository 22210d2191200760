//! Switchyard: an OpenAI-compatible LLM gateway whose routing rule is a sandboxed
//! WebAssembly policy component.

pub mod domain;
pub mod cli;
pub mod policy;
