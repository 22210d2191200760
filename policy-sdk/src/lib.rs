//! Switchyard policy SDK: the PII detector shared with the host (`pii`), and the
//! building blocks for routing policies written in Rust.

pub mod pii;
