//! The epoch ticker: the thread that advances the engine's epoch (the clock behind every
//! guest deadline) while guests run, and sleeps while none does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// Epoch tick period of the background ticker.
const TICK: Duration = Duration::from_millis(1);
/// The epoch ticker sleeps after this long without a guest running.
const IDLE_BEFORE_PARKING: Duration = Duration::from_millis(100);

/// Epoch ticks covering `d` (at least one).
pub(super) fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The epoch ticker: advances the engine's epoch every [`TICK`] while guests run, and
/// sleeps once none has run for [`IDLE_BEFORE_PARKING`] (an idle server does not wake a
/// thousand times a second).
#[derive(Default)]
pub(super) struct Ticker {
    /// Guests instantiating or running now.
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

/// Marks a guest as running while alive.
pub(super) struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Call before a guest runs: wakes the ticker if it sleeps.
    pub(super) fn busy(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        Busy(self)
    }

    /// Starts the ticker thread for `engine`; it ends with the engine or on [`Ticker::stop`].
    pub(super) fn start(engine: &Engine) -> std::io::Result<Arc<Self>> {
        let ticker = Arc::new(Self::default());
        let weak = engine.weak();
        let state = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || state.run(&weak))?;
        let _ = ticker.thread.set(thread.thread().clone());
        Ok(ticker)
    }

    /// Ends the ticker thread (waking it if it sleeps).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn run(&self, engine: &wasmtime::EngineWeak) {
        // Ticks follow the wall clock: when a sleep overshoots (a loaded machine), the
        // missed ticks are added at once, so a deadline of N ms expires after about N ms
        // of wall time rather than N oversleeping sleeps.
        let tick_ns = TICK.as_nanos().max(1);
        let mut started = Instant::now();
        let mut ticked: u128 = 0;
        let mut idle: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let Some(engine) = engine.upgrade() else {
                break;
            };
            let due = started.elapsed().as_nanos() / tick_ns;
            while ticked < due {
                engine.increment_epoch();
                ticked += 1;
            }
            drop(engine);
            if self.active.load(Ordering::SeqCst) > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if TICK * idle < IDLE_BEFORE_PARKING {
                continue;
            }
            // `busy` raises `active` before reading `parked`; this sets `parked` before
            // reading `active`: one of the two sees the other, so no guest runs untimed.
            self.parked.store(true, Ordering::SeqCst);
            if self.active.load(Ordering::SeqCst) == 0 {
                std::thread::park_timeout(Duration::from_secs(1));
            }
            self.parked.store(false, Ordering::SeqCst);
            // Time spent parked is not ticked: no guest ran whose deadline it could end.
            started = Instant::now();
            ticked = 0;
            idle = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_to_whole_ticks_of_at_least_one() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(Duration::from_millis(5)), 5);
        assert_eq!(ticks(Duration::from_micros(5_900)), 5);
    }

    #[test]
    fn busy_counts_running_guests() {
        let ticker = Ticker::default();
        let busy = ticker.busy();
        assert_eq!(ticker.active.load(Ordering::SeqCst), 1);
        drop(busy);
        assert_eq!(ticker.active.load(Ordering::SeqCst), 0);
    }
}
