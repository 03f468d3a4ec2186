//! The loop's pool of outgoing byte buffers: a bounded free list per
//! thread, shared by the outbound queues ([`crate::buffer::OutboundQueue`])
//! and the io_uring driver's send path, so a busy connection reuses the
//! same few blocks instead of allocating and freeing one per message.
//!
//! Why it exists: a 16 KiB echo used to allocate a fresh 16 KiB block for
//! the queue and free it when the send completed; glibc returns such frees
//! at the top of the heap to the kernel (trim, `madvise`) and the next
//! allocation faults the pages back in, ~7 page faults per message.
//!
//! * **Per loop.** An event loop is one thread and nothing else allocates
//!   outgoing chunks there, so the pool is thread-local: the loop's write
//!   path and its driver reach it without passing it around, and no lock
//!   or atomic is involved. A buffer that ends on another thread (a queue
//!   dropped elsewhere) simply joins that thread's pool or is freed.
//! * **Classes.** Buffers are 4, 8, 16, 32 or 64 KiB of capacity
//!   ([`take`] rounds the request up); anything larger is allocated and
//!   freed as usual, and [`give`] frees a buffer of any other capacity.
//! * **Bounded.** The free list keeps at most [`MAX_KEPT`] bytes of
//!   capacity; past that [`give`] frees. So memory stays bounded whatever
//!   the traffic.
//! * **Idle loops give memory back.** Before each wait the driver calls
//!   [`idle_turn`], which frees everything kept once no buffer was taken
//!   or given for [`IDLE_AFTER`] (turns that used none for that long, not
//!   a single such turn: a loop serving short exchanges, TLS handshakes
//!   say, has turns without a send between turns with one, and freeing
//!   there made it trim the heap and fault the pages back in for every
//!   connection); while it keeps memory the driver sleeps at most
//!   [`IDLE_RELEASE`], so a loop that goes quiet frees it within about two
//!   seconds, and then asks the allocator to hand the free pages back to
//!   the system (see `Driver::wait`).
//!
//! Owns only free capacity (never bytes anybody still reads or the kernel
//! may still read: a buffer comes here only after its last use). It never
//! touches a socket.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Smallest pooled capacity (also the smallest buffer [`take`] hands out).
pub(crate) const MIN_CLASS: usize = 4 * 1024;
/// Largest pooled capacity.
pub(crate) const MAX_CLASS: usize = 64 * 1024;
/// Capacity classes: 4, 8, 16, 32, 64 KiB.
const CLASSES: usize = 5;
/// Bytes of free capacity one thread's pool keeps at most: room for a turn
/// in which 256 connections each finish a 16 KiB send before any of them
/// writes again.
pub(crate) const MAX_KEPT: usize = 4 << 20;

/// Capacity of the small buffer a short reply gets in an empty queue
/// (`buffer.rs`: not a 4 KiB class, see there); pooled in a list of its
/// own, so a reply queued for the io_uring ring does not cost a malloc
/// and a free (callgrind, HTTP on io_uring not pipelined: ~270 of its
/// ~3,800 instructions per request).
pub(crate) const SMALL: usize = 256;
/// Most small buffers one thread's pool keeps (64 KiB; they count in
/// [`MAX_KEPT`] too).
const SMALL_KEPT: usize = 256;

#[derive(Default)]
struct Pool {
    free: [Vec<Vec<u8>>; CLASSES],
    /// Kept buffers of capacity [`SMALL`].
    small: Vec<Vec<u8>>,
    /// Capacity held in `free`, in bytes.
    kept: usize,
    /// A buffer was taken or given since the last [`idle_turn`].
    used: bool,
    /// Since when no buffer was taken or given (seen by [`idle_turn`]).
    unused_since: Option<Instant>,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            free: [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()],
            small: Vec::new(),
            kept: 0,
            used: false,
            unused_since: None,
        })
    };
}

/// The class whose buffers have at least `n` bytes of capacity.
fn class_for_request(n: usize) -> Option<usize> {
    if n > MAX_CLASS {
        return None;
    }
    let size = n.max(MIN_CLASS).next_power_of_two();
    Some((size / MIN_CLASS).trailing_zeros() as usize)
}

/// The class a buffer of capacity `cap` can serve (`None`: not pooled).
fn class_for_capacity(cap: usize) -> Option<usize> {
    if !(MIN_CLASS..=MAX_CLASS).contains(&cap) {
        return None;
    }
    // The largest class not above `cap`.
    Some((usize::BITS - 1 - (cap / MIN_CLASS).leading_zeros()) as usize)
}

/// An empty buffer with room for at least `n` bytes: a kept one when there
/// is one, else a new one of the class's size.
pub(crate) fn take(n: usize) -> Vec<u8> {
    let Some(class) = class_for_request(n) else {
        return Vec::with_capacity(n);
    };
    let kept = POOL
        .try_with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            pool.used = true;
            let buf = pool.free[class].pop()?;
            pool.kept -= buf.capacity();
            Some(buf)
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| Vec::with_capacity(MIN_CLASS << class))
}

/// An empty buffer of capacity [`SMALL`]: a kept one when there is one.
pub(crate) fn take_small() -> Vec<u8> {
    let kept = POOL
        .try_with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            pool.used = true;
            let buf = pool.small.pop()?;
            pool.kept -= buf.capacity();
            Some(buf)
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| Vec::with_capacity(SMALL))
}

/// Takes back a buffer nobody uses any more (its bytes are dropped): kept
/// for the next [`take`] (or [`take_small`]) when its capacity is a pooled
/// one and the pool is under [`MAX_KEPT`], freed otherwise.
pub(crate) fn give(mut buf: Vec<u8>) {
    let cap = buf.capacity();
    if cap == SMALL {
        buf.clear();
        let _ = POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                pool.used = true;
                if pool.small.len() < SMALL_KEPT && pool.kept + cap <= MAX_KEPT {
                    pool.kept += cap;
                    pool.small.push(buf);
                }
            }
        });
        return;
    }
    let Some(class) = class_for_capacity(cap) else {
        return;
    };
    buf.clear();
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            pool.used = true;
            if pool.kept + cap <= MAX_KEPT {
                pool.kept += cap;
                pool.free[class].push(buf);
            }
        }
    });
}

/// Frees every kept buffer of this thread's pool.
#[cfg(test)]
fn release_idle() {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.kept > 0 {
                *pool = Pool::default();
            }
        }
    });
}

/// What [`idle_turn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleTurn {
    /// The pool keeps nothing.
    Empty,
    /// Buffers were used lately: the pool keeps them. The driver bounds
    /// its sleep ([`IDLE_RELEASE`]) so an idle loop comes back to free them.
    Keeps,
    /// No use for [`IDLE_AFTER`]: this many bytes of capacity were freed
    /// (the caller may hand the allocator's free pages back to the system).
    Released(usize),
}

/// Called by the loop's driver before each wait: if no buffer was taken or
/// given for [`IDLE_AFTER`] (whole turns without outgoing traffic that
/// needed one), frees what the pool keeps.
pub(crate) fn idle_turn() -> IdleTurn {
    idle_turn_at(Instant::now)
}

/// [`idle_turn`] with the clock given (read only in a turn without use).
fn idle_turn_at(now: impl FnOnce() -> Instant) -> IdleTurn {
    POOL.try_with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return IdleTurn::Empty;
        };
        if pool.kept == 0 {
            return IdleTurn::Empty;
        }
        if std::mem::take(&mut pool.used) {
            pool.unused_since = None;
            return IdleTurn::Keeps;
        }
        let now = now();
        match pool.unused_since {
            Some(since) if now.saturating_duration_since(since) >= IDLE_AFTER => {
                let freed = pool.kept;
                *pool = Pool::default();
                IdleTurn::Released(freed)
            }
            Some(_) => IdleTurn::Keeps,
            None => {
                pool.unused_since = Some(now);
                IdleTurn::Keeps
            }
        }
    })
    .unwrap_or(IdleTurn::Empty)
}

/// How long a loop whose pool keeps memory sleeps at most, so that an idle
/// loop gives the memory back within about twice this.
pub(crate) const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// How long the pool goes without use before an idle turn frees it (less
/// than [`IDLE_RELEASE`], so the bounded sleep of a quiet loop reaches it).
const IDLE_AFTER: Duration = Duration::from_millis(500);

/// Bytes of free capacity this thread's pool keeps now.
#[cfg(test)]
fn kept() -> usize {
    POOL.try_with(|pool| pool.try_borrow().map_or(0, |p| p.kept))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_on_take_and_down_on_give() {
        assert_eq!(class_for_request(1), Some(0));
        assert_eq!(class_for_request(4096), Some(0));
        assert_eq!(class_for_request(4097), Some(1));
        assert_eq!(class_for_request(16 * 1024), Some(2));
        assert_eq!(class_for_request(MAX_CLASS), Some(4));
        assert_eq!(class_for_request(MAX_CLASS + 1), None);
        assert_eq!(class_for_capacity(4095), None);
        assert_eq!(class_for_capacity(4096), Some(0));
        assert_eq!(class_for_capacity(24 * 1024), Some(2));
        assert_eq!(class_for_capacity(MAX_CLASS), Some(4));
        assert_eq!(class_for_capacity(MAX_CLASS + 1), None);
    }

    #[test]
    fn reuses_a_small_buffer_and_keeps_a_bounded_number() {
        release_idle();
        let mut a = take_small();
        assert_eq!(a.capacity(), SMALL);
        a.extend_from_slice(b"a short reply");
        let ptr = a.as_ptr();
        give(a);
        assert_eq!(kept(), SMALL);
        let b = take_small();
        assert_eq!(b.as_ptr(), ptr, "the same allocation again");
        assert!(b.is_empty(), "its old bytes are gone");
        assert_eq!(kept(), 0);
        for _ in 0..SMALL_KEPT + 10 {
            give(Vec::with_capacity(SMALL));
        }
        assert_eq!(kept(), SMALL_KEPT * SMALL, "at most SMALL_KEPT kept");
        release_idle();
    }

    #[test]
    fn reuses_a_given_buffer_and_stays_bounded() {
        release_idle();
        let mut a = take(16 * 1024);
        assert!(a.capacity() >= 16 * 1024);
        a.extend_from_slice(b"old bytes");
        let ptr = a.as_ptr();
        give(a);
        assert_eq!(kept(), 16 * 1024);
        let b = take(10_000);
        assert_eq!(b.as_ptr(), ptr, "the kept buffer is reused");
        assert!(b.is_empty(), "a reused buffer comes back empty");
        give(b);
        // Never more than the bound, however much comes back.
        for _ in 0..(MAX_KEPT / MAX_CLASS + 10) {
            give(Vec::with_capacity(MAX_CLASS));
        }
        assert!(kept() <= MAX_KEPT);
        // Odd sizes are not kept.
        let before = kept();
        give(Vec::with_capacity(100));
        give(Vec::with_capacity(MAX_CLASS * 2));
        assert_eq!(kept(), before);
        release_idle();
        assert_eq!(kept(), 0);
    }

    #[test]
    fn only_a_pool_unused_for_a_while_is_released() {
        release_idle();
        let start = Instant::now();
        let at = |after: Duration| move || start + after;
        give(take(MIN_CLASS));
        assert_eq!(
            idle_turn_at(at(Duration::ZERO)),
            IdleTurn::Keeps,
            "used this turn: kept"
        );
        assert_eq!(kept(), MIN_CLASS);
        // Turns without use between turns with use (short exchanges) keep it.
        assert_eq!(idle_turn_at(at(Duration::from_millis(1))), IdleTurn::Keeps);
        give(take(MIN_CLASS));
        assert_eq!(idle_turn_at(at(Duration::from_millis(2))), IdleTurn::Keeps);
        assert_eq!(idle_turn_at(at(Duration::from_millis(3))), IdleTurn::Keeps);
        assert_eq!(
            idle_turn_at(at(Duration::from_millis(3) + IDLE_AFTER / 2)),
            IdleTurn::Keeps,
            "unused, but not for long"
        );
        assert_eq!(kept(), MIN_CLASS);
        assert_eq!(
            idle_turn_at(at(Duration::from_millis(3) + IDLE_AFTER)),
            IdleTurn::Released(MIN_CLASS),
            "unused for IDLE_AFTER: released"
        );
        assert_eq!(kept(), 0);
        assert_eq!(idle_turn(), IdleTurn::Empty, "nothing kept");
        const { assert!(IDLE_AFTER.as_nanos() < IDLE_RELEASE.as_nanos()) };
    }
}
