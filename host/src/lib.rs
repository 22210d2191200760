//! Switchyard: an OpenAI-compatible LLM gateway whose routing rule is a sandboxed
//! WebAssembly policy component.

pub mod backends;
pub mod cli;
pub mod config;
pub mod decision_log;
pub mod dispatch;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod replay;
