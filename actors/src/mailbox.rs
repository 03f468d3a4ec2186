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
//! Lanes are drained round-robin from a rotating start, so a busy lane cannot
//! starve the others, and each lane is FIFO: messages from one `Sender` (or
//! from one thread through a `SharedSender`) arrive in the order sent.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

use crate::doorbell::{Doorbell, DoorbellKind};
use crate::error::TrySendError;
use crate::ring::{self, Consumer, Producer};
use crate::sender::{Sender, SharedSender};
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

/// Source of mailbox ids (keys of the per-thread lane cache). Not part of any
/// protocol, so it is a plain std atomic even under loom.
static NEXT_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// State shared by the owner and every sender.
pub(crate) struct Shared<T> {
    pub(crate) id: u64,
    pub(crate) wake: WakeWord,
    pub(crate) doorbell: Doorbell,
    lane_capacity: usize,
    /// Set once by [`Mailbox::close`] or drop.
    closed: AtomicBool,
    /// Hint that `registry.lanes` holds lanes the owner has not adopted yet.
    new_lanes: AtomicBool,
    registry: Mutex<Registry<T>>,
    /// Doorbell writes made by producers (statistics).
    rings: AtomicU64,
}

struct Registry<T> {
    lanes: Vec<Consumer<T>>,
    closed: bool,
}

impl<T> Shared<T> {
    /// Opens a new lane and returns its producer end. After close the lane is
    /// born closed, so sends on it fail instead of vanishing.
    pub(crate) fn open_lane(&self) -> Producer<T> {
        let (producer, consumer) = ring::channel(self.lane_capacity);
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if registry.closed {
            drop(consumer);
        } else {
            registry.lanes.push(consumer);
            // Release: with the registry mutex, hands the new consumer to the
            // owner's Acquire swap in `adopt_new_lanes`.
            self.new_lanes.store(true, Ordering::Release);
        }
        producer
    }

    pub(crate) fn doorbell_rings(&self) -> u64 {
        // Relaxed: a statistic.
        self.rings.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close_registry`.
        self.closed.load(Ordering::Acquire)
    }

    /// Pushes one message on `lane` and wakes the owner if it is parked.
    pub(crate) fn push(&self, lane: &mut Producer<T>, value: T) -> Result<(), TrySendError<T>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        lane.try_push(value)?;
        self.notify();
        // After notify's SeqCst fence: if the owner dropped its end meanwhile,
        // the message is dropped now (answering whatever it carries) rather
        // than when this lane goes.
        lane.reclaim_if_consumer_gone();
        Ok(())
    }

    /// Rings the doorbell if the wake word says the owner is parked.
    pub(crate) fn notify(&self) {
        if self.wake.notify() {
            // Relaxed: a statistic.
            self.rings.fetch_add(1, Ordering::Relaxed);
            // A failed write can only mean the doorbell is already rung.
            let _ = self.doorbell.ring();
        }
    }

    fn close_registry(&self) -> Vec<Consumer<T>> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.closed = true;
        // Release: senders that see `closed` stop sending.
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut registry.lanes)
    }
}

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
    lanes: Vec<Consumer<T>>,
    /// Where the next round-robin pass starts.
    cursor: usize,
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
        });
        Ok(Self {
            shared,
            lanes: Vec::new(),
            cursor: 0,
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

    /// Hands up to `max` messages to `f`, lane by lane in round-robin order,
    /// each lane in batch (one cursor load and one cursor store per lane).
    /// Lanes whose sender is gone are drained to the end and then reclaimed.
    /// Returns how many messages were handed over. Never blocks.
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
        self.adopt_new_lanes();
        let count = self.lanes.len();
        if count == 0 {
            return 0;
        }
        let start = self.cursor % count;
        self.cursor = start + 1;
        let mut done = 0;
        let mut dead = false;
        for step in 0..count {
            if done >= max {
                break;
            }
            let lane = &mut self.lanes[(start + step) % count];
            let n = lane.drain(max - done, &mut f);
            done += n;
            if n == 0 && lane.is_producer_closed() && lane.is_empty() {
                dead = true;
            }
        }
        if dead {
            self.lanes
                .retain_mut(|lane| !(lane.is_producer_closed() && lane.is_empty()));
        }
        done
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
            return block(false);
        }
        let result = block(true);
        self.shared.wake.awake();
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
        while self.drain(usize::MAX, |m| left.push_back(m)) > 0 {}
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
