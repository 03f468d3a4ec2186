//! Accepting inline on this loop's own listeners (reuseport mode), and
//! pausing them when a limit is reached or resources run out.
//!
//! Owns only the listeners' registration; accepted sockets go to admission.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use super::{EventLoop, ACCEPT_BATCH, EXHAUSTED_PAUSE, LISTENER_BASE};
use crate::admission::{accept_next, Accepted};
use crate::handler::EventHandler;
use crate::sys::poller::Interest;

/// Accept errors that mean "out of resources": pause, don't spin.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

impl<H: EventHandler> EventLoop<H> {
    /// Accepts inline on this loop's own listener `i`.
    pub(super) fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some((listener, listen_index)) = self.listeners.get(i) else {
                return;
            };
            let is_tcp = listener.is_tcp();
            let listen_index = *listen_index;
            match accept_next(listener.fd.as_fd(), &self.engine.deploy.gate) {
                Ok(Accepted::Conn(fd, peer, admission)) => {
                    self.warned_exhausted = false;
                    self.engine.loops[self.index].add_connection();
                    self.admit(fd, peer, listen_index, is_tcp, admission);
                }
                Ok(Accepted::Empty) => return,
                Ok(Accepted::Wait(until)) => {
                    // A limit is reached: the backlog holds the rest.
                    self.set_listening(false);
                    self.listeners_resume = Some(until);
                    return;
                }
                Err(e) => {
                    if is_exhaustion(&e) {
                        self.pause_listeners(&e);
                    } else {
                        log::warn!("accept on {} failed: {e}", listener.addr);
                    }
                    return;
                }
            }
        }
    }

    pub(super) fn pause_listeners(&mut self, e: &io::Error) {
        if !self.warned_exhausted {
            log::warn!(
                "loop {}: accept failed ({e}); pausing accepts for {EXHAUSTED_PAUSE:?}, open connections are unaffected",
                self.index
            );
            self.warned_exhausted = true;
        }
        self.set_listening(false);
        self.listeners_resume = Some(Instant::now() + EXHAUSTED_PAUSE);
    }

    pub(super) fn set_listening(&self, on: bool) {
        let interest = Interest {
            readable: on,
            writable: false,
            edge: false,
        };
        for (i, (listener, _)) in self.listeners.iter().enumerate() {
            if let Err(e) =
                self.poller
                    .modify(listener.fd.as_fd(), LISTENER_BASE + i as u64, interest)
            {
                log::error!("could not pause or resume a listener: {e}");
            }
        }
    }
}
