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
//!  publish message (Release store)        swap(parked, true)      (announce)
//!  fence(SeqCst)                          fence(SeqCst)
//!  if parked && swap(parked, false):      if any lane non-empty:  (re-check)
//!      ring doorbell                          swap(parked, false); don't block
//!                                         else block on doorbell / poller
//!                                         swap(parked, false)     (awake)
//! ```
//!
//! # Why no wake-up is lost
//!
//! Take one message, published by producer P before its fence `Fp`, and one
//! park of the owner: its announce `A` (the write of `true`), then its fence
//! `Fo`, then the re-check. All `SeqCst` fences are in one total order `S`.
//!
//! * `Fp` before `Fo` in `S`: the owner's re-check, after `Fo`, reads P's
//!   publish or a later value ([atomics.fences]/[atomics.order]: a fence pair
//!   in `S` orders a write before the other side's later read). It finds the
//!   message and does not block.
//! * `Fo` before `Fp` in `S`: P's load of `parked`, after `Fp`, reads `A` or a
//!   write after `A` in the flag's modification order (same rule). After `A`
//!   come only (a) a producer's `swap(false)` that read `true` — that
//!   producer rings, once for this park — or (b) the owner's own `awake`,
//!   which it writes only after it stopped blocking (or decided not to); its
//!   next drain or next park's re-check is ordered after P's publish by the
//!   same rule applied to that park. So P either rings, or sees `true` and
//!   loses the swap to one that rings, or the owner is already past this
//!   park. The message is found in every case.
//!
//! The owner blocks only while the doorbell holds no unconsumed ring, and a
//! ring written after it blocked wakes it (eventfd or pipe); a stale ring from
//! an earlier park only makes it return early, and it re-checks.
//!
//! While the owner is awake, producers only *read* the flag (its cache line
//! stays shared) and make no system call.
//!
//! # Why the owner's writes are swaps
//!
//! The argument above holds with plain stores for `announce_park` and `awake`
//! (write-write coherence orders them after every write the owner has seen).
//! They are read-modify-writes for the model checker: loom 0.7.2 does not
//! order a plain store after an earlier read-modify-write of the same atomic
//! (tokio-rs/loom#389, fix proposed in tokio-rs/loom#391), so with stores it
//! lets a producer's `notify`, fenced after the owner's second announce, read
//! the stale `false` of the first producer's swap, and reports a deadlock
//! that cannot happen (three models did at `LOOM_MAX_PREEMPTIONS=3`; with
//! loom#391 applied to a local copy of loom they passed, and still
//! deadlocked without a fence). A read-modify-write always reads the latest
//! value, so loom orders it correctly; the protocol it checks is the one that
//! ships. The price is one locked instruction per park (two with `awake`),
//! next to an `epoll_wait`/`poll` system call; `notify`, the hot path, is
//! unchanged.
//!
//! loom models `SeqCst` fences (unlike `SeqCst` accesses, which it treats as
//! `AcqRel`), so `tests/loom_wake.rs` checks this protocol as written,
//! including several producers sending several messages across parks.

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
        // A swap, not a store: a read-modify-write follows every producer's
        // earlier claim in the modification order even under loom (module docs).
        self.parked.swap(true, Ordering::Relaxed);
        // SeqCst fence: pairs with the producers' fence in `notify`.
        fence(Ordering::SeqCst);
    }

    /// Owner side: back awake (after blocking, or instead of it). Producers
    /// stop ringing; what they publish now is found by the owner's next drain
    /// or next re-check.
    ///
    /// Returns `true` if the word was still set: no producer claimed this
    /// park's wake-up (no producer that published after the owner's
    /// re-check found it parked). Whatever such a producer published is
    /// found by the owner's *next* park: if the producer's fence comes
    /// before that park's fence (in their total order), by its re-check;
    /// otherwise the producer's load reads that park's announce or later
    /// (the rule in the module docs), and it (or another producer) claims
    /// that park's wake-up, which rings and stops that park's skip. An owner whose
    /// re-check found nothing may therefore skip the drain that follows a
    /// park (`Mailbox::drain_after_park`), and does so only when this
    /// returns `true`, so that a message that woke it is not kept waiting.
    ///
    /// ```
    /// use ringloop_actors::wake::WakeWord;
    /// let word = WakeWord::new();
    /// word.announce_park();
    /// assert!(word.awake()); // not claimed: nobody needed to ring
    /// assert!(!word.notify());
    /// word.announce_park();
    /// assert!(word.notify()); // a producer claimed this park's wake-up
    /// assert!(!word.awake());
    /// ```
    #[inline]
    pub fn awake(&self) -> bool {
        // Relaxed: the owner's next `announce_park` fence orders everything
        // that matters; until then producers need no doorbell. A swap, not a
        // store, for the same reason as in `announce_park`; what it read is
        // ordered by the flag's modification order alone (see above).
        self.parked.swap(false, Ordering::Relaxed)
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
