//! Switchyard: an OpenAI-compatible LLM gateway whose routing rule is a sandboxed
//! WebAssembly policy component.

pub mod cli;
pub mod domain;
pub mod policy;
pub mod backends;
pub mod config;
pub mod dispatch;
pub mod http;
