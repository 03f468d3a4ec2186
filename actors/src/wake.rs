//! The wake word: one flag per mailbox saying "the owner is parked or about to
//! park", shared by every producer lane.
//!
//! Owns only the flag and the memory orderings of the park/notify handshake. It
//! never blocks and never touches a file descriptor: the caller of
//! [`WakeWord::notify`] rings the doorbell when told to.
//!
//! # The handshake (a Dekker pair of `SeqCst` fences)
//!
//! ```text
//!  producer                               owner (consumer)
//!  --------                               ----------------
//!  publish message (Release store)        parked := true          (announce)
//!  fence(SeqCst)                          fence(SeqCst)
//!  if parked && swap(parked, false):      if any lane non-empty:  (re-check)
//!      ring doorbell                          parked := false; don't block
//!                                         else block on doorbell / poller
//!                                         parked := false         (awake)
//! ```
//!
//! The two fences are totally ordered. If the producer's comes first, the
//! owner's re-check sees the message and does not block. If the owner's comes
//! first, the producer reads `parked == true`, and exactly one producer wins the
//! swap and rings. Either way the message is seen: no wake-up is lost. While the
//! owner is awake, producers only *read* the flag (its cache line stays shared)
//! and make no system call.
//!
//! loom models `SeqCst` fences (unlike `SeqCst` accesses, which it treats as
//! `AcqRel`), so `tests/loom_wake.rs` checks this protocol as written. One
//! known gap: loom 0.7.2 does not order a plain store after an earlier
//! read-modify-write of the same atomic (tokio-rs/loom#389), which makes it
//! report false deadlocks for several producers each sending several messages
//! across parks; the models stay at the shapes it handles (two producers one
//! message each; one producer across several parks), as their comments say.

use crate::padded::CachePadded;
use crate::sync::{fence, AtomicBool, Ordering};

/// The per-mailbox "owner is parked" flag (see the module docs).
///
/// ```
/// use ringloop_actors::wake::WakeWord;
/// let word = WakeWord::new();
/// // Owner: about to block.
/// word.announce_park();
/// // (the owner re-checks its lanes here, finds them empty, blocks)
/// // Producer, after publishing: exactly one producer is told to ring.
/// assert!(word.notify());
/// assert!(!word.notify());
/// // Owner: woken up.
/// word.awake();
/// assert!(!word.is_parked());
/// ```
#[derive(Debug, Default)]
pub struct WakeWord {
    parked: CachePadded<AtomicBool>,
}

impl WakeWord {
    /// A word for an awake owner.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// assert!(!word.is_parked()); // the owner starts awake
    /// assert!(!word.notify()); // so producers need not ring
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Producer side, called after publishing a message. Returns `true` when
    /// this caller must ring the doorbell; at most one producer gets `true`
    /// per park.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// assert!(!word.notify()); // owner awake: no system call
    /// word.announce_park();
    /// assert!(word.notify()); // this producer rings the doorbell
    /// assert!(!word.notify()); // later ones do not
    /// ```
    #[inline]
    pub fn notify(&self) -> bool {
        // SeqCst fence: orders our publish before the read of `parked`, against
        // the owner's fence in `announce_park` (the Dekker pair in the docs).
        fence(Ordering::SeqCst);
        // Relaxed: the fence above provides the ordering; a stale `true` is
        // settled by the swap, which always reads the latest value.
        self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::Relaxed)
    }

    /// Owner side: announce the intention to park. The caller must re-check
    /// its lanes afterwards and only block if they are all empty.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// word.announce_park();
    /// assert!(word.is_parked());
    /// ```
    #[inline]
    pub fn announce_park(&self) {
        // Relaxed: the fence right after orders it before the lane re-check.
        self.parked.store(true, Ordering::Relaxed);
        // SeqCst fence: pairs with the producers' fence in `notify`.
        fence(Ordering::SeqCst);
    }

    /// Owner side: back awake (after blocking, or instead of it). Producers
    /// stop ringing; what they publish now is found by the owner's next drain
    /// or next re-check.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// word.announce_park();
    /// word.awake(); // found messages on the re-check: not blocking after all
    /// assert!(!word.notify());
    /// ```
    #[inline]
    pub fn awake(&self) {
        // Relaxed: the owner's next `announce_park` fence orders everything
        // that matters; until then producers need no doorbell.
        self.parked.store(false, Ordering::Relaxed);
    }

    /// `true` while the owner has announced parking and no producer has
    /// claimed the wake-up yet.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// word.announce_park();
    /// assert!(word.is_parked());
    /// let _ = word.notify(); // a producer claimed the wake-up
    /// assert!(!word.is_parked());
    /// ```
    pub fn is_parked(&self) -> bool {
        // Relaxed: a diagnostic snapshot.
        self.parked.load(Ordering::Relaxed)
    }
}
