//! Zero-copy echo on io_uring: a write of bytes that are still in the
//! provided buffer they were received into is sent from that buffer.
//!
//! On io_uring every write is queued (the bytes must outlive the call,
//! see `driver/uring.rs`), which costs a copy of each outgoing message:
//! measured, a tenth of the server's CPU per echoed 16 KiB message
//! (benches/results/u16k-session7-20261205.md). But a handler that
//! answers with what it received (an echo, a proxy forwarding a
//! connection's bytes back, a codec passing a frame through) writes a
//! slice of its input, and that input is a provided buffer of the ring
//! which nothing else needs once the callback returns. So:
//!
//! 1. before an input callback whose input *is* such a buffer (no earlier
//!    leftover joined to it), the loop **offers** its address range in
//!    the callback's [`LoopRef`](super::entry::LoopRef);
//! 2. a write on a connection whose sends go through the ring, with
//!    nothing queued or in flight, of a slice inside the offered range
//!    and of at least [`MIN_FORWARD`] bytes (smaller ones are copied)
//!    **claims** it (`ConnEntry::write_bytes`): the queue counts the bytes
//!    as lent ([`OutboundQueue::push_lent`]), nothing is copied; later
//!    writes of the callback queue behind them as usual;
//! 3. after the callback (and after the loop copied what it left unread),
//!    the loop hands the buffer, cut to the claimed slice, to the ring
//!    instead of giving it back to the kernel (`EventLoop::send_claimed`, in
//!    `io.rs`);
//!    the ring owns it until the send's final completion, then provides
//!    it back.
//!
//! One claim per callback, only by the callback's own connection
//! (`Conn::write_to` withholds the offer from the others: the buffer is
//! sent on the callback's connection). Every site that offers takes the offer
//! back after the callback ([`Forward::take`]), so no other callback ever
//! sees a stale range. On epoll nothing is offered (the receive buffer is
//! the loop's, and a write goes straight to the socket anyway).
//!
//! Owns the offer/claim protocol; never touches a socket or a buffer (and
//! imports nothing of the loop: `conn.rs` uses it).
//!
//! [`OutboundQueue::push_lent`]: crate::buffer::OutboundQueue::push_lent

use std::cell::Cell;

/// Smallest write sent from its receive buffer; smaller ones are copied
/// (a few bytes are cheaper to copy than to track).
///
/// It was a page: at 16 KiB forwarding saved ~0.5 us of user time per
/// message, and at 512 bytes /proc CPU showed no gain under load
/// (benches/results/u16k-session7-20261205.md). Profiled alternately at
/// 1,000 x 512 B (benches/results/uhot-session8-20261205.md), the copy
/// and its bookkeeping (the queue's chunk from the pool, the memmove,
/// taking the chunk back off the queue) were the largest user-space item
/// left: with forwarding from 512 bytes user space fell from 7.8-9.2 %
/// of the server's samples to 5.7-6.6 % (monoio: 6.9-7.4 %). A held
/// buffer costs no extra cache footprint (the kernel walks the buffer
/// ring in order whether or not buffers come back at once), and peers
/// that never read cannot hold more than three quarters of the ring
/// (`Completion::forwards`).
pub(crate) const MIN_FORWARD: usize = 512;

/// Overrides [`MIN_FORWARD`] (bytes, at least 1), for measuring where
/// forwarding starts to pay (`benches/uring_cpu.sh`'s `io-uring-fwd512`).
const MIN_FORWARD_ENV: &str = "RINGLOOP_URING_FORWARD_MIN";

/// The smallest write claimed: [`MIN_FORWARD`], or [`MIN_FORWARD_ENV`]'s,
/// read once per process.
static MIN_CLAIM: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var(MIN_FORWARD_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(MIN_FORWARD, |n| n.max(1))
});

/// The offer/claim of one input callback (see the module doc). Lives in a
/// `Cell` of the callback's `LoopRef`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing offered: every write is queued as usual.
    #[default]
    None,
    /// The callback's input is the provided buffer at `start..start + len`
    /// (addresses).
    Offered { start: usize, len: usize },
    /// A write claimed `len` bytes of the input from `offset`.
    Claimed { offset: usize, len: usize },
}

/// The claimed slice of a callback's input: `offset`, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl Forward {
    /// Offers `input` (a provided buffer's bytes) to the callback's writes.
    #[inline]
    pub(crate) fn offer(cell: &Cell<Forward>, input: &[u8]) {
        cell.set(Forward::Offered {
            start: input.as_ptr() as usize,
            len: input.len(),
        });
    }

    /// Claims `data` if it lies inside the offered input, is at least
    /// [`MIN_FORWARD`] bytes (or what `RINGLOOP_URING_FORWARD_MIN` says),
    /// and nothing was claimed yet: `true` when the
    /// caller may count it as lent instead of copying it.
    #[inline]
    pub(crate) fn claim(cell: &Cell<Forward>, data: &[u8]) -> bool {
        let Forward::Offered { start, len } = cell.get() else {
            return false;
        };
        let at = data.as_ptr() as usize;
        let inside = data.len() >= *MIN_CLAIM
            && at >= start
            && at
                .checked_add(data.len())
                .is_some_and(|end| end <= start + len);
        if inside {
            cell.set(Forward::Claimed {
                offset: at - start,
                len: data.len(),
            });
        }
        inside
    }

    /// Runs `f` (a write to another connection) with the offer withheld,
    /// then puts it back as it was.
    #[inline]
    pub(crate) fn withheld<T>(cell: &Cell<Forward>, f: impl FnOnce() -> T) -> T {
        let offer = cell.replace(Forward::None);
        let out = f();
        cell.set(offer);
        out
    }

    /// Ends the callback's offer: the claim, if a write made one.
    #[inline]
    pub(crate) fn take(cell: &Cell<Forward>) -> Option<Claim> {
        match cell.replace(Forward::None) {
            Forward::Claimed { offset, len } => Some(Claim { offset, len }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_slice_of_the_offered_input_is_claimed_once() {
        let input = vec![7u8; 64 + MIN_FORWARD];
        let other = vec![7u8; 64 + MIN_FORWARD];
        let cell = Cell::new(Forward::None);
        assert!(!Forward::claim(&cell, &input), "nothing offered");
        Forward::offer(&cell, &input);
        assert!(!Forward::claim(&cell, &other), "not the input");
        assert!(!Forward::claim(&cell, &input[..0]), "empty");
        assert!(!Forward::claim(&cell, &input[..MIN_FORWARD - 1]), "small");
        assert!(Forward::claim(&cell, &input[8..8 + MIN_FORWARD]));
        assert!(!Forward::claim(&cell, &input[8..]), "claimed already");
        assert_eq!(
            Forward::take(&cell),
            Some(Claim {
                offset: 8,
                len: MIN_FORWARD
            })
        );
        assert_eq!(cell.get(), Forward::None, "taking ends the offer");
        Forward::offer(&cell, &input[..MIN_FORWARD]);
        assert!(
            !Forward::claim(&cell, &input[8..8 + MIN_FORWARD]),
            "past the offer"
        );
        assert_eq!(Forward::take(&cell), None);
        assert_eq!(cell.get(), Forward::None);
        Forward::offer(&cell, &input);
        let other_claimed = Forward::withheld(&cell, || Forward::claim(&cell, &input));
        assert!(!other_claimed, "withheld from another connection's write");
        assert!(Forward::claim(&cell, &input), "and offered again after");
    }
}
