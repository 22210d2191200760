//! The policy contracts the runtime speaks: one module per WIT contract version, each
//! holding that version's only `bindgen!` (private) and its WIT ↔ domain conversions.
//!
//! Only `switchyard:policy@0.1.0` exists today ([`v0_1`]). A later contract version goes
//! in a sibling module (`v0_2`) with the same shape (`info`, `route`, `add_to_linker`,
//! the import traits the host context implements), and the runtime picks one per
//! component when it loads it.

pub(super) mod v0_1;
