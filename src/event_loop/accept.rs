//! Accepting inline on this loop's own listeners (reuseport mode, or a
//! single loop without an acceptor thread), through the engine's one accept
//! path ([`crate::accept`]): the same limits, the same pause when resources
//! run out, as the acceptor actor; and, as the acceptor, no new connection
//! once the engine is stopping.
//!
//! Owns only the loop's side: each accepted socket goes to admission on
//! this loop. Must never accept more than one batch per readiness event.

use std::time::Instant;

use super::EventLoop;
use crate::handler::EventHandler;

impl<H: EventHandler> EventLoop<H> {
    /// Accepts inline on this loop's own listener `i`.
    pub(super) fn accept(&mut self, i: usize) {
        if self.engine.is_stopping() {
            // As the acceptor at a stop: close the listeners rather than
            // accept connections the drain would only close.
            self.listeners.close(&mut self.driver);
            return;
        }
        let mut accepted = Vec::new();
        let result =
            self.listeners
                .accept(i, &mut self.driver, &self.engine.deploy().gate, |conn| {
                    accepted.push(conn);
                    true
                });
        if let Err(e) = result {
            log::error!("loop {}: could not pause a listener: {e}", self.index);
        }
        for conn in accepted {
            self.engine.slot(self.index).add_connection();
            self.admit(
                conn.fd,
                conn.peer,
                conn.listener,
                conn.is_tcp,
                conn.admission,
            );
        }
    }

    /// Listeners resting after a limit or exhaustion accept again once the
    /// rest is over.
    pub(super) fn resume_listeners(&mut self, now: Instant) {
        if let Err(e) = self
            .listeners
            .resume_if_rested(&mut self.driver, now, false)
        {
            log::error!("loop {}: could not resume a listener: {e}", self.index);
        }
    }
}
