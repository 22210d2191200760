//! Switchyard policy SDK: write routing policies in plain Rust, export them as
//! WebAssembly components (world `switchyard:policy/policy`), and unit-test them
//! natively with [`testing::MockHost`].
//!
//! A policy implements [`Policy`]: `info()` says what it is, `route()` reads the
//! [`Request`] and live host facts through [`Host`] (backends, PII, tokens, spend,
//! params, clock, log, embeddings) and returns a [`Decision`] (ordered targets, reason, optional
//! rewritten messages, token cap, labels) or a [`Rejection`] (HTTP status + message).
//! [`export_policy!`] turns it into the component's `router` export; the crate needs
//! no `wit-bindgen` of its own, only `crate-type = ["cdylib", "rlib"]` and a build for
//! `wasm32-wasip2`.
//!
//! ```
//! use policy_sdk::{Decision, Host, Policy, PolicyInfo, Rejection, Request, select};
//!
//! /// Local for short prompts, cloud (cheapest first) for long ones.
//! pub struct ShortLocal;
//!
//! impl Policy for ShortLocal {
//!     fn info() -> PolicyInfo {
//!         PolicyInfo::new("short-local", "0.1.0", "short prompts local, long ones to the cloud")
//!     }
//!
//!     fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
//!         let limit = host.param_u32("local_max_tokens", 1000);
//!         let all = host.backends();
//!         let mut cloud: Vec<_> = all.iter().filter(|b| b.is_cloud()).collect();
//!         select::sort_by_price(&mut cloud);
//!         let local: Vec<_> = all.iter().filter(|b| b.is_local()).collect();
//!         let (order, reason) = if request.prompt_tokens <= limit {
//!             ([local, cloud].concat(), "short")
//!         } else {
//!             ([cloud, local].concat(), "long")
//!         };
//!         let order = select::usable(order, request.prompt_tokens);
//!         if order.is_empty() {
//!             return Err(Rejection::unavailable("no backend can hold the prompt"));
//!         }
//!         Ok(Decision::to_all(select::names(&order)).reason(reason))
//!     }
//! }
//!
//! // Exports `ShortLocal` as the component's router on wasm32; a no-op natively.
//! policy_sdk::export_policy!(ShortLocal);
//! ```
//!
//! Its unit test, run natively with `cargo test`:
//!
//! ```
//! # use policy_sdk::{Decision, Host, Policy, PolicyInfo, Rejection, Request, select};
//! # pub struct ShortLocal;
//! # impl Policy for ShortLocal {
//! #     fn info() -> PolicyInfo { PolicyInfo::new("short-local", "0.1.0", "") }
//! #     fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
//! #         let limit = host.param_u32("local_max_tokens", 1000);
//! #         let all = host.backends();
//! #         let mut cloud: Vec<_> = all.iter().filter(|b| b.is_cloud()).collect();
//! #         select::sort_by_price(&mut cloud);
//! #         let local: Vec<_> = all.iter().filter(|b| b.is_local()).collect();
//! #         let (order, reason) = if request.prompt_tokens <= limit {
//! #             ([local, cloud].concat(), "short")
//! #         } else {
//! #             ([cloud, local].concat(), "long")
//! #         };
//! #         let order = select::usable(order, request.prompt_tokens);
//! #         if order.is_empty() {
//! #             return Err(Rejection::unavailable("no backend can hold the prompt"));
//! #         }
//! #         Ok(Decision::to_all(select::names(&order)).reason(reason))
//! #     }
//! # }
//! use policy_sdk::testing::MockHost;
//!
//! let host = MockHost::new();
//! let d = ShortLocal::route(&host, &Request::user("hi")).unwrap();
//! assert_eq!(d.backends(), ["local", "gemini", "openai", "anthropic"]);
//!
//! let long = Request::user("...").prompt_tokens(5000);
//! let d = ShortLocal::route(&host, &long).unwrap();
//! assert_eq!((d.backends()[0], d.reason.as_str()), ("gemini", "long"));
//!
//! // Unhealthy backends go last; ones too small for the prompt are dropped.
//! let host = MockHost::new().unhealthy("gemini").with_param("local_max_tokens", "10000");
//! let d = ShortLocal::route(&host, &long).unwrap();
//! assert_eq!(d.backends(), ["local", "openai", "anthropic", "gemini"]);
//! let huge = Request::user("...").prompt_tokens(2_000_000);
//! assert_eq!(ShortLocal::route(&host, &huge).unwrap_err().status, 503);
//! ```

pub mod backend;
#[cfg(not(target_arch = "wasm32"))]
pub mod cases;
pub mod fnv;
pub mod host;
pub mod pii;
pub mod select;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod types;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use wasm as __wasm;

pub use backend::{BackendKind, BackendStatus, ModelCapabilities, SpendStatus};
pub use host::{Host, LogLevel, Policy};
pub use pii::{PiiKind, PiiMatch};
pub use types::{
    Decision, Message, Needs, PolicyInfo, Rejection, Request, ResponseFormat, Role, Target,
};
#[cfg(target_arch = "wasm32")]
pub use wasm::WasmHost;

/// Exports a [`Policy`] as the component's `router` on wasm32; natively it expands to
/// nothing, so policy crates invoke it unconditionally.
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {};
}
