//! The readiness driver: one epoll instance per loop. Also the part of the
//! completion driver that watches what still needs readiness (listeners,
//! UDP sockets, connects in progress, TLS and PROXY-header reads, write
//! readiness), which is why it has no receive of its own: receiving into
//! the loop's buffer is [`super::Driver`]'s, shared by both drivers.
//!
//! Owns the epoll descriptor and how many events one wait collects; the
//! kernel writes them straight into the loop's `ready` list. Never
//! interprets tokens.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::super::token::LoopToken;
use crate::actors::Doorbell;
use crate::sys::poller::{Event, Interest, Poller};

/// Fewest and most events one wait collects (the buffer grows when full).
const MIN_EVENTS: usize = 128;
const MAX_EVENTS: usize = 4096;

pub(crate) struct Readiness {
    poller: Poller,
    /// The most events the next wait collects.
    batch: usize,
}

impl Readiness {
    pub(crate) fn new() -> io::Result<Readiness> {
        Ok(Readiness {
            poller: Poller::new()?,
            batch: MIN_EVENTS,
        })
    }

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn poller_mut(&mut self) -> &mut Poller {
        &mut self.poller
    }

    pub(crate) fn register(
        &self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.poller.add(fd, token.encode(), interest)
    }

    pub(crate) fn register_doorbell(&self, doorbell: &Doorbell) -> io::Result<()> {
        self.poller
            .add_doorbell(doorbell, LoopToken::Doorbell.encode())
    }

    pub(crate) fn reregister(
        &self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.poller.modify(fd, token.encode(), interest)
    }

    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>) {
        let _ = self.poller.delete(fd);
    }

    /// Waits for events (at most `timeout`; `None`: until one comes) and
    /// appends them to `ready`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let got = self.poller.wait_into(ready, self.batch, timeout)?;
        if got == self.batch && got < MAX_EVENTS {
            // A full batch: collect more per wait from now on.
            self.batch = got * 2;
        }
        Ok(())
    }
}
