//! The sending side of a mailbox: [`Sender`] (one lane, for a known producer
//! such as the acceptor, an event loop or a pool worker) and [`SharedSender`]
//! (any thread: one lane per thread, opened on first use).
//!
//! Owns only the producer ends of lanes and the wait-for-room policy of the
//! blocking sends. It must never drop a message: every failure hands the
//! message back to the caller.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{SendError, SendTimeoutError, TrySendError};
use crate::ring::{Producer, PushBatch};
use crate::shared::{LaneProducer, Shared, Stamped};
use crate::sync::Arc;

/// Retries `attempt` with [`Backoff`] while the lane is full.
fn send_blocking<T>(
    mut value: T,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(T) -> Result<(), TrySendError<T>>,
) -> Result<(), SendTimeoutError<T>> {
    let mut backoff = Backoff::new();
    loop {
        match attempt(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(v)) => return Err(SendTimeoutError::Closed(v)),
            Err(TrySendError::Full(v)) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(SendTimeoutError::Timeout(v));
                }
                value = v;
                backoff.snooze();
            }
        }
    }
}

fn never_times_out<T>(result: Result<(), SendTimeoutError<T>>) -> Result<(), SendError<T>> {
    result.map_err(|e| SendError(e.into_inner()))
}

/// One producer lane into a [`Mailbox`](crate::Mailbox). `Send`; cloning opens
/// a new lane, so every clone is an independent single producer.
///
/// ```
/// use ringloop_actors::Mailbox;
/// let mut mailbox = Mailbox::<&str>::new()?;
/// let mut tx = mailbox.sender();
/// std::thread::spawn(move || tx.send("from a thread").unwrap()).join().unwrap();
/// assert_eq!(mailbox.try_recv(), Some("from a thread"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    lane: LaneProducer<T>,
}

impl<T> Sender<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        let lane = shared.open_lane();
        Self { shared, lane }
    }

    /// Sends without waiting; hands the message back if the lane is full or
    /// the mailbox is closed. Costs no system call while the owner is awake.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, TrySendError};
    /// let mut mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
    /// let mut tx = mailbox.sender();
    /// tx.try_send(1).unwrap();
    /// match tx.try_send(2) {
    ///     Err(TrySendError::Full(m)) => assert_eq!(m, 2), // handed back
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.shared.push(&mut self.lane, value)
    }

    /// Sends, waiting for room while the lane is full (spinning, yielding,
    /// then sleeping up to 1 ms at a time). Fails only if the mailbox is
    /// closed. Not for event loops: they use an [`Outbox`](crate::Outbox).
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mut mailbox = Mailbox::<u32>::with_config(MailboxConfig::new().lane_capacity(2))?;
    /// let mut tx = mailbox.sender();
    /// let producer = std::thread::spawn(move || {
    ///     for i in 0..100 {
    ///         tx.send(i).unwrap(); // waits whenever the 2-slot lane is full
    ///     }
    /// });
    /// let mut got = Vec::new();
    /// while got.len() < 100 {
    ///     mailbox.drain(usize::MAX, |m| got.push(m));
    /// }
    /// producer.join().unwrap();
    /// assert_eq!(got, (0..100).collect::<Vec<_>>());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        never_times_out(send_blocking(value, None, |v| self.try_send(v)))
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, SendTimeoutError};
    /// use std::time::Duration;
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
    /// let mut tx = mailbox.sender();
    /// tx.send_timeout(1, Duration::from_millis(10)).unwrap();
    /// // Nobody drains: the second message times out and comes back.
    /// match tx.send_timeout(2, Duration::from_millis(10)) {
    ///     Err(SendTimeoutError::Timeout(m)) => assert_eq!(m, 2),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = Instant::now() + timeout;
        send_blocking(value, Some(deadline), |v| self.try_send(v))
    }

    /// Batch publish: moves as many messages as fit from the front of
    /// `queue` into the lane with one cursor store and at most one doorbell
    /// write. Returns how many moved, or `Err(())` if the mailbox is closed.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// use std::collections::VecDeque;
    /// let mut mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(4))?;
    /// let mut tx = mailbox.sender();
    /// let mut queue: VecDeque<u8> = (0..6).collect();
    /// assert_eq!(tx.try_send_from(&mut queue), Ok(4)); // as many as fit
    /// assert_eq!(queue, [4, 5]); // the rest stays queued, in order
    /// mailbox.drain(usize::MAX, drop);
    /// assert_eq!(tx.try_send_from(&mut queue), Ok(2));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn try_send_from(&mut self, queue: &mut VecDeque<T>) -> Result<usize, ()> {
        if self.is_closed() {
            return Err(());
        }
        // One ticket for everything this call publishes, taken once room is
        // known (the first `wrap`), before the publish.
        let shared = &self.shared;
        let mut ticket = None;
        let n = self.lane.push_from_with(queue, |value| Stamped {
            ticket: *ticket.get_or_insert_with(|| shared.take_ticket()),
            value,
        });
        if n > 0 {
            self.shared.notify();
            self.lane.reclaim_if_consumer_gone();
        }
        Ok(n)
    }

    /// Starts a batch whose messages are published together, with one
    /// cursor store and at most one doorbell write, when it is dropped.
    ///
    /// ```
    /// let mut mailbox = ringloop_actors::Mailbox::<u32>::new()?;
    /// let mut tx = mailbox.sender();
    /// {
    ///     let mut batch = tx.batch();
    ///     for i in 0..10 {
    ///         batch.try_send(i).unwrap();
    ///     }
    /// } // published here
    /// let mut got = Vec::new();
    /// mailbox.drain(usize::MAX, |m| got.push(m));
    /// assert_eq!(got, (0..10).collect::<Vec<_>>());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn batch(&mut self) -> SendBatch<'_, T> {
        let closed = self.shared.is_closed();
        SendBatch {
            batch: Some(self.lane.batch()),
            shared: &self.shared,
            closed,
            ticket: self.shared.take_ticket(),
        }
    }

    /// `true` once the mailbox is closed or dropped.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.sender();
    /// assert!(!tx.is_closed());
    /// drop(mailbox);
    /// assert!(tx.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed() || self.lane.is_closed()
    }

    /// Messages this lane holds when full.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(32))?;
    /// assert_eq!(mailbox.sender().capacity(), 32);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.lane.capacity()
    }
}

impl<T> Clone for Sender<T> {
    /// Opens a new lane into the same mailbox.
    fn clone(&self) -> Self {
        Self::new(self.shared.clone())
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("mailbox", &self.shared.id)
            .field("lane", &self.lane)
            .finish()
    }
}

/// Messages sent together (see [`Sender::batch`]).
///
/// ```
/// use ringloop_actors::Mailbox;
/// let mut mailbox = Mailbox::<u8>::new()?;
/// let mut tx = mailbox.sender();
/// let mut batch = tx.batch();
/// batch.try_send(1).unwrap();
/// batch.try_send(2).unwrap();
/// drop(batch); // published together: one cursor store
/// let mut got = Vec::new();
/// mailbox.drain(usize::MAX, |m| got.push(m));
/// assert_eq!(got, [1, 2]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SendBatch<'a, T> {
    /// `None` only while being dropped.
    batch: Option<PushBatch<'a, Stamped<T>>>,
    shared: &'a Shared<T>,
    /// The mailbox was closed when the batch started.
    closed: bool,
    /// The batch's one ticket, taken when it starts (the mailbox's causal
    /// order treats the batch as one send, which begins there).
    ticket: u64,
}

impl<T> SendBatch<'_, T> {
    /// Adds a message; hands it back if the lane is full or the mailbox closed.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(2))?;
    /// let mut tx = mailbox.sender();
    /// let mut batch = tx.batch();
    /// batch.try_send(1).unwrap();
    /// batch.try_send(2).unwrap();
    /// assert!(batch.try_send(3).unwrap_err().is_full()); // the lane holds two
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        match self.batch.as_mut() {
            Some(batch) if !self.closed => {
                let ticket = self.ticket;
                batch.try_push_with(value, |value| Stamped { ticket, value })
            }
            _ => Err(TrySendError::Closed(value)),
        }
    }

    /// Messages in the batch so far.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// let mut batch = tx.batch();
    /// batch.try_send(1).unwrap();
    /// assert_eq!(batch.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.batch.as_ref().map_or(0, PushBatch::len)
    }

    /// `true` if nothing was added yet.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mailbox = Mailbox::<u8>::new()?;
    /// let mut tx = mailbox.sender();
    /// let batch = tx.batch();
    /// assert!(batch.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for SendBatch<'_, T> {
    fn drop(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let any = !batch.is_empty();
        let lane = batch.finish(); // publishes
        if any {
            self.shared.notify();
            // After notify's fence, as for a single send.
            lane.reclaim_if_consumer_gone();
        }
    }
}

/// A lane in the per-thread cache, with its element type erased.
trait CachedLane: Any {
    fn mailbox_gone(&self) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: 'static> CachedLane for Producer<T> {
    fn mailbox_gone(&self) -> bool {
        self.is_closed()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(not(loom))]
thread_local! {
    /// This thread's lanes, keyed by mailbox id. Entries hold only ring
    /// producers, never the mailbox itself, so a closed mailbox's doorbell fd
    /// is released at once; entries of dead mailboxes are pruned whenever a
    /// new lane is added.
    static THREAD_LANES: RefCell<Vec<(u64, Box<dyn CachedLane>)>> = const { RefCell::new(Vec::new()) };
}

// loom runs its threads on one OS thread: a std thread-local would be one
// lane shared by every model thread (and outlive the model).
#[cfg(loom)]
loom::thread_local! {
    static THREAD_LANES: RefCell<Vec<(u64, Box<dyn CachedLane>)>> = RefCell::new(Vec::new());
}

/// A `Send + Sync + Clone` sender for any thread: each thread that sends gets
/// its own SPSC lane, opened on first use and cached thread-locally, so the
/// hot path stays single-producer. Messages sent from one thread arrive in the
/// order sent. A thread's lane is reclaimed when the thread exits (after the
/// owner has drained it).
///
/// ```
/// let mut mailbox = ringloop_actors::Mailbox::<u32>::new()?;
/// let tx = mailbox.shared_sender();
/// let handles: Vec<_> = (0..4)
///     .map(|i| {
///         let tx = tx.clone();
///         std::thread::spawn(move || tx.send(i).unwrap())
///     })
///     .collect();
/// handles.into_iter().for_each(|h| h.join().unwrap());
/// let mut got = Vec::new();
/// mailbox.drain(usize::MAX, |m| got.push(m));
/// got.sort();
/// assert_eq!(got, [0, 1, 2, 3]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SharedSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> SharedSender<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        Self { shared }
    }

    /// How many times producers have rung the mailbox's doorbell so far.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.shared_sender();
    /// tx.try_send(1).unwrap(); // the owner is awake: no doorbell write
    /// assert_eq!(tx.doorbell_rings(), mailbox.doorbell_rings());
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn doorbell_rings(&self) -> u64 {
        self.shared.doorbell_rings()
    }

    /// A [`Sender`] with a lane of its own into the same mailbox, for a
    /// producer that wants to own its lane (wrap it in an
    /// [`Outbox`](crate::Outbox) to never block). Its messages are ordered
    /// with everyone else's by the mailbox's causal order.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, Outbox};
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let shared = mailbox.shared_sender();
    /// let mut outbox = Outbox::new(shared.sender()); // a lane of its own
    /// outbox.send(1).unwrap();
    /// shared.send(2).unwrap(); // this thread's shared lane
    /// assert_eq!(mailbox.drain(usize::MAX, drop), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sender(&self) -> Sender<T> {
        Sender::new(self.shared.clone())
    }
}

impl<T: Send + 'static> SharedSender<T> {
    /// Runs `f` on this thread's lane into the mailbox, opening it if needed.
    fn with_lane<R>(&self, f: impl FnOnce(&mut LaneProducer<T>) -> R) -> R {
        let id = self.shared.id;
        let mut f = Some(f);
        // Lanes of dead mailboxes are moved out of the cache here and dropped
        // only after the cache's `borrow_mut` has ended (below the `try_with`):
        // dropping a lane can drop the last messages in its ring, and a
        // message's `Drop` may itself send through a `SharedSender` on this
        // thread, which borrows the cache again (a nested `borrow_mut` panics).
        // Same reason as in `forget_lane`.
        let mut pruned = Vec::new();
        let cached = THREAD_LANES.try_with(|cell| {
            let mut lanes = cell.borrow_mut();
            let index = match lanes.iter().position(|(key, _)| *key == id) {
                Some(index) => index,
                None => {
                    let mut i = 0;
                    while i < lanes.len() {
                        if lanes[i].1.mailbox_gone() {
                            pruned.push(lanes.swap_remove(i));
                        } else {
                            i += 1;
                        }
                    }
                    lanes.push((id, Box::new(self.shared.open_lane())));
                    lanes.len() - 1
                }
            };
            let lane = lanes[index]
                .1
                .as_any_mut()
                .downcast_mut::<LaneProducer<T>>();
            // The id is unique per mailbox and a mailbox has one element type,
            // so the downcast cannot fail; if it ever did, fall through to a
            // one-off lane below rather than panic.
            lane.map(|lane| (f.take().expect("called once"))(lane))
        });
        drop(pruned); // the cache is no longer borrowed
        match cached {
            Ok(Some(result)) => result,
            // The thread-local cache is being torn down (thread exit): use a
            // one-off lane. Its messages are drained before it is reclaimed.
            _ => {
                let mut lane = self.shared.open_lane();
                (f.take().expect("called once"))(&mut lane)
            }
        }
    }

    /// Sends without waiting; hands the message back if this thread's lane is
    /// full or the mailbox is closed.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.shared_sender();
    /// if let Err(e) = tx.try_send(1) {
    ///     let _message = e.into_inner(); // full or closed: keep it for later
    /// }
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let result = self.with_lane(|lane| self.shared.push(lane, value));
        if let Err(TrySendError::Closed(_)) = &result {
            self.forget_lane();
        }
        result
    }

    /// Sends, waiting for room while this thread's lane is full. Fails only if
    /// the mailbox is closed.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.shared_sender();
    /// let t = tx.clone();
    /// std::thread::spawn(move || t.send(1).unwrap()).join().unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(mailbox.drain(usize::MAX, drop), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        never_times_out(send_blocking(value, None, |v| self.try_send(v)))
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// use std::time::Duration;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.shared_sender();
    /// tx.send_timeout(1, Duration::from_millis(100)).unwrap();
    /// mailbox.close();
    /// assert!(tx.send_timeout(2, Duration::from_millis(100)).is_err()); // closed
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = Instant::now() + timeout;
        send_blocking(value, Some(deadline), |v| self.try_send(v))
    }

    /// `true` once the mailbox is closed or dropped.
    ///
    /// ```
    /// use ringloop_actors::Mailbox;
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let tx = mailbox.shared_sender();
    /// assert!(!tx.is_closed());
    /// mailbox.close();
    /// assert!(tx.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Drops this thread's cached lane into a closed mailbox.
    fn forget_lane(&self) {
        let id = self.shared.id;
        let _ = THREAD_LANES.try_with(|cell| {
            // Take the entry out before dropping it, so no borrow is held
            // while a ring (and its messages) is dropped.
            let removed = {
                let mut lanes = cell.borrow_mut();
                lanes
                    .iter()
                    .position(|(key, _)| *key == id)
                    .map(|i| lanes.swap_remove(i))
            };
            drop(removed);
        });
    }
}

impl<T> Clone for SharedSender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for SharedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSender")
            .field("mailbox", &self.shared.id)
            .finish()
    }
}
