//! The errors a sender can meet. Each hands the message back to the caller:
//! nothing is ever dropped silently.

use std::fmt;

/// Why a non-blocking send did not enqueue its message.
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
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// `true` when the failure is because the receiver is gone.
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
#[derive(PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The lane stayed full until the deadline.
    Timeout(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> SendTimeoutError<T> {
    /// Takes the undelivered message back.
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
