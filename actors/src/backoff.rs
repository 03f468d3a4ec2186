//! [`Backoff`]: how a blocked sender waits for room without burning a core.
//!
//! Owns only the waiting schedule. It must never be used by an event loop,
//! which keeps undeliverable messages in an [`Outbox`](crate::Outbox) instead.

use std::time::Duration;

use crate::sync::thread;

/// Spin briefly, then yield, then sleep with a doubling pause capped at 1 ms.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

const SPIN_STEPS: u32 = 6;
const YIELD_STEPS: u32 = 10;
const MAX_SLEEP: Duration = Duration::from_millis(1);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Waits a little longer than last time.
    pub(crate) fn snooze(&mut self) {
        if cfg!(loom) {
            // loom has no clock and explores every interleaving at a yield.
            thread::yield_now();
        } else if self.step < SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                std::hint::spin_loop();
            }
        } else if self.step < SPIN_STEPS + YIELD_STEPS {
            thread::yield_now();
        } else {
            let exp = (self.step - SPIN_STEPS - YIELD_STEPS).min(7);
            let pause = Duration::from_micros(8u64 << exp).min(MAX_SLEEP);
            std::thread::sleep(pause);
        }
        self.step = self.step.saturating_add(1);
    }
}
