//! Switchyard's live gateway: the OpenAI-compatible HTTP surface, dispatch, the sandboxed
//! policy runtime and its live policy set, the backends, the spend ledger, the decision
//! log, the live decision feed and the operators' dashboard. The `switchyard` crate above
//! it holds the command line and the offline replay tool; nothing here imports them.

pub mod backends;
pub mod classifiers;
pub mod config;
pub mod decision_log;
pub mod dispatch;
pub mod domain;
pub mod embeddings;
pub mod hardware;
pub mod http;
pub mod ledger;
pub mod live_feed;
pub mod log_text;
pub mod metrics;
pub mod policy;
pub mod policy_set;
pub mod router_model;
pub mod time;
pub mod ui;
