//! The errors a sender can meet. Each hands the message back to the caller:
//! nothing is ever dropped silently.

use std::fmt;

/// Why a non-blocking send did not enqueue its message.
///
/// ```
/// use ringloop_actors::{Mailbox, MailboxConfig, TrySendError};
/// let mailbox = Mailbox::<u8>::with_config(MailboxConfig::new().lane_capacity(1))?;
/// let mut tx = mailbox.sender();
/// tx.try_send(1).unwrap();
/// match tx.try_send(2) {
///     Err(TrySendError::Full(m)) => assert_eq!(m, 2), // try again later
///     Err(TrySendError::Closed(_)) => unreachable!("the mailbox is alive"),
///     Ok(()) => unreachable!("the lane holds one"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The lane is full: the receiver has not caught up yet. Try again later.
    Full(T),
    /// The receiver is gone; the message will never be delivered.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// Takes the undelivered message back.
    ///
    /// ```
    /// use ringloop_actors::TrySendError;
    /// assert_eq!(TrySendError::Full(5).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Closed(v) => v,
        }
    }

    /// `true` when the failure is because the lane was full.
    ///
    /// ```
    /// use ringloop_actors::TrySendError;
    /// assert!(TrySendError::Full(1).is_full());
    /// assert!(!TrySendError::Closed(1).is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// `true` when the failure is because the receiver is gone.
    ///
    /// ```
    /// use ringloop_actors::TrySendError;
    /// assert!(TrySendError::Closed(1).is_closed());
    /// assert!(!TrySendError::Full(1).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("sending on a full mailbox lane"),
            Self::Closed(_) => f.write_str("sending to a closed mailbox"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// A blocking send failed because the receiver is gone; the message is inside.
///
/// ```
/// use ringloop_actors::{Mailbox, SendError};
/// let mailbox = Mailbox::<&str>::new()?;
/// let mut tx = mailbox.sender();
/// drop(mailbox);
/// let SendError(message) = tx.send("lost?").unwrap_err();
/// assert_eq!(message, "lost?"); // not lost: handed back
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending to a closed mailbox")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a send with a deadline did not enqueue its message.
///
/// ```
/// use ringloop_actors::{Mailbox, SendTimeoutError};
/// use std::time::Duration;
/// let mailbox = Mailbox::<u8>::new()?;
/// let mut tx = mailbox.sender();
/// drop(mailbox);
/// let err = tx.send_timeout(1, Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, SendTimeoutError::Closed(1)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The lane stayed full until the deadline.
    Timeout(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> SendTimeoutError<T> {
    /// Takes the undelivered message back.
    ///
    /// ```
    /// use ringloop_actors::SendTimeoutError;
    /// assert_eq!(SendTimeoutError::Timeout("msg").into_inner(), "msg");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(v) | Self::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for room in a mailbox lane"),
            Self::Closed(_) => f.write_str("sending to a closed mailbox"),
        }
    }
}

impl<T> std::error::Error for SendTimeoutError<T> {}
