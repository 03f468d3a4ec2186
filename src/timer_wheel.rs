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
//!
//! The wheel also knows its earliest entry, so a loop sleeps until the next
//! deadline rather than waking every tick while any timer exists: an idle
//! server with a 60 s timeout per connection wakes about once a minute, not
//! 100 times a second. Finding the next entry after one fires walks forward
//! from the cursor to the first slot holding an entry of that very tick,
//! usually a few slots.

use crate::actors::slab::SlotKey;

pub(crate) struct TimerWheel {
    slots: Vec<Vec<(SlotKey, u64)>>,
    granularity_ms: u64,
    /// The last tick processed by [`advance`](Self::advance).
    tick: u64,
    len: usize,
    /// The smallest tick of any entry (`u64::MAX` when empty): every entry
    /// has a tick above `tick`, so this is when the loop must wake next.
    earliest: u64,
    /// A tick the loop must wake by although no entry is due then
    /// (`u64::MAX`: none); see [`wake_at`](Self::wake_at).
    wake: u64,
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
            earliest: u64::MAX,
            wake: u64::MAX,
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
        self.earliest = self.earliest.min(tick);
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
        if self.earliest <= now_tick {
            self.earliest = self.find_earliest();
        }
    }

    /// The smallest tick of any entry, all of which are above `self.tick`.
    /// An entry of tick `t` within one revolution sits in slot `t % n`, so
    /// the first slot (walking forward from the cursor) that holds an entry
    /// of exactly its own tick holds the earliest one; entries further away
    /// than a revolution are found by looking at them all.
    fn find_earliest(&self) -> u64 {
        if self.len == 0 {
            return u64::MAX;
        }
        let n = self.slots.len() as u64;
        for step in 1..=n {
            let tick = self.tick + step;
            if self.slots[(tick % n) as usize]
                .iter()
                .any(|&(_, t)| t == tick)
            {
                return tick;
            }
        }
        self.slots
            .iter()
            .flatten()
            .map(|&(_, t)| t)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Makes the loop wake by `deadline_ms` (`None`: forget it) without
    /// an entry: for deadlines the caller holds back and may yet schedule
    /// (it calls this again at every turn, replacing the last). Nothing is
    /// reported due for it.
    pub(crate) fn wake_at(&mut self, deadline_ms: Option<u64>) {
        self.wake = deadline_ms.map_or(u64::MAX, |d| self.tick_of(d));
    }

    /// How long until the earliest entry is due (or the wake-up asked for
    /// with [`wake_at`](Self::wake_at)), if anything is: the longest a loop
    /// may sleep without missing a deadline (0 when one is due already).
    pub(crate) fn poll_timeout_ms(&self, now_ms: u64) -> Option<u64> {
        let tick = self.earliest.min(self.wake);
        (self.len > 0 || self.wake != u64::MAX).then(|| {
            tick.saturating_mul(self.granularity_ms)
                .saturating_sub(now_ms)
        })
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
    fn poll_timeout_reaches_the_earliest_deadline_not_the_next_tick() {
        let mut wheel = TimerWheel::new(4, 10, 0);
        assert_eq!(wheel.poll_timeout_ms(0), None);
        wheel.schedule(key(1), 100);
        assert_eq!(wheel.poll_timeout_ms(3), Some(97));
        assert_eq!(wheel.poll_timeout_ms(10), Some(90));
        // An earlier entry brings the wake-up forward.
        wheel.schedule(key(2), 41);
        assert_eq!(wheel.poll_timeout_ms(10), Some(40)); // tick 5 (41 rounded up)
        let mut due = Vec::new();
        wheel.advance(49, &mut due);
        assert!(due.is_empty(), "nothing is due before its tick");
        assert_eq!(wheel.poll_timeout_ms(49), Some(1));
        wheel.advance(50, &mut due);
        assert_eq!(due, [(key(2), 5)]);
        // The next one is more than a revolution (40 ms) away: still found.
        assert_eq!(wheel.poll_timeout_ms(50), Some(50));
        wheel.advance(100, &mut due);
        assert_eq!(due.len(), 2);
        assert_eq!(wheel.poll_timeout_ms(100), None);
    }

    #[test]
    fn a_wake_up_without_an_entry_bounds_the_sleep_until_replaced() {
        let mut wheel = TimerWheel::new(4, 10, 0);
        wheel.wake_at(Some(75));
        assert_eq!(wheel.poll_timeout_ms(0), Some(80), "tick 8");
        wheel.schedule(key(1), 200);
        assert_eq!(wheel.poll_timeout_ms(0), Some(80), "the earlier of the two");
        let mut due = Vec::new();
        wheel.advance(80, &mut due);
        assert!(due.is_empty(), "a wake-up is never reported due");
        wheel.wake_at(None);
        assert_eq!(wheel.poll_timeout_ms(80), Some(120), "the entry again");
        wheel.advance(200, &mut due);
        assert_eq!(wheel.len(), 0);
        wheel.wake_at(Some(300));
        assert_eq!(
            wheel.poll_timeout_ms(200),
            Some(100),
            "with no entry at all"
        );
        wheel.wake_at(None);
        assert_eq!(wheel.poll_timeout_ms(200), None);
    }

    #[test]
    fn the_earliest_entry_is_tracked_through_any_schedule() {
        // Against a brute-force minimum, over pseudo-random schedules and
        // advances: the loop never sleeps past a deadline nor wakes for none.
        let mut wheel = TimerWheel::new(16, 10, 0);
        let mut live: Vec<(SlotKey, u64)> = Vec::new();
        let mut due = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now = 0;
        for i in 0..5_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                now += x % 37;
                wheel.advance(now, &mut due);
                for d in due.drain(..) {
                    let at = live.iter().position(|e| *e == d).expect("was live");
                    live.swap_remove(at);
                }
            } else {
                let k = key(i);
                let tick = wheel.schedule(k, now + x % 700);
                live.push((k, tick));
            }
            let expected = live.iter().map(|&(_, t)| t * 10 - now.min(t * 10)).min();
            assert_eq!(wheel.poll_timeout_ms(now), expected, "at step {i}");
        }
    }
}
