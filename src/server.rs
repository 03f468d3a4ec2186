//! [`Engine`]: a bound engine, and [`Engine::run`], which starts every actor
//! thread, coordinates the shutdown and joins them.
//!
//! Bootstrap only: it owns the threads' start and end, never a connection.

//!
//! # Shutdown
//!
//! [`EngineHandle::stop`] (any thread) or [`Action::Shutdown`](crate::Action::Shutdown)
//! (a handler) sets the stop flag and wakes the thread in [`Engine::run`],
//! which then stops the actors in order:
//!
//! 1. the acceptor closes its listeners (no new connections; a loop that
//!    accepts on its own closes its listeners at the next connection);
//! 2. the worker pool refuses new jobs, finishes (or cancels, per
//!    [`PoolShutdown`](crate::PoolShutdown)) the queued ones and joins,
//!    waiting at most [`EngineBuilder::pool_shutdown_timeout`](crate::EngineBuilder::pool_shutdown_timeout);
//!    loops keep serving meanwhile, so the replies of finished jobs reach
//!    their connections;
//! 3. each loop applies the messages already queued to it, closes every
//!    connection (each close callback runs once), runs `on_shutdown` and exits.
//!
//! Then `run` returns.

use std::fmt;
use std::sync::Arc;
use std::thread;

use crate::acceptor::Acceptor;
use crate::actors::Mailbox;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::handler::EventHandler;
use crate::listener::LoopSockets;
use crate::options::Options;
use crate::runtime::message::LoopMessage;
use crate::runtime::EngineHandle;
use crate::upgrade::Control;

/// Makes each loop's handler, on the loop's thread.
pub(crate) type Factory<H> = Arc<dyn Fn(usize) -> H + Send + Sync>;

/// A bound engine, ready to [`run`](Self::run).
///
/// ```
/// # use ringloop::{Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
/// let engine = server.handle(); // for other threads: stop, stats, dial…
/// let runner = std::thread::spawn(move || server.run());
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct Engine<H> {
    pub(crate) engine: EngineHandle,
    pub(crate) factory: Factory<H>,
    pub(crate) loop_mailboxes: Vec<Mailbox<LoopMessage>>,
    pub(crate) loop_sockets: Vec<LoopSockets>,
    pub(crate) acceptor: Option<Acceptor>,
    /// The upgrade control socket, if the engine serves one.
    pub(crate) control: Option<Control>,
    pub(crate) options: Options,
}

impl<H: EventHandler> Engine<H> {
    /// A handle to the engine, for other threads.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.handle(); // Clone + Send + Sync
    /// let stopper = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     engine.stop()
    /// });
    /// server.run()?; // returns once the other thread has stopped it
    /// stopper.join().unwrap();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn handle(&self) -> EngineHandle {
        self.engine.clone()
    }

    /// Serves until the engine is stopped ([`EngineHandle::stop`] or
    /// [`Action::Shutdown`](crate::Action::Shutdown)). Returns the first fatal
    /// error an actor met, if any.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run()); // serves until stopped
    /// let _client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// engine.stop(); // closes the connection too
    /// runner.join().unwrap()?; // run's result: Ok, no actor failed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(self) -> Result<()> {
        let shared = self.engine.shared.clone();
        shared.lifecycle().start()?;
        let mut loop_threads = Vec::new();
        let spawn_error = |e| Error::io("start a thread", e);
        let mut result = Ok(());
        let loops = self.loop_mailboxes.into_iter().zip(self.loop_sockets);
        for (index, (mailbox, sockets)) in loops.enumerate() {
            let factory = self.factory.clone();
            let engine = self.engine.clone();
            let options = self.options.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringloop-loop-{index}"))
                .spawn(move || {
                    let _loop_thread = engine.shared.enter_loop_thread();
                    let handler = factory(index);
                    let outcome =
                        EventLoop::new(index, handler, mailbox, sockets, engine.clone(), &options)
                            .and_then(EventLoop::run);
                    if let Err(e) = outcome {
                        engine.shared.record_error(e);
                        engine.shared.request_stop();
                    }
                });
            match spawned {
                Ok(t) => loop_threads.push(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                    break;
                }
            }
        }
        let mut acceptor_thread = None;
        if let (Some(acceptor), true) = (self.acceptor, result.is_ok()) {
            match thread::Builder::new()
                .name("ringloop-acceptor".into())
                .spawn(move || acceptor.run())
            {
                Ok(t) => acceptor_thread = Some(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                }
            }
        }
        let upgrade_thread = match crate::upgrade::start(self.control, &shared) {
            Ok(t) => t,
            Err(e) => {
                result = result.and(Err(e));
                shared.request_stop();
                None
            }
        };
        // This thread is the shutdown coordinator: wait for a stop request...
        shared.lifecycle().wait_for_stop();
        let join = |t: thread::JoinHandle<()>| {
            if t.join().is_err() {
                shared.record_error(Error::io(
                    "an actor thread panicked",
                    std::io::Error::other("panic"),
                ));
            }
        };
        // ...then stop accepting, drain the worker pool, and close the loops.
        if let Some(t) = acceptor_thread {
            join(t);
        }
        if let Some(t) = upgrade_thread {
            join(t);
        }
        shared.shutdown_pool();
        shared.stop_loops();
        for t in loop_threads {
            join(t);
        }
        let first = shared.lifecycle().take_error();
        shared.lifecycle().finish();
        log::debug!("engine finished");
        result.and(first.map_or(Ok(()), Err))
    }
}

impl<H> fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
