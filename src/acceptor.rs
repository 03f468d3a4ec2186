//! The acceptor actor: owns the listeners, accepts new connections and hands
//! each one, as a message, to the event loop the balancer picks.
//!
//! It must never touch an accepted connection beyond handing it over, and
//! never block on a loop's mailbox: hand-offs go through an [`Outbox`] per
//! loop, and while one holds too many the acceptor stops accepting (the
//! kernel's backlog holds the rest) until the loop catches up.
//!
//! Accepting itself (limits, the pause when resources run out, errors that
//! concern one connection) is [`crate::accept`]'s, shared with the loops
//! that accept inline in reuseport mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accept::Listeners;
use crate::actors::{Mailbox, Outbox, Sender};
use crate::balancer::Balancer;
use crate::listener::Listener;
use crate::options::LoadBalancer;
use crate::runtime::message::{AcceptorMessage, LoopMessage};
use crate::runtime::EngineShared;
use crate::sys::poller::{Events, Poller};

const DOORBELL: u64 = u64::MAX;
/// Hand-offs one loop may have waiting in the acceptor before it pauses.
const HOLD_LIMIT: usize = 256;
/// How often to retry hand-offs waiting for room in a loop's mailbox.
const RETRY: Duration = Duration::from_millis(1);

pub(crate) struct Acceptor {
    listeners: Listeners,
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
            listeners: Listeners::new(listeners, 0, "the acceptor".to_string()),
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
        let mut poller = Poller::new().map_err(io_err("create the acceptor's poller"))?;
        poller
            .add_doorbell(self.mailbox.doorbell(), DOORBELL)
            .map_err(io_err("register the acceptor's doorbell"))?;
        self.listeners
            .register(&mut poller)
            .map_err(io_err("register a listener"))?;
        let mut events = Events::with_capacity(64);
        let mut ready = Vec::with_capacity(64);
        loop {
            if self.engine.is_stopping() {
                return Ok(());
            }
            if self.engine.deploy().is_draining() {
                // The listeners went to a new process: close ours (leaving
                // Unix socket files to it), deliver what is held, stop.
                if self.listeners.close_for_upgrade(&mut poller) {
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
                self.listeners
                    .resume_at()
                    .map(|t| t.saturating_duration_since(Instant::now()))
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
            if self.mailbox.doorbell().needs_drain() && ready.iter().any(|e| e.token() == DOORBELL)
            {
                let _ = self.mailbox.doorbell().drain();
            }
            for outbox in &mut self.outboxes {
                // A closed loop means the engine is stopping; its held
                // sockets are closed by being dropped.
                let _ = outbox.flush();
            }
            let congested = self.congested();
            self.listeners
                .resume_if_rested(&mut poller, Instant::now(), congested)
                .map_err(io_err("pause or resume a listener"))?;
            for event in &ready {
                if self.listeners.is_paused() {
                    break;
                }
                let Some(index) = self.listeners.index_of(event.token()) else {
                    continue;
                };
                self.accept_from(index, &mut poller)
                    .map_err(io_err("pause or resume a listener"))?;
                if self.congested() {
                    // The kernel's backlog holds the rest until loops catch up.
                    self.listeners
                        .set_listening(&mut poller, false)
                        .map_err(io_err("pause or resume a listener"))?;
                }
            }
        }
    }

    /// A loop's outbox holds too many hand-offs.
    fn congested(&self) -> bool {
        self.outboxes.iter().any(|o| o.held() >= HOLD_LIMIT)
    }

    /// Accepts on listener `index` and hands each connection to the loop
    /// the balancer picks, until the backlog is empty, a loop's outbox is
    /// congested, or the listeners pause.
    fn accept_from(&mut self, index: usize, poller: &mut Poller) -> std::io::Result<()> {
        let (engine, balancer, outboxes) = (&self.engine, &mut self.balancer, &mut self.outboxes);
        self.listeners
            .accept(index, poller, &engine.deploy().gate, |conn| {
                let target = balancer.pick(&conn.peer, engine.loop_count(), || {
                    engine.least_loaded_loop()
                });
                engine.slot(target).add_connection();
                let message = LoopMessage::Accepted {
                    fd: conn.fd,
                    peer: conn.peer,
                    listener: conn.listener,
                    is_tcp: conn.is_tcp,
                    admission: conn.admission,
                };
                if outboxes[target].send(message).is_err() {
                    // The loop is gone (engine stopping): the socket was
                    // closed by dropping the message.
                    engine.slot(target).remove_connection();
                    return false;
                }
                outboxes[target].held() < HOLD_LIMIT
            })
    }
}
