//! The acceptor actor: owns the listeners, accepts new connections and hands
//! each one, as a message, to the event loop the balancer picks.
//!
//! It must never touch an accepted connection beyond handing it over, and
//! never block on a loop's mailbox: hand-offs go through an [`Outbox`] per
//! loop, and while one holds too many the acceptor stops accepting (the
//! kernel's backlog holds the rest) until the loop catches up.
//!
//! When accepting fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`,
//! `ENOMEM`), the acceptor logs it once, pauses accepting for a moment and
//! tries again; existing connections are not affected.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::{Mailbox, Outbox, Sender};
use crate::admission::{accept_next, Accepted};
use crate::balancer::Balancer;
use crate::listener::Listener;
use crate::options::LoadBalancer;
use crate::runtime::message::{AcceptorMessage, LoopMessage};
use crate::runtime::EngineShared;
use crate::sys::poller::{Events, Interest, Poller};

const DOORBELL: u64 = u64::MAX;
/// Hand-offs one loop may have waiting in the acceptor before it pauses.
const HOLD_LIMIT: usize = 256;
/// How long to wait before accepting again after running out of resources.
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// How often to retry hand-offs waiting for room in a loop's mailbox.
const RETRY: Duration = Duration::from_millis(1);

pub(crate) struct Acceptor {
    /// Each listener with its listen-address index.
    listeners: Vec<(Listener, u16)>,
    mailbox: Mailbox<AcceptorMessage>,
    outboxes: Vec<Outbox<LoopMessage>>,
    balancer: Balancer,
    engine: Arc<EngineShared>,
}

impl Acceptor {
    pub(crate) fn new(
        listeners: Vec<(Listener, u16)>,
        mailbox: Mailbox<AcceptorMessage>,
        loops: Vec<Sender<LoopMessage>>,
        policy: LoadBalancer,
        engine: Arc<EngineShared>,
    ) -> Self {
        Self {
            listeners,
            mailbox,
            outboxes: loops.into_iter().map(Outbox::new).collect(),
            balancer: Balancer::new(policy),
            engine,
        }
    }

    /// The actor's thread body. Returns when the engine stops.
    pub(crate) fn run(mut self) {
        if let Err(e) = self.serve() {
            self.engine.record_error(e);
            self.engine.request_stop();
        }
        // Dropping the listeners closes them and removes Unix socket files.
        log::debug!("acceptor stopped");
    }

    fn serve(&mut self) -> crate::Result<()> {
        let io_err = |context| move |e| crate::Error::io(context, e);
        let poller = Poller::new().map_err(io_err("create the acceptor's poller"))?;
        poller
            .add_doorbell(self.mailbox.doorbell(), DOORBELL)
            .map_err(io_err("register the acceptor's doorbell"))?;
        for (i, (l, _)) in self.listeners.iter().enumerate() {
            poller
                .add(l.fd.as_fd(), i as u64, Interest::READABLE)
                .map_err(io_err("register a listener"))?;
        }
        let mut events = Events::with_capacity(64);
        let mut ready = Vec::with_capacity(64);
        let mut paused = false;
        let mut resume_at: Option<Instant> = None;
        let mut warned = false;
        loop {
            if self.engine.is_stopping() {
                return Ok(());
            }
            if self.engine.deploy().is_draining() {
                // The listeners went to a new process: close ours (leaving
                // Unix socket files to it), deliver what is held, stop.
                if !self.listeners.is_empty() {
                    for (mut listener, _) in self.listeners.drain(..) {
                        let _ = poller.delete(listener.fd.as_fd());
                        listener.keep_socket_file();
                    }
                    self.engine.deploy().stopped_accepting();
                }
                if self.outboxes.iter().all(|o| o.held() == 0) {
                    return Ok(());
                }
            }
            let holding = self.outboxes.iter().any(|o| o.held() > 0);
            let timeout = if holding {
                Some(RETRY)
            } else {
                resume_at.map(|t| t.saturating_duration_since(Instant::now()))
            };
            self.mailbox
                .park_with(|may_block| {
                    poller.wait(
                        &mut events,
                        if may_block {
                            timeout
                        } else {
                            Some(Duration::ZERO)
                        },
                    )
                })
                .map_err(io_err("wait for listener events"))?;
            ready.clear();
            ready.extend(events.iter());
            // Stop is the only message; the flag is checked at the top.
            self.mailbox.drain(usize::MAX, drop);
            if self.mailbox.doorbell().needs_drain() && ready.iter().any(|e| e.token == DOORBELL) {
                let _ = self.mailbox.doorbell().drain();
            }
            for outbox in &mut self.outboxes {
                // A closed loop means the engine is stopping; its held
                // sockets are closed by being dropped.
                let _ = outbox.flush();
            }
            let congested = self.outboxes.iter().any(|o| o.held() >= HOLD_LIMIT);
            let cooled = resume_at.map_or(true, |t| Instant::now() >= t);
            let want_paused = congested || !cooled;
            if want_paused != paused {
                self.set_accepting(&poller, !want_paused)?;
                paused = want_paused;
                if !paused {
                    resume_at = None;
                }
            }
            if paused {
                continue;
            }
            for event in &ready {
                let Ok(index) = usize::try_from(event.token) else {
                    continue;
                };
                if index >= self.listeners.len() {
                    continue;
                }
                match self.accept_all(index) {
                    Ok(None) => warned = false,
                    Ok(Some(until)) => {
                        // A limit is reached: the backlog holds the rest.
                        resume_at = Some(until);
                        self.set_accepting(&poller, false)?;
                        paused = true;
                        break;
                    }
                    Err(e) => {
                        if !warned {
                            log::warn!(
                                "accept on {} failed: {e}; pausing accepts for {:?} (open connections are unaffected)",
                                self.listeners[index].0.addr,
                                EXHAUSTED_PAUSE
                            );
                            warned = true;
                        }
                        resume_at = Some(Instant::now() + EXHAUSTED_PAUSE);
                        self.set_accepting(&poller, false)?;
                        paused = true;
                        break;
                    }
                }
                if self.outboxes.iter().any(|o| o.held() >= HOLD_LIMIT) {
                    break;
                }
            }
        }
    }

    /// Accepts on listener `index` until the backlog is empty or a loop's
    /// outbox is congested; `Some(t)` if a limit says to wait until `t`.
    fn accept_all(&mut self, index: usize) -> std::io::Result<Option<Instant>> {
        let (listener, listen_index) = &self.listeners[index];
        let is_tcp = listener.is_tcp();
        loop {
            let (fd, peer, admission) =
                match accept_next(listener.fd.as_fd(), &self.engine.deploy().gate)? {
                    Accepted::Conn(fd, peer, admission) => (fd, peer, admission),
                    Accepted::Empty => return Ok(None),
                    Accepted::Wait(until) => return Ok(Some(until)),
                };
            let engine = &self.engine;
            let target = self
                .balancer
                .pick(&peer, engine.loop_count(), || engine.least_loaded_loop());
            self.engine.slot(target).add_connection();
            let message = LoopMessage::Accepted {
                fd,
                peer,
                listener: *listen_index,
                is_tcp,
                admission,
            };
            if self.outboxes[target].send(message).is_err() {
                // The loop is gone (engine stopping): the socket was closed
                // by dropping the message.
                self.engine.slot(target).remove_connection();
                return Ok(None);
            }
            if self.outboxes[target].held() >= HOLD_LIMIT {
                return Ok(None);
            }
        }
    }

    fn set_accepting(&self, poller: &Poller, on: bool) -> crate::Result<()> {
        let interest = if on {
            Interest::READABLE
        } else {
            Interest {
                readable: false,
                writable: false,
                edge: false,
            }
        };
        for (i, (l, _)) in self.listeners.iter().enumerate() {
            poller
                .modify(l.fd.as_fd(), i as u64, interest)
                .map_err(|e| crate::Error::io("pause or resume a listener", e))?;
        }
        Ok(())
    }
}
