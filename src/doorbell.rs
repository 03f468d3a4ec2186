//! [`Doorbell`]: which kind of fd wakes a sleeping event loop — the one
//! mailbox setting users may choose, under ringloop's own name (the mailbox
//! crate's types are not part of ringloop's API).
//!
//! Owns only this choice and its translation for the mailbox crate.

use ringloop_actors::DoorbellKind;

/// The fd that wakes a loop parked in its poller when another thread sends
/// it a message ([`EngineBuilder::doorbell`](crate::EngineBuilder::doorbell)).
///
/// ```
/// # use ringloop::{Doorbell, Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .doorbell(Doorbell::Pipe) // for kernels without eventfd
///     .build()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Doorbell {
    /// An eventfd where the kernel has it, a pipe otherwise (the default).
    #[default]
    Auto,
    /// Always an eventfd (the engine fails to build where eventfd is
    /// missing).
    EventFd,
    /// Always a pipe.
    Pipe,
}

impl Doorbell {
    pub(crate) fn kind(self) -> DoorbellKind {
        match self {
            Self::Auto => DoorbellKind::Auto,
            Self::EventFd => DoorbellKind::EventFd,
            Self::Pipe => DoorbellKind::Pipe,
        }
    }
}
