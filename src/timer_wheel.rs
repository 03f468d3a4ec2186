//! [`TimerWheel`]: one hashed timing wheel per event loop, for connection
//! timeouts without a thread (or a heap entry) per timer.
//!
//! Owns only deadlines and keys; it is deterministic (time is a `u64` of
//! milliseconds passed in by the caller) and knows nothing of sockets or
//! clocks. It must never decide that a connection timed out: it reports
//! entries that are due, and the loop checks each against the connection's
//! real state (entries are never removed early; a superseded or stale one is
//! simply ignored when it comes due).
//!
//! ```text
//!   slot = (deadline / granularity) % slots      cursor advances with time
//!   [ ][k3][ ][k1,k7][ ][ ] ... [k2]             entries due later than one
//!        ^cursor                                 revolution stay in place
//! ```

use crate::actors::slab::SlotKey;

pub(crate) struct TimerWheel {
    slots: Vec<Vec<(SlotKey, u64)>>,
    granularity_ms: u64,
    /// The last tick processed by [`advance`](Self::advance).
    tick: u64,
    len: usize,
}

impl TimerWheel {
    /// A wheel of `slots` slots, each `granularity_ms` wide.
    pub(crate) fn new(slots: usize, granularity_ms: u64, now_ms: u64) -> Self {
        let granularity_ms = granularity_ms.max(1);
        Self {
            slots: (0..slots.max(1)).map(|_| Vec::new()).collect(),
            granularity_ms,
            tick: now_ms / granularity_ms,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The tick a deadline belongs to, never in the past (so it fires on the
    /// next advance at the earliest). Callers compare it with the tick of an
    /// entry they already have, to schedule only an earlier one.
    pub(crate) fn tick_of(&self, deadline_ms: u64) -> u64 {
        deadline_ms.div_ceil(self.granularity_ms).max(self.tick + 1)
    }

    /// Schedules `key` at `deadline_ms`; returns the tick it will fire at
    /// (callers compare it to recognise their latest entry).
    pub(crate) fn schedule(&mut self, key: SlotKey, deadline_ms: u64) -> u64 {
        let tick = self.tick_of(deadline_ms);
        let n = self.slots.len() as u64;
        self.slots[(tick % n) as usize].push((key, tick));
        self.len += 1;
        tick
    }

    /// Moves time to `now_ms` and appends every entry now due to `due`, with
    /// the tick it was scheduled for.
    pub(crate) fn advance(&mut self, now_ms: u64, due: &mut Vec<(SlotKey, u64)>) {
        let now_tick = now_ms / self.granularity_ms;
        if now_tick <= self.tick || self.len == 0 {
            self.tick = self.tick.max(now_tick);
            return;
        }
        let n = self.slots.len() as u64;
        // More than one revolution behind: every slot is visited once.
        let steps = (now_tick - self.tick).min(n);
        for step in 1..=steps {
            let slot = &mut self.slots[((self.tick + step) % n) as usize];
            let before = slot.len();
            slot.retain(|&(key, tick)| {
                if tick <= now_tick {
                    due.push((key, tick));
                    false
                } else {
                    true
                }
            });
            self.len -= before - slot.len();
        }
        self.tick = now_tick;
    }

    /// How long until the next tick boundary, if anything is scheduled: the
    /// longest a loop may sleep without missing a deadline.
    pub(crate) fn poll_timeout_ms(&self, now_ms: u64) -> Option<u64> {
        (self.len > 0).then(|| self.granularity_ms - now_ms % self.granularity_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> SlotKey {
        SlotKey {
            index: i,
            generation: 0,
        }
    }

    #[test]
    fn fires_each_entry_once_not_before_its_deadline() {
        let mut wheel = TimerWheel::new(8, 10, 0);
        // Deadlines before, within and beyond one revolution (80 ms).
        let deadlines = [5u64, 10, 11, 79, 80, 81, 250, 1000];
        for (i, d) in deadlines.iter().enumerate() {
            wheel.schedule(key(i as u32), *d);
        }
        let mut fired = vec![None; deadlines.len()];
        let mut due = Vec::new();
        for now in (0..=1100).step_by(3) {
            wheel.advance(now, &mut due);
            for (k, _) in due.drain(..) {
                assert!(fired[k.index as usize].is_none(), "fired twice");
                fired[k.index as usize] = Some(now);
            }
        }
        for (i, d) in deadlines.iter().enumerate() {
            let at = fired[i].expect("every entry fires");
            assert!(at >= *d, "entry {i} fired at {at} before its deadline {d}");
            assert!(at < d + 10 + 3, "entry {i} fired late: {at} for {d}");
        }
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.poll_timeout_ms(1100), None);
    }

    #[test]
    fn a_long_pause_fires_everything_due() {
        let mut wheel = TimerWheel::new(4, 10, 0);
        for i in 0..20 {
            wheel.schedule(key(i), u64::from(i) * 7);
        }
        let mut due = Vec::new();
        wheel.advance(10_000, &mut due);
        assert_eq!(due.len(), 20);
        assert_eq!(wheel.poll_timeout_ms(10_000), None);
    }

    #[test]
    fn poll_timeout_reaches_the_next_tick() {
        let mut wheel = TimerWheel::new(4, 10, 0);
        wheel.schedule(key(1), 100);
        assert_eq!(wheel.poll_timeout_ms(3), Some(7));
        assert_eq!(wheel.poll_timeout_ms(10), Some(10));
    }
}
