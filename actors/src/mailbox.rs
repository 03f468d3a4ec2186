//! The mailbox: the receiving side of an actor. Owns the set of producer lanes
//! (one SPSC [`ring`](crate::ring) each), the shared wake word and the
//! doorbell, and the park protocol that ties them together.
//!
//! It must never block a producer and never lose a message: a lane whose
//! sender is gone is drained to its end before it is reclaimed, and messages
//! left in lanes when everything is dropped are dropped exactly once.
//!
//! # Lanes
//!
//! Every [`Sender`] is its own lane: [`Mailbox::sender`] and `Sender::clone`
//! each open a fresh SPSC ring and register it. The owner picks new lanes up at
//! its next [`drain`](Mailbox::drain) (one `Relaxed` load of a hint flag per
//! turn while nothing changed). Threads that cannot keep a `Sender` of their
//! own (a `Sync` handle used from anywhere) use a [`SharedSender`], which opens
//! one lane per thread on first use and keeps it in a thread-local cache.
//!
//! Each lane is FIFO: messages from one `Sender` (or from one thread through
//! a `SharedSender`) arrive in the order sent. Across lanes, see below.
//!
//! # Causal order across lanes
//!
//! The owner receives messages in an order consistent with *happens-before*,
//! whatever lanes they travel on: if one send happens-before another (it
//! returned, and then something the sending thread did was seen by the
//! thread that makes the other send: a flag, a channel, a lock, a join),
//! the first is received first. This is what `examples/echo_pool` relies
//! on: a worker's write returns, it sets `done`, the loop sees `done` and
//! hands the next job to another worker, whose write must not overtake.
//! Sends that do not happen-before one another (truly concurrent ones)
//! arrive in some order.
//!
//! **Tickets.** Every publish carries a ticket from one counter per mailbox
//! (one `fetch_add` per message, or one per batch, shared by the batch's
//! messages), taken after the send began (a single send: once it knows its
//! lane has room; a [`SendBatch`](crate::SendBatch): when the batch starts)
//! and before it publishes. If send A happens-before send B, A's `fetch_add` happens-before
//! B's, so `ticket(A) < ticket(B)` (read-modify-writes of one atomic are
//! totally ordered consistently with happens-before); and A's publish
//! (a `Release` store of its lane's tail) happens-before B's.
//!
//! **Scans.** The owner cannot simply take the smallest ticket in sight:
//! reading the lanes one by one, it may read A's lane (empty) just before A
//! is published and B's lane just after B is. So [`Mailbox::drain`] works in
//! *scans*: one `Acquire` load of every lane's tail, starting from a *start
//! lane*, and it hands over only messages that cannot have an unseen
//! predecessor, in ticket order:
//!
//! * a message visible before this scan began: its load acquired its
//!   publish, and with it every predecessor's publish, so every load of this
//!   scan sees those predecessors;
//! * a message first seen by this scan on the start lane: every other lane
//!   is read after it, so the same holds, provided no lane was registered
//!   that the scan did not read, which a look at the `new_lanes` hint after
//!   the scan rules out (a predecessor's lane is registered before it
//!   publishes);
//! * a message first seen on another lane may have a predecessor that an
//!   earlier load of this scan missed. Let `bound` be the smallest ticket
//!   first seen on those lanes (or on the start lane, if a lane came in).
//!   Such messages, and everything from `bound` on, wait for the next scan,
//!   which sees them as visible before it began.
//!
//! So a message handed over has every predecessor visible, and the
//! predecessor's smaller ticket puts it first. Nothing ever waits for a
//! ticket that is taken but not published yet (the sender's `fetch_add` has
//! no matching "gap" on the owner's side): a sender preempted between the
//! two delays only its own message. A message held back is visible, so
//! [`Mailbox::has_messages`] reports it and the owner's park re-check does
//! not block; the next drain's first scan hands it over. A drain makes up to
//! three scans, enough for new messages to be handed over in the same call.
//! The start lane is the first lane that showed new messages in the previous
//! scan, so a single busy producer is served in one scan per drain.
//! `tests/loom_causal.rs` checks this under loom.
//!
//! The ticket order also makes delivery fair: the oldest message in sight
//! goes first, so a busy lane cannot starve the others.
//!
//! What this does not cover: a message that sat in an [`Outbox`](crate::Outbox)'s
//! local overflow is published (and takes its ticket) only when the outbox
//! flushes it, so it is ordered by that flush, not by the `send` call that
//! queued it (see the outbox's docs).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

use crate::doorbell::{Doorbell, DoorbellKind};
use crate::padded::CachePadded;
use crate::ring::{self, Consumer};
use crate::sender::{Sender, SharedSender};
use crate::shared::{LaneConsumer, Registry, Shared};
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::wake::WakeWord;

/// Default number of messages one lane holds.
///
/// ```
/// use ringloop_actors::{Mailbox, DEFAULT_LANE_CAPACITY};
/// let mailbox = Mailbox::<u8>::new()?;
/// assert_eq!(mailbox.lane_capacity(), DEFAULT_LANE_CAPACITY);
/// # Ok::<(), std::io::Error>(())
/// ```
pub const DEFAULT_LANE_CAPACITY: usize = 1024;

/// Scans one [`Mailbox::drain`] call makes at most (see the module docs):
/// the second hands over what the first saw arrive on other lanes; the third
/// gives a steady stream from several lanes one more chance.
const SCANS_PER_DRAIN: usize = 3;

/// Source of mailbox ids (keys of the per-thread lane cache). Not part of any
/// protocol, so it is a plain std atomic even under loom.
static NEXT_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// Settings for a [`Mailbox`].
///
/// ```
/// use ringloop_actors::{DoorbellKind, Mailbox, MailboxConfig};
/// let config = MailboxConfig::new().lane_capacity(64).doorbell(DoorbellKind::Pipe);
/// let mailbox: Mailbox<u32> = Mailbox::with_config(config)?;
/// assert_eq!(mailbox.doorbell().kind(), DoorbellKind::Pipe);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MailboxConfig {
    /// Messages per lane, rounded up to a power of two (default 1024).
    pub lane_capacity: usize,
    /// The doorbell to open (default: eventfd, else a pipe).
    pub doorbell: DoorbellKind,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            lane_capacity: DEFAULT_LANE_CAPACITY,
            doorbell: DoorbellKind::Auto,
        }
    }
}

impl MailboxConfig {
    /// The defaults.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, DEFAULT_LANE_CAPACITY};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new())?;
    /// assert_eq!(mailbox.lane_capacity(), DEFAULT_LANE_CAPACITY);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of messages per lane (1 to 2^30; rounded up to a
    /// power of two).
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(100))?;
    /// assert_eq!(mailbox.lane_capacity(), 128); // rounded up to a power of two
    /// assert!(Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(0)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lane_capacity(mut self, capacity: usize) -> Self {
        self.lane_capacity = capacity;
        self
    }

    /// Chooses the doorbell.
    ///
    /// ```
    /// use ringloop_actors::{DoorbellKind, Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().doorbell(DoorbellKind::Pipe))?;
    /// assert_eq!(mailbox.doorbell().kind(), DoorbellKind::Pipe);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn doorbell(mut self, kind: DoorbellKind) -> Self {
        self.doorbell = kind;
        self
    }
}

/// The receiving side of an actor: owned by one thread, fed by any number of
/// [`Sender`]s (see the module docs).
///
/// ```
/// use ringloop_actors::Mailbox;
/// let mut mailbox = Mailbox::<String>::new()?;
/// let mut tx = mailbox.sender();
/// std::thread::spawn(move || tx.send("hello".to_string()).unwrap());
/// let got = mailbox.recv_timeout(std::time::Duration::from_secs(5));
/// assert_eq!(got.as_deref(), Some("hello"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Mailbox<T> {
    shared: Arc<Shared<T>>,
    lanes: Vec<LaneConsumer<T>>,
    /// The lane the next scan starts from (module docs, "Scans").
    start: usize,
    /// Scratch for `hand_over_below`: each lane's oldest visible ticket.
    heads: Vec<u64>,
    /// The last park found every lane empty and no sender claimed its
    /// wake-up: the next [`drain_after_park`](Mailbox::drain_after_park)
    /// may skip the lanes (see there).
    quiet_park: bool,
}

impl<T> Mailbox<T> {
    /// A mailbox with the default [`MailboxConfig`].
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<&str>::new()?;
    /// mailbox.sender().try_send("hi").unwrap();
    /// assert_eq!(mailbox.try_recv(), Some("hi"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Self> {
        Self::with_config(MailboxConfig::default())
    }

    /// A mailbox with the given settings. Fails if the doorbell cannot be
    /// opened or the lane capacity is out of range.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u64>::with_config(MailboxConfig::new().lane_capacity(16))?;
    /// assert_eq!(mailbox.lane_capacity(), 16);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_config(config: MailboxConfig) -> io::Result<Self> {
        if config.lane_capacity == 0 || config.lane_capacity > ring::MAX_CAPACITY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mailbox lane capacity must be between 1 and {}, not {}",
                    ring::MAX_CAPACITY,
                    config.lane_capacity
                ),
            ));
        }
        let shared = Arc::new(Shared {
            // Relaxed: only uniqueness matters, which the RMW guarantees.
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            wake: WakeWord::new(),
            doorbell: Doorbell::new(config.doorbell)?,
            lane_capacity: config.lane_capacity,
            closed: AtomicBool::new(false),
            new_lanes: AtomicBool::new(false),
            registry: Mutex::new(Registry {
                lanes: Vec::new(),
                closed: false,
            }),
            rings: AtomicU64::new(0),
            tickets: CachePadded::new(AtomicU64::new(0)),
        });
        Ok(Self {
            shared,
            lanes: Vec::new(),
            start: 0,
            heads: Vec::new(),
            quiet_park: false,
        })
    }

    /// Opens a new lane and returns its sender.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u32>::new()?;
    /// let mut tx = mailbox.sender(); // a lane of its own: FIFO, single producer
    /// let producer = std::thread::spawn(move || {
    ///     for i in 0..3 {
    ///         tx.send(i).unwrap();
    ///     }
    /// });
    /// producer.join().unwrap();
    /// let mut got = Vec::new();
    /// mailbox.drain(usize::MAX, |m| got.push(m));
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sender(&self) -> Sender<T> {
        Sender::new(self.shared.clone())
    }

    /// A `Send + Sync + Clone` sender that gives each thread its own lane.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u32>::new()?;
    /// let tx = mailbox.shared_sender(); // Sync: use it through a shared reference
    /// std::thread::scope(|s| {
    ///     s.spawn(|| tx.send(1).unwrap());
    ///     s.spawn(|| tx.send(2).unwrap());
    /// });
    /// let mut got = Vec::new();
    /// mailbox.drain(usize::MAX, |m| got.push(m));
    /// got.sort();
    /// assert_eq!(got, [1, 2]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shared_sender(&self) -> SharedSender<T> {
        SharedSender::new(self.shared.clone())
    }

    /// The doorbell, for registration in the owner's poller.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// use std::os::fd::{AsFd, AsRawFd};
    /// let mailbox = Mailbox::<u8>::new()?;
    /// // Register this fd (readable = rung) in the owner's epoll/poll set.
    /// let fd = mailbox.doorbell().as_fd();
    /// assert!(fd.as_raw_fd() >= 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn doorbell(&self) -> &Doorbell {
        &self.shared.doorbell
    }

    /// Messages per lane.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(8))?;
    /// assert_eq!(mailbox.lane_capacity(), 8);
    /// assert_eq!(mailbox.sender().capacity(), 8);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lane_capacity(&self) -> usize {
        self.shared.lane_capacity.next_power_of_two()
    }

    /// Lanes currently adopted by the owner.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut a = mailbox.sender();
    /// let mut b = a.clone(); // every Sender is a lane of its own
    /// a.try_send(1).unwrap();
    /// b.try_send(2).unwrap();
    /// mailbox.drain(usize::MAX, drop); // adopts the new lanes
    /// assert_eq!(mailbox.lane_count(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// How many times producers have rung the doorbell so far.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// tx.try_send(1).unwrap();
    /// // The owner was not parked, so the send needed no doorbell write.
    /// assert_eq!(mailbox.doorbell_rings(), 0);
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn doorbell_rings(&self) -> u64 {
        self.shared.doorbell_rings()
    }

    /// `true` once [`close`](Self::close) was called.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// assert!(!mailbox.is_closed());
    /// mailbox.close();
    /// assert!(mailbox.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    #[inline]
    fn adopt_new_lanes(&mut self) {
        // Relaxed first: the common case (nothing new) costs one plain load of
        // a line producers almost never write.
        if self.shared.new_lanes.load(Ordering::Relaxed)
            // Acquire: pairs with the Release in `open_lane`.
            && self.shared.new_lanes.swap(false, Ordering::Acquire)
        {
            let mut registry = self
                .shared
                .registry
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.lanes.append(&mut registry.lanes);
        }
    }

    /// Hands up to `max` messages to `f`, in causal order across lanes (see
    /// the module docs), each run of messages from one lane in batch (one
    /// cursor store per run). Lanes whose sender is gone are drained to the
    /// end and then reclaimed. Returns how many messages were handed over.
    /// Never blocks. A message that arrived during the call may be left for
    /// the next one ([`has_messages`](Self::has_messages) reports it).
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u32>::new()?;
    /// let mut tx = mailbox.sender();
    /// for i in 0..10 {
    ///     tx.try_send(i).unwrap();
    /// }
    /// let mut sum = 0;
    /// assert_eq!(mailbox.drain(4, |m| sum += m), 4); // at most 4 per turn
    /// assert_eq!(sum, 0 + 1 + 2 + 3);
    /// assert_eq!(mailbox.drain(usize::MAX, |m| sum += m), 6);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        if max == 0 {
            // Owners call `drain(0, ..)` to adopt new lanes.
            self.adopt_new_lanes();
            return 0;
        }
        if let [lane] = &mut self.lanes[..] {
            // One lane: its FIFO is the whole order, unless a lane was
            // registered meanwhile. Relaxed: read after the lane's Acquire
            // load of its tail, as in `scan`; if set, the general path's
            // scan adopts the new lane first.
            lane.refresh();
            if !self.shared.new_lanes.load(Ordering::Relaxed) {
                let n = lane.drain_visible(max, |m| f(m.value));
                lane.release_taken();
                if n == 0 {
                    self.reclaim_dead_lanes();
                }
                return n;
            }
        }
        let mut done = 0;
        for _ in 0..SCANS_PER_DRAIN {
            if done >= max {
                break;
            }
            let bound = self.scan();
            done += self.hand_over_below(bound, max - done, &mut f);
            if !self.lanes.iter().any(Consumer::has_visible) {
                break;
            }
        }
        self.reclaim_dead_lanes();
        done
    }

    /// [`drain`](Self::drain) for an owner that parks with
    /// [`park_with`](Self::park_with) between drains: skips the lanes
    /// (hands over nothing) when the last park's re-check found every lane
    /// empty and no sender claimed that park's wake-up. Skips at most once
    /// per park: the next call drains.
    ///
    /// Why nothing is lost: a message the re-check did not see was
    /// published by a sender whose fence came after the owner's, and the
    /// owner's *next* park's re-check sees it (see
    /// [`WakeWord::awake`](crate::wake::WakeWord::awake)), so that park does
    /// not block and the drain after it hands the message over. Why the
    /// claim matters: a sender that claimed the wake-up published after
    /// the re-check, while the owner slept; draining at once delivers what
    /// woke the owner without the extra turn. What a skip saves: the scan
    /// of every lane, on the turns of an owner whose mailbox is mostly
    /// empty (an event loop busy with I/O). Checked under loom
    /// (`tests/loom_wake.rs`, the `quiet_park` models).
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u32>::new()?;
    /// let mut tx = mailbox.sender();
    /// mailbox.drain(0, drop); // adopt the lane
    /// mailbox.park_with(|_| ()); // nothing waiting, nobody rang
    /// tx.try_send(1).unwrap(); // after the park's re-check
    /// assert_eq!(mailbox.drain_after_park(usize::MAX, drop), 0); // skipped
    /// // The next park sees it and must not block.
    /// assert!(!mailbox.park_with(|may_block| may_block));
    /// let mut got = Vec::new();
    /// assert_eq!(mailbox.drain_after_park(usize::MAX, |m| got.push(m)), 1);
    /// assert_eq!(got, [1]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn drain_after_park(&mut self, max: usize, f: impl FnMut(T)) -> usize {
        if std::mem::take(&mut self.quiet_park) {
            return 0;
        }
        self.drain(max, f)
    }

    /// One scan (module docs): adopts new lanes, loads every lane's tail
    /// from the start lane on, and returns the bound below which every
    /// visible message may be handed over. Moves the start to the first lane
    /// that showed new messages.
    fn scan(&mut self) -> u64 {
        self.adopt_new_lanes();
        let count = self.lanes.len();
        if count == 0 {
            return u64::MAX;
        }
        let start = if self.start < count { self.start } else { 0 };
        let mut bound = u64::MAX;
        let mut start_lane_new = None;
        let mut next_start = None;
        for step in 0..count {
            let index = if start + step < count {
                start + step
            } else {
                start + step - count
            };
            let lane = &mut self.lanes[index];
            if let Some(seq) = lane.refresh() {
                if step == 0 {
                    start_lane_new = Some(seq);
                } else {
                    bound = bound.min(lane.peek_at(seq, |m| m.ticket));
                }
                next_start.get_or_insert(index);
            }
        }
        if let Some(seq) = start_lane_new {
            // Relaxed: a predecessor's lane was registered (Release) before
            // the predecessor was published, which happens-before the
            // Acquire load that showed the start lane's new message, which
            // comes before this load: coherence makes the hint visible.
            if self.shared.new_lanes.load(Ordering::Relaxed) {
                bound = bound.min(self.lanes[start].peek_at(seq, |m| m.ticket));
            }
        }
        self.start = next_start.unwrap_or(start);
        bound
    }

    /// Hands visible messages with a ticket below `bound` to `f`, smallest
    /// ticket first, up to `max`: a run from one lane at a time, as long as
    /// its tickets stay below every other lane's oldest.
    fn hand_over_below(&mut self, bound: u64, max: usize, f: &mut impl FnMut(T)) -> usize {
        let oldest_ticket = |lane: &LaneConsumer<T>| lane.peek(|m| m.ticket).unwrap_or(u64::MAX);
        self.heads.clear();
        self.heads.extend(self.lanes.iter().map(oldest_ticket));
        let mut done = 0;
        while done < max {
            // The lane whose oldest visible ticket is smallest, and the next
            // smallest oldest ticket (or `bound`), which ends its run.
            let (mut best, mut oldest, mut run_end) = (None, bound, bound);
            for (index, &ticket) in self.heads.iter().enumerate() {
                if ticket < oldest {
                    run_end = oldest;
                    oldest = ticket;
                    best = Some(index);
                } else if ticket < run_end {
                    run_end = ticket;
                }
            }
            let Some(index) = best else {
                break;
            };
            let lane = &mut self.lanes[index];
            done += if run_end == u64::MAX {
                // Nothing else visible and no bound: the whole lane.
                lane.drain_visible(max - done, |m| f(m.value))
            } else {
                // Tickets are unique across lanes (equal only within a
                // batch), so `<` cannot stop a run at another lane's equal
                // ticket.
                lane.drain_visible_while(max - done, |m| m.ticket < run_end, |m| f(m.value))
            };
            if run_end == bound {
                // No other lane had anything below the bound: done.
                break;
            }
            self.heads[index] = oldest_ticket(lane);
        }
        // One head store per lane that gave something (even if `f` panicked
        // above, a lane's `Drop` stores its head before anything is
        // reclaimed, so nothing taken is dropped twice).
        for lane in &mut self.lanes {
            lane.release_taken();
        }
        done
    }

    /// Drops lanes whose sender is gone and whose every message was taken.
    fn reclaim_dead_lanes(&mut self) {
        let dead = |lane: &mut LaneConsumer<T>| {
            !lane.has_visible() && lane.is_producer_closed() && lane.is_empty()
        };
        if self.lanes.iter_mut().any(dead) {
            self.lanes.retain_mut(|lane| !dead(lane));
            self.start = 0;
        }
    }

    /// Takes one message, if any is ready. Never blocks.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<char>::new()?;
    /// assert_eq!(mailbox.try_recv(), None); // never blocks
    /// mailbox.sender().try_send('x').unwrap();
    /// assert_eq!(mailbox.try_recv(), Some('x'));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Option<T> {
        let mut slot = None;
        self.drain(1, |m| slot = Some(m));
        slot
    }

    /// `true` if a message (or a new lane) is waiting. Re-reads every lane.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// assert!(!mailbox.has_messages());
    /// let mut tx = mailbox.sender(); // a new lane alone already counts
    /// tx.try_send(7).unwrap();
    /// assert!(mailbox.has_messages());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn has_messages(&mut self) -> bool {
        // Relaxed: in the park protocol the owner's SeqCst fence comes first.
        self.shared.new_lanes.load(Ordering::Relaxed)
            || self.lanes.iter_mut().any(|l| !l.is_empty())
    }

    /// The park protocol for an owner with its own poller: announces parking,
    /// re-checks every lane, then calls `block(may_block)`. `may_block` is
    /// `false` when messages are already waiting: the poller must then poll
    /// without blocking. While `block` runs with `true`, any sender that
    /// publishes a message rings the doorbell, whose fd the poller watches.
    /// An owner that will not block (a zero timeout) should poll without
    /// calling this: announcing a park costs senders a doorbell write.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// tx.try_send(1).unwrap();
    /// // A message is waiting, so the owner is told not to block.
    /// assert!(!mailbox.park_with(|may_block| may_block));
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn park_with<R>(&mut self, block: impl FnOnce(bool) -> R) -> R {
        self.shared.wake.announce_park();
        if self.has_messages() {
            self.shared.wake.awake();
            self.quiet_park = false;
            return block(false);
        }
        let result = block(true);
        // Still parked: no sender claimed the wake-up (see
        // `drain_after_park`).
        self.quiet_park = self.shared.wake.awake();
        result
    }

    /// Parks on the doorbell until a message arrives or `timeout` passes
    /// (`None`: no limit), for owners without a poller. Returns at once if a
    /// message is already waiting. May return early (spuriously).
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// use std::time::Duration;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     tx.send(1).unwrap(); // rings the doorbell: the owner is parked
    /// });
    /// // Park until something arrives (it may wake early: loop).
    /// let got = loop {
    ///     if let Some(m) = mailbox.try_recv() {
    ///         break m;
    ///     }
    ///     mailbox.park(Some(Duration::from_secs(5)))?;
    /// };
    /// assert_eq!(got, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            // Nothing to wait for: announcing a park would only make the
            // next sender ring a doorbell nobody sleeps on.
            return Ok(());
        }
        let shared = self.shared.clone();
        self.park_with(|may_block| {
            if may_block {
                shared.doorbell.wait(timeout).map(drop)
            } else {
                Ok(())
            }
        })
    }

    /// Blocks until a message arrives or `timeout` passes.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// use std::time::Duration;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// assert_eq!(mailbox.recv_timeout(Duration::from_millis(5)), None); // timed out
    /// let mut tx = mailbox.sender();
    /// std::thread::spawn(move || tx.send(9).unwrap());
    /// assert_eq!(mailbox.recv_timeout(Duration::from_secs(5)), Some(9));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<T> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.try_recv() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.park(Some(left)).is_err() {
                return self.try_recv();
            }
        }
    }

    /// Closes the mailbox: from now on every send fails with its message
    /// handed back. Messages already in the lanes stay there for the owner to
    /// [`drain`](Self::drain). Idempotent.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// tx.try_send(1).unwrap();
    /// mailbox.close();
    /// assert!(tx.try_send(2).unwrap_err().is_closed()); // refused, handed back
    /// assert_eq!(mailbox.try_recv(), Some(1)); // what was queued stays
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(&mut self) {
        let pending = self.shared.close_registry();
        self.lanes.extend(pending);
    }

    /// Closes the mailbox and returns every message still queued, so that
    /// none is lost on shutdown.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// let left = mailbox.close_and_drain(); // nothing is lost on shutdown
    /// assert_eq!(left, [1, 2]);
    /// assert!(tx.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_and_drain(&mut self) -> VecDeque<T> {
        self.close();
        let mut left = VecDeque::new();
        // A drain may leave messages that arrived during it for the next
        // one; after the close, no new ones come, so this ends.
        while self.drain(usize::MAX, |m| left.push_back(m)) > 0
            || self.lanes.iter().any(Consumer::has_visible)
        {}
        left
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        // Senders learn that we are gone; queued messages are dropped with the
        // rings, exactly once, when their last end goes.
        drop(self.shared.close_registry());
    }
}

impl<T> fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("id", &self.shared.id)
            .field("lanes", &self.lanes.len())
            .field("closed", &self.is_closed())
            .field("doorbell", &self.shared.doorbell)
            .finish_non_exhaustive()
    }
}
