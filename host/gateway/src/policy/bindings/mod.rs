//! The policy contracts the runtime speaks: one module per WIT contract version, each
//! holding that version's only `bindgen!` (private) and its WIT ↔ domain conversions,
//! and [`Pre`] / [`Guest`], a linked component and an instance of whichever version the
//! component was built against (picked at load from the `router` export it has).
//!
//! `switchyard:policy@0.2.0` ([`v0_2`]) is current; `0.1.0` ([`v0_1`]) components keep
//! working: the host links both versions' imports, and a 0.1 guest gets the domain
//! request converted down (it does not see the request's needs or the backends' per-model
//! capabilities, and has no `embeddings` import).

pub(super) mod v0_1;
pub(super) mod v0_2;

use wasmtime::AsContextMut;
use wasmtime::component::{Component, InstancePre, Linker};

use super::PolicyInfo;
use super::imports::HostCtx;
use crate::domain;

/// A contract version the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ContractVersion {
    #[serde(rename = "0.1.0")]
    V0_1,
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl ContractVersion {
    /// Every version, newest first.
    pub const ALL: [Self; 2] = [Self::V0_2, Self::V0_1];

    /// The semver of the WIT package, e.g. `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
        }
    }

    /// The export a component of this version has.
    fn router_export(self) -> String {
        format!("switchyard:policy/router@{}", self.as_str())
    }

    /// The version whose `router` `component` exports, newest first.
    pub(super) fn of(component: &Component) -> Option<Self> {
        Self::ALL.into_iter().find(|v| {
            component
                .get_export_index(None, v.router_export())
                .is_some()
        })
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "switchyard:policy@{}", self.as_str())
    }
}

/// Links every version's imports into `linker` (their instance names differ by version).
pub(super) fn add_to_linker(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)
}

/// A linked component, ready to instantiate.
pub(super) enum Pre {
    V0_1(v0_1::PolicyPre<HostCtx>),
    V0_2(v0_2::PolicyPre<HostCtx>),
}

/// One instance of a policy component.
pub(super) enum Guest {
    V0_1(v0_1::Policy),
    V0_2(v0_2::Policy),
}

impl Pre {
    /// Checks `pre`'s exports against `version`'s world.
    pub(super) fn new(
        version: ContractVersion,
        pre: InstancePre<HostCtx>,
    ) -> wasmtime::Result<Self> {
        Ok(match version {
            ContractVersion::V0_1 => Self::V0_1(v0_1::PolicyPre::new(pre)?),
            ContractVersion::V0_2 => Self::V0_2(v0_2::PolicyPre::new(pre)?),
        })
    }

    pub(super) fn version(&self) -> ContractVersion {
        match self {
            Self::V0_1(_) => ContractVersion::V0_1,
            Self::V0_2(_) => ContractVersion::V0_2,
        }
    }

    pub(super) fn instantiate(
        &self,
        store: &mut wasmtime::Store<HostCtx>,
    ) -> wasmtime::Result<Guest> {
        Ok(match self {
            Self::V0_1(pre) => Guest::V0_1(pre.instantiate(store)?),
            Self::V0_2(pre) => Guest::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Guest {
    /// The guest's `info()` export.
    pub(super) fn info(&self, store: impl AsContextMut) -> wasmtime::Result<PolicyInfo> {
        match self {
            Self::V0_1(p) => v0_1::info(p, store),
            Self::V0_2(p) => v0_2::info(p, store),
        }
    }

    /// The guest's `route()` export on a domain request (converted to its version).
    pub(super) fn route(
        &self,
        store: impl AsContextMut,
        request: &domain::PolicyRequest,
    ) -> wasmtime::Result<Result<domain::Decision, domain::Rejection>> {
        match self {
            Self::V0_1(p) => v0_1::route(p, store, request),
            Self::V0_2(p) => v0_2::route(p, store, request),
        }
    }
}
