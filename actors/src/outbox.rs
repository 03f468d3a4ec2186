//! The outbox: how an actor that must never block (an event loop) sends to
//! another actor's mailbox.
//!
//! Owns one [`Sender`] and a local overflow queue. When the destination lane is
//! full, messages wait in the overflow, in order, and go out on a later
//! [`flush`](Outbox::flush), which the loop calls once per turn after draining
//! its own mailbox. Two loops sending to each other with both lanes full
//! therefore cannot deadlock: neither waits, and each keeps draining its own
//! mailbox, which frees the other's lane. The overflow only holds what this
//! loop produced itself; callers bound it by checking [`held`](Outbox::held)
//! (an event loop stops reading from sockets while it is large).
//!
//! # Order
//!
//! Messages from one outbox always arrive in the order sent. Across senders,
//! the mailbox's causal order (see [`Mailbox`](crate::Mailbox)) holds from
//! the moment a message enters the lane: a message that went straight in is
//! ordered by its `send`, but a held one takes its place (its ticket) only
//! when a [`flush`](Outbox::flush) moves it into the lane. Until then,
//! another thread that learns `send` returned and sends to the same mailbox
//! may be received first. Holding the ticket from `send` instead would make
//! the owner wait for this outbox's next flush before it could hand over
//! anything newer, from any lane: a loop that stalls or exits with messages
//! held would stall its peer. Callers who need the stronger order wait for
//! [`held`](Outbox::held) to reach 0 (or `flush` to return `Ok(true)`):
//! from then on everything this outbox sent is ordered before any later
//! send, by anyone.

use std::collections::VecDeque;
use std::fmt;

use crate::error::{SendError, TrySendError};
use crate::sender::Sender;

/// A never-blocking sender with a local overflow (see the module docs).
///
/// ```
/// use ringloop_actors::{Mailbox, MailboxConfig, Outbox};
/// let mut mailbox = Mailbox::<u32>::with_config(MailboxConfig::new().lane_capacity(2))?;
/// let mut outbox = Outbox::new(mailbox.sender());
/// for i in 0..5 {
///     outbox.send(i).unwrap(); // never blocks: 3 wait in the overflow
/// }
/// assert_eq!(outbox.held(), 3);
/// let mut got = Vec::new();
/// while got.len() < 5 {
///     mailbox.drain(usize::MAX, |m| got.push(m));
///     outbox.flush().unwrap();
/// }
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Outbox<T> {
    sender: Sender<T>,
    held: VecDeque<T>,
}

impl<T> Outbox<T> {
    /// Wraps a lane.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, Outbox};
    /// let mut mailbox = Mailbox::<u8>::new()?;
    /// let mut outbox = Outbox::new(mailbox.sender());
    /// outbox.send(1).unwrap();
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(sender: Sender<T>) -> Self {
        Self {
            sender,
            held: VecDeque::new(),
        }
    }

    /// Sends now if the lane has room and nothing is held, otherwise holds the
    /// message for a later [`flush`](Self::flush). This outbox's order is
    /// always kept; a held message joins the mailbox's causal order across
    /// senders when it is flushed (see the module docs). Fails only if the
    /// mailbox is closed.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, Outbox};
    /// let mut mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
    /// let mut outbox = Outbox::new(mailbox.sender());
    /// outbox.send(1).unwrap(); // into the lane
    /// outbox.send(2).unwrap(); // lane full: held, never blocks
    /// assert_eq!(outbox.held(), 1);
    /// mailbox.close();
    /// assert!(outbox.send(3).is_err()); // closed: handed back
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        if !self.held.is_empty() {
            if self.sender.is_closed() {
                return Err(SendError(value));
            }
            self.held.push_back(value);
            if let Err(SendError(mut held)) = self.flush() {
                // The mailbox closed between the check above and the flush,
                // which took every held message out to hand it back: none may
                // be dropped here. As if the check had seen the close, keep
                // the older ones held (the next `flush` hands them back) and
                // fail with `value`, which `push_back` put last.
                let value = held.pop_back().expect("`value` was pushed above");
                self.held = held;
                return Err(SendError(value));
            }
            return Ok(());
        }
        match self.sender.try_send(value) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(value)) => {
                self.held.push_back(value);
                Ok(())
            }
            Err(TrySendError::Closed(value)) => Err(SendError(value)),
        }
    }

    /// Sends now if nothing is held and the lane has room; otherwise hands
    /// the message back ([`Full`](TrySendError::Full) while anything is held:
    /// it may not overtake what waits). Never holds it.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, Outbox, TrySendError};
    /// let mut mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
    /// let mut outbox = Outbox::new(mailbox.sender());
    /// outbox.try_send(1).unwrap(); // into the lane
    /// outbox.send(2).unwrap(); // held
    /// mailbox.drain(usize::MAX, drop); // room again, but 2 waits first
    /// assert!(matches!(outbox.try_send(3), Err(TrySendError::Full(3))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if !self.held.is_empty() {
            return Err(if self.sender.is_closed() {
                TrySendError::Closed(value)
            } else {
                TrySendError::Full(value)
            });
        }
        self.sender.try_send(value)
    }

    /// Moves held messages into the lane, as many as fit, with one publish.
    /// Returns `Ok(true)` when nothing is held any more. If the mailbox is
    /// closed, returns every held message.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, Outbox};
    /// let mut mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
    /// let mut outbox = Outbox::new(mailbox.sender());
    /// outbox.send(1).unwrap();
    /// outbox.send(2).unwrap(); // held
    /// assert_eq!(outbox.flush(), Ok(false)); // still no room
    /// assert_eq!(mailbox.try_recv(), Some(1));
    /// assert_eq!(outbox.flush(), Ok(true)); // nothing held any more
    /// assert_eq!(mailbox.try_recv(), Some(2));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) -> Result<bool, SendError<VecDeque<T>>> {
        if self.held.is_empty() {
            return Ok(true);
        }
        match self.sender.try_send_from(&mut self.held) {
            Ok(_) => Ok(self.held.is_empty()),
            Err(()) => Err(SendError(std::mem::take(&mut self.held))),
        }
    }

    /// Messages waiting in the local overflow.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, MailboxConfig, Outbox};
    /// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(2))?;
    /// let mut outbox = Outbox::new(mailbox.sender());
    /// for i in 0..5 {
    ///     outbox.send(i).unwrap();
    /// }
    /// assert_eq!(outbox.held(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// `true` once the destination mailbox is closed.
    ///
    /// ```
    /// use ringloop_actors::{Mailbox, Outbox};
    /// let mailbox = Mailbox::<u8>::new()?;
    /// let outbox = Outbox::new(mailbox.sender());
    /// assert!(!outbox.is_closed());
    /// drop(mailbox);
    /// assert!(outbox.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl<T> fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("sender", &self.sender)
            .field("held", &self.held.len())
            .finish()
    }
}
