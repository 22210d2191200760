//! `[server]` connection limits and `[auth]` tenancy rules: what a client may hold open
//! and which tenant names it may use. Validated here, beside their types.

use std::time::Duration;

use super::raw::{RawAuth, RawServer};
use super::{ConfigError, defaults, invalid};

/// Limits on client connections (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnLimits {
    /// Open client connections at most; more are closed as soon as they are accepted
    /// (lowered at start to half the process's file limit when that is smaller).
    pub max_connections: usize,
    /// Time a client gets to send a request's headers, counted from when the connection
    /// waits for its next request: also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Time a client gets to send a whole request body.
    pub body_read_timeout: Duration,
    /// Slowest accepted body upload, bytes per second after a grace of
    /// [`defaults::BODY_RATE_GRACE_MS`]; 0 checks only the whole-body deadline.
    pub body_min_bytes_per_s: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: defaults::MAX_CONNECTIONS,
            header_read_timeout: Duration::from_millis(defaults::HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(defaults::BODY_READ_TIMEOUT_MS),
            body_min_bytes_per_s: defaults::BODY_MIN_BYTES_PER_S,
        }
    }
}

/// What happens to a tenant name the gateway does not admit: with `[tenants.*]`
/// configured, a name none of them (nor an API key) has; without, a new name past
/// [`Tenancy::max_tenants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTenant {
    /// Refused: 403.
    Reject,
    /// Served and billed as the `default` tenant.
    Default,
}

/// Tenant admission (`[auth]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenancy {
    pub unknown: UnknownTenant,
    /// Distinct tenant names tracked when none are configured (the ledger and the
    /// per-tenant state grow with them).
    pub max_tenants: usize,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            unknown: UnknownTenant::Reject,
            max_tenants: defaults::MAX_TENANTS,
        }
    }
}

/// `[server]` connection keys: positive timeouts and cap.
pub(super) fn conn_limits(raw: &RawServer) -> Result<ConnLimits, ConfigError> {
    let d = ConnLimits::default();
    let ms = |key: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(invalid(format!("server.{key}"), "must be positive")),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(default),
    };
    let max_connections = raw.max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 {
        return Err(invalid("server.max_connections", "must be positive"));
    }
    Ok(ConnLimits {
        max_connections,
        header_read_timeout: ms(
            "header_read_timeout_ms",
            raw.header_read_timeout_ms,
            d.header_read_timeout,
        )?,
        body_read_timeout: ms(
            "body_read_timeout_ms",
            raw.body_read_timeout_ms,
            d.body_read_timeout,
        )?,
        body_min_bytes_per_s: raw.body_min_bytes_per_s.unwrap_or(d.body_min_bytes_per_s),
    })
}

/// `[auth]` tenancy keys: `unknown_tenant` is `reject` or `default`; `max_tenants` > 0.
pub(super) fn tenancy(raw: &RawAuth) -> Result<Tenancy, ConfigError> {
    let d = Tenancy::default();
    let unknown = match raw.unknown_tenant.as_deref() {
        None => d.unknown,
        Some("reject") => UnknownTenant::Reject,
        Some("default") => UnknownTenant::Default,
        Some(other) => {
            return Err(invalid(
                "auth.unknown_tenant",
                format!("{other:?}: must be \"reject\" or \"default\""),
            ));
        }
    };
    let max_tenants = raw.max_tenants.unwrap_or(d.max_tenants);
    if max_tenants == 0 {
        return Err(invalid("auth.max_tenants", "must be positive"));
    }
    Ok(Tenancy {
        unknown,
        max_tenants,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Config;
    use super::*;

    const BACKEND: &str = "[policy]\nstatic_targets = [\"a\"]\n[[backends]]\nname = \"a\"\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n";

    #[test]
    fn defaults_fill_unset_keys() {
        let cfg = Config::parse(BACKEND).unwrap();
        assert_eq!(cfg.server.conn, ConnLimits::default());
        assert_eq!(cfg.tenancy, Tenancy::default());
    }

    #[test]
    fn keys_are_read_and_bad_values_name_the_key() {
        let cfg = Config::parse(&format!(
            "[server]\nmax_connections = 64\nbody_read_timeout_ms = 500\nbody_min_bytes_per_s = 0\n\
             [auth]\nunknown_tenant = \"default\"\nmax_tenants = 5\n{BACKEND}"
        ))
        .unwrap();
        assert_eq!(cfg.server.conn.max_connections, 64);
        assert_eq!(
            cfg.server.conn.body_read_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(cfg.server.conn.body_min_bytes_per_s, 0);
        assert_eq!(cfg.tenancy.unknown, UnknownTenant::Default);
        assert_eq!(cfg.tenancy.max_tenants, 5);
        for (bad, key) in [
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            (
                "[server]\nbody_read_timeout_ms = 0\n",
                "server.body_read_timeout_ms",
            ),
            (
                "[server]\nheader_read_timeout_ms = 0\n",
                "server.header_read_timeout_ms",
            ),
            (
                "[auth]\nunknown_tenant = \"maybe\"\n",
                "auth.unknown_tenant",
            ),
            ("[auth]\nmax_tenants = 0\n", "auth.max_tenants"),
        ] {
            let err = Config::parse(&format!("{bad}{BACKEND}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }
}
