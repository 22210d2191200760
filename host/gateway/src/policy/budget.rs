//! The host-call budget: an import whose cost grows with the text a guest hands it
//! (`pii.detect`, `tokens.count`, `embeddings.embed`/`score`) is refused once the decision's deadline has passed, or
//! when the text is more than the time left could scan. Host code cannot be interrupted
//! by the epoch, so this is what keeps a guest from stalling a decision in host calls.

use std::time::{Duration, Instant};

/// Bytes a scanning import is assumed to get through per millisecond: about twice the
/// PII detector's plain-text speed on the 2-core dev VM (~25 KB/ms), so a call the time
/// left can hold is never refused, and one that is let through overruns the deadline by
/// at most about as much again.
pub const SCAN_BYTES_PER_MS: usize = 64 << 10;

/// Bytes the `embeddings` imports are assumed to get through per millisecond: a small
/// sentence-embedding model on a CPU core embeds a few KB of text per millisecond, and
/// reads at most its 256-token window (about 1 KB) of it.
pub const EMBED_BYTES_PER_MS: usize = 4 << 10;

/// A host call refused for lack of time: classified as a deadline failure.
#[derive(Debug)]
pub struct OverBudget {
    import: &'static str,
    bytes: usize,
    remaining: Duration,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host call {} on {} bytes refused: {} µs left of the decision's deadline",
            self.import,
            self.bytes,
            self.remaining.as_micros()
        )
    }
}

impl std::error::Error for OverBudget {}

/// Allows a scan of `bytes` by `import` when the time left until `deadline` covers it.
pub(super) fn charge(
    deadline: Instant,
    import: &'static str,
    bytes: usize,
) -> Result<(), OverBudget> {
    charge_at(deadline, import, bytes, SCAN_BYTES_PER_MS)
}

/// [`charge`] for an import that gets through `bytes_per_ms`.
pub(super) fn charge_at(
    deadline: Instant,
    import: &'static str,
    bytes: usize,
    bytes_per_ms: usize,
) -> Result<(), OverBudget> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let allowed = remaining.as_micros().saturating_mul(bytes_per_ms as u128) / 1000;
    if remaining.is_zero() || bytes as u128 > allowed {
        return Err(OverBudget {
            import,
            bytes,
            remaining,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_refused_past_the_deadline_or_beyond_the_time_left() {
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(charge(soon, "pii.detect", 10).is_ok());
        assert!(charge(soon, "pii.detect", SCAN_BYTES_PER_MS).is_ok());
        let err = charge(soon, "pii.detect", 4 << 20).unwrap_err();
        assert!(
            err.to_string().contains("pii.detect on 4194304 bytes"),
            "{err}"
        );
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(charge(past, "tokens.count", 0).is_err());
        // Embedding is slower than scanning: what a scan may take, an embedding may not.
        assert!(charge_at(soon, "embeddings.embed", 1000, EMBED_BYTES_PER_MS).is_ok());
        assert!(charge_at(soon, "embeddings.embed", 100 << 10, EMBED_BYTES_PER_MS).is_err());
    }
}
