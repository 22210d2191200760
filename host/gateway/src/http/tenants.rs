//! Tenant admission: a client-named tenant must be a short plain name; with tenants
//! configured an unknown one is refused or served as `default`, and without, the number
//! of distinct names the gateway tracks (ledger, budgets, canary hashing) is capped.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::config::{Config, Tenancy, UnknownTenant, defaults};

/// Longest tenant name a client may use.
pub const MAX_TENANT_LEN: usize = 64;

/// Why a tenant name was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not 1–[`MAX_TENANT_LEN`] bytes of `A-Z a-z 0-9 . _ - @ +`.
    Invalid,
    /// Tenants are configured and this is none of them.
    Unknown,
    /// No tenants are configured and the cap on distinct names is reached.
    TooMany,
}

/// Decides which tenant a request's client-named tenant becomes.
#[derive(Debug)]
pub struct TenantGate {
    rule: Tenancy,
    /// The configured names (`[tenants.*]`, API keys, scoped policies, `default`);
    /// `None` when no `[tenants.*]` is configured.
    known: Option<HashSet<String>>,
    /// Names admitted so far when none are configured (at most `rule.max_tenants`).
    seen: RwLock<HashSet<Box<str>>>,
}

impl Default for TenantGate {
    /// No configured tenants, the default rule.
    fn default() -> Self {
        Self {
            rule: Tenancy::default(),
            known: None,
            seen: RwLock::new(HashSet::new()),
        }
    }
}

/// Whether `name` is a tenant name a client may use.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_TENANT_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'))
}

impl TenantGate {
    pub fn new(config: &Config) -> Self {
        let known = (!config.tenants.is_empty()).then(|| {
            let mut known: HashSet<String> = config.tenants.keys().cloned().collect();
            known.extend(config.client_keys.values().cloned());
            for p in &config.policy.scoped {
                known.extend(p.tenants.iter().cloned());
            }
            known.insert(defaults::TENANT.to_owned());
            known
        });
        Self {
            rule: config.tenancy,
            known,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The tenant a request naming `name` is served as, or why it is refused.
    pub fn admit(&self, name: String) -> Result<String, Refusal> {
        if !valid_name(&name) {
            return Err(Refusal::Invalid);
        }
        if name == defaults::TENANT {
            return Ok(name);
        }
        let admitted = match &self.known {
            Some(known) => known.contains(&name),
            None => self.track(&name),
        };
        match (admitted, self.rule.unknown, &self.known) {
            (true, _, _) => Ok(name),
            (false, UnknownTenant::Default, _) => Ok(defaults::TENANT.to_owned()),
            (false, UnknownTenant::Reject, Some(_)) => Err(Refusal::Unknown),
            (false, UnknownTenant::Reject, None) => Err(Refusal::TooMany),
        }
    }

    /// Whether `name` is tracked, adding it while there is room.
    fn track(&self, name: &str) -> bool {
        let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
        if seen.contains(name) {
            return true;
        }
        if seen.len() >= self.rule.max_tenants {
            return false;
        }
        drop(seen);
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.rule.max_tenants && !seen.contains(name) {
            return false;
        }
        seen.insert(name.into());
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gate(extra: &str) -> TenantGate {
        let toml = format!(
            "{extra}\n[policy]\nstatic_targets = [\"a\"]\n[[backends]]\nname = \"a\"\n\
             kind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n"
        );
        TenantGate::new(&Config::parse(&toml).unwrap())
    }

    #[test]
    fn names_are_short_and_plain() {
        for ok in ["acme", "a.b_c-d", "bob@example.com", "x+1", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a\nb", "é", "a/b", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(gate("").admit("a\nb".into()), Err(Refusal::Invalid));
    }

    #[test]
    fn configured_tenants_refuse_or_map_unknown_ones() {
        let g = gate("[tenants.acme]\nhard_cap_usd = 1");
        assert_eq!(g.admit("acme".into()).unwrap(), "acme");
        assert_eq!(g.admit("default".into()).unwrap(), "default");
        assert_eq!(g.admit("globex".into()), Err(Refusal::Unknown));
        let g = gate("[auth]\nunknown_tenant = \"default\"\n[tenants.acme]\nhard_cap_usd = 1");
        assert_eq!(g.admit("globex".into()).unwrap(), "default");
    }

    #[test]
    fn without_configured_tenants_distinct_names_are_capped() {
        let g = gate("[auth]\nmax_tenants = 2");
        assert_eq!(g.admit("a".into()).unwrap(), "a");
        assert_eq!(g.admit("b".into()).unwrap(), "b");
        assert_eq!(g.admit("a".into()).unwrap(), "a");
        assert_eq!(g.admit("c".into()), Err(Refusal::TooMany));
        assert_eq!(g.admit("default".into()).unwrap(), "default");
        let g = gate("[auth]\nmax_tenants = 1\nunknown_tenant = \"default\"");
        assert_eq!(g.admit("a".into()).unwrap(), "a");
        assert_eq!(g.admit("b".into()).unwrap(), "default");
        assert_eq!(g.seen.read().unwrap().len(), 1);
    }
}
