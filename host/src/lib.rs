//! Switchyard: an OpenAI-compatible LLM gateway whose routing rule is a sandboxed
//! WebAssembly policy component. The live gateway is the `switchyard-gateway` crate
//! (re-exported here module by module); this crate adds the command line and
//! `switchyard replay`, which sit above it.

pub mod cli;
pub mod replay;
pub mod train;

pub use switchyard_gateway::{
    backends, classifiers, config, decision_log, dispatch, domain, embeddings, hardware, http,
    ledger, live_feed, metrics, policy, policy_set, router_model, time, ui,
};
