//! What WASI gives a guest instead of the machine's time and entropy: clocks that stand
//! still and a random source seeded from the request id, so a decision depends only on
//! its inputs (and replay reproduces it). The `clock` import is a policy's only time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// What `wasi:clocks/wall-clock.now` answers: the Unix epoch, always.
pub const FIXED_WALL_CLOCK: Duration = Duration::ZERO;
/// What `wasi:clocks/monotonic-clock.now` answers (ns): 0, always.
pub const FIXED_MONOTONIC_NS: u64 = 0;
/// What `wasi:random/insecure-seed` answers: fixed (a warm instance keeps its WASI
/// context across requests, so it cannot follow the request).
pub const INSECURE_SEED: u128 = 0x5377_6974_6368_7961_7264_2d73_6565_6421;

/// A wall clock that never moves.
pub(super) struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

/// A monotonic clock that never moves.
pub(super) struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        FIXED_MONOTONIC_NS
    }
}

/// A deterministic generator (SplitMix64) whose state the host resets for each request
/// ([`SeededRandom::reseed`]); clones share the state, so the copy inside the WASI
/// context follows a reseed made through the copy the host keeps.
#[derive(Clone, Debug)]
pub(super) struct SeededRandom(Arc<AtomicU64>);

impl SeededRandom {
    /// A generator seeded for `request_id`.
    pub(super) fn new(request_id: &str) -> Self {
        Self(Arc::new(AtomicU64::new(seed(request_id))))
    }

    /// Restarts the sequence for `request_id` (a warm instance taking a new request).
    pub(super) fn reseed(&self, request_id: &str) {
        self.0.store(seed(request_id), Ordering::Relaxed);
    }

    fn next(&self) -> u64 {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The first 8 bytes of sha256(`request_id`): the same seed in every process.
fn seed(request_id: &str) -> u64 {
    let digest = Sha256::digest(request_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn the_sequence_follows_the_request_id() {
        let mut a = SeededRandom::new("req-1");
        let first: Vec<u64> = (0..3).map(|_| a.next_u64()).collect();
        let mut b = SeededRandom::new("req-1");
        assert_eq!(first, (0..3).map(|_| b.next_u64()).collect::<Vec<_>>());
        let mut c = SeededRandom::new("req-2");
        assert_ne!(first[0], c.next_u64());
        // A clone shares the state: reseeding one restarts the other.
        let mut inside = a.clone();
        a.reseed("req-1");
        assert_eq!(inside.next_u64(), first[0]);
        let mut bytes = [0u8; 11];
        inside.fill_bytes(&mut bytes);
        assert_ne!(bytes, [0u8; 11]);
    }
}
