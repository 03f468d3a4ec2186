//! When a loop's idle receive buffers are given back to the system: the
//! rule, kept apart from the ring so it can be tested without a clock.
//!
//! A burst of receives leaves the provided buffer ring's pages resident
//! (the kernel walks the ring in order, so it touches every buffer it was
//! given). Giving them back costs a `madvise` and, when traffic comes back,
//! a page fault per page touched again: worth it for a loop that has gone
//! quiet, not for a busy one. So a release happens only once no receive
//! completed for [`RELEASE_AFTER`] while buffers that came back are waiting
//! to be released; in the meantime the ring's waits are bounded by it, so
//! an idle loop wakes once to release and then sleeps as long as it likes.
//! A busy loop pays one compare per wait and no clock read (a turn with
//! receives resets the rule without looking at the time).
//!
//! Owns the decision only; never touches memory or the ring.

use std::time::{Duration, Instant};

/// How long a loop must go without a receive before the pages of its
/// returned receive buffers are given back (see the module doc). Short
/// enough that a connection-holding server that just went idle reports its
/// idle footprint promptly; long enough that a loop between two bursts of a
/// steady conversation keeps its buffers warm.
pub(crate) const RELEASE_AFTER: Duration = Duration::from_millis(50);

/// The release rule of one ring (see the module doc).
#[derive(Debug)]
pub(crate) struct IdleRelease {
    /// How long without a receive before a release; `None`: never release
    /// (a ring whose kernel may write into buffers outside its thread's
    /// `io_uring_enter`, where releasing could zero bytes just received).
    after: Option<Duration>,
    /// The end of the first wait that brought no receive, since the last
    /// one that did (only read while buffers wait to be released).
    quiet_since: Option<Instant>,
    /// The current wait's timeout was shortened to `after`: if it times out
    /// with no receive, the loop has been quiet that long.
    bounded: bool,
}

impl IdleRelease {
    /// A rule releasing after `after` without receives (`None`: never).
    pub(crate) fn new(after: Option<Duration>) -> IdleRelease {
        IdleRelease {
            after,
            quiet_since: None,
            bounded: false,
        }
    }

    /// The timeout for the next wait, given the caller's: shortened to the
    /// release delay while buffers wait to be released (`pending`), so an
    /// idle loop wakes up to release them.
    pub(crate) fn bound(&mut self, pending: bool, timeout: Option<Duration>) -> Option<Duration> {
        self.bounded = false;
        let Some(after) = self.after.filter(|_| pending) else {
            return timeout;
        };
        match timeout {
            Some(t) if t <= after => timeout,
            _ => {
                self.bounded = true;
                Some(after)
            }
        }
    }

    /// After a wait and its completions: whether to release now.
    /// `received`: a receive completed; `timed_out`: the wait ended at its
    /// timeout; `now` reads the clock (only called on a quiet turn with
    /// buffers pending).
    pub(crate) fn after_wait(
        &mut self,
        pending: bool,
        received: bool,
        timed_out: bool,
        now: impl FnOnce() -> Instant,
    ) -> bool {
        let bounded = std::mem::take(&mut self.bounded);
        let Some(after) = self.after.filter(|_| pending) else {
            self.quiet_since = None;
            return false;
        };
        if received {
            self.quiet_since = None;
            return false;
        }
        if bounded && timed_out {
            // A whole bounded wait without a receive: quiet long enough.
            self.quiet_since = None;
            return true;
        }
        // Woken early (a timer, the doorbell, a send's completion): count
        // from the first such turn.
        let now = now();
        match self.quiet_since {
            Some(since) if now.saturating_duration_since(since) >= after => {
                self.quiet_since = None;
                true
            }
            Some(_) => false,
            None => {
                self.quiet_since = Some(now);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_millis(50);

    fn never() -> Instant {
        panic!("a busy or clean loop must not read the clock")
    }

    #[test]
    fn nothing_pending_leaves_waits_alone_and_never_releases() {
        let mut rule = IdleRelease::new(Some(AFTER));
        assert_eq!(rule.bound(false, None), None);
        assert_eq!(rule.bound(false, Some(AFTER * 10)), Some(AFTER * 10));
        assert!(!rule.after_wait(false, false, true, never));
    }

    #[test]
    fn a_pending_release_bounds_long_waits_only() {
        let mut rule = IdleRelease::new(Some(AFTER));
        assert_eq!(rule.bound(true, None), Some(AFTER), "an idle sleep");
        assert_eq!(rule.bound(true, Some(AFTER * 3)), Some(AFTER));
        let short = Some(Duration::from_millis(3));
        assert_eq!(rule.bound(true, short), short, "a timer comes first");
        assert_eq!(rule.bound(true, Some(Duration::ZERO)), Some(Duration::ZERO));
    }

    #[test]
    fn a_busy_loop_never_releases_and_reads_no_clock() {
        let mut rule = IdleRelease::new(Some(AFTER));
        for _ in 0..1000 {
            rule.bound(true, None);
            assert!(!rule.after_wait(true, true, false, never));
        }
    }

    #[test]
    fn a_bounded_wait_that_times_out_without_receives_releases() {
        let mut rule = IdleRelease::new(Some(AFTER));
        rule.bound(true, None);
        assert!(rule.after_wait(true, false, true, never));
        // Released: nothing pending, the loop sleeps without a bound.
        assert_eq!(rule.bound(false, None), None);
    }

    #[test]
    fn early_wake_ups_count_quiet_time_from_the_first() {
        let mut rule = IdleRelease::new(Some(AFTER));
        let t0 = Instant::now();
        // A doorbell every 10 ms: never a whole bounded wait.
        for i in 0..5 {
            rule.bound(true, None);
            assert!(!rule.after_wait(true, false, false, || t0 + AFTER / 5 * i));
        }
        rule.bound(true, None);
        assert!(rule.after_wait(true, false, false, || t0 + AFTER));
        // A receive in between starts the count again.
        rule.bound(true, None);
        assert!(!rule.after_wait(true, false, false, || t0));
        assert!(!rule.after_wait(true, true, false, never));
        assert!(!rule.after_wait(true, false, false, || t0 + AFTER));
        assert!(!rule.after_wait(true, false, false, || t0 + AFTER + AFTER / 2));
        assert!(rule.after_wait(true, false, false, || t0 + AFTER * 2));
    }

    #[test]
    fn a_short_timer_timeout_is_not_a_quiet_period() {
        let mut rule = IdleRelease::new(Some(AFTER));
        let t0 = Instant::now();
        // The loop's 10 ms timer bounds the wait, not the rule: timing out
        // proves only 10 ms of quiet.
        assert_eq!(
            rule.bound(true, Some(Duration::from_millis(10))),
            Some(Duration::from_millis(10))
        );
        assert!(!rule.after_wait(true, false, true, || t0));
    }

    #[test]
    fn a_ring_that_may_not_release_never_does_and_never_bounds() {
        let mut rule = IdleRelease::new(None);
        assert_eq!(rule.bound(true, None), None);
        assert!(!rule.after_wait(true, false, true, never));
    }
}
