//! Stopping an engine on `SIGINT` / `SIGTERM` (Ctrl-C), without a signal
//! handler running arbitrary code.
//!
//! Owns only the signal watcher. The signals are blocked in the calling thread,
//! so every thread it starts afterwards (the loops, the acceptor) inherits the
//! mask, and one watcher thread takes them synchronously with `sigwait`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sys;

/// Stops `engine` gracefully on the first `SIGINT` or `SIGTERM`.
///
/// Call it before [`Server::run`](crate::Server::run), on the thread that will
/// call `run`, so the engine's threads inherit the blocked signals. Returns
/// once the watcher thread is started.
///
/// ```no_run
/// use ringloop::{Engine, EventHandler};
/// struct Quiet;
/// impl EventHandler for Quiet { type State = (); }
///
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:9000").build()?;
/// ringloop::stop_on_signals(&server.engine())?;
/// server.run()?; // returns after Ctrl-C, once every connection is closed
/// # Ok::<(), ringloop::Error>(())
/// ```
pub fn stop_on_signals(engine: &Engine) -> Result<()> {
    let waiter = sys::signal::block_termination_signals()
        .map_err(|e| Error::io("block SIGINT and SIGTERM", e))?;
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("ringloop-signals".into())
        .spawn(move || match waiter.wait() {
            Ok(signal) => {
                log::info!("received {signal}, stopping");
                let _ = engine.stop();
            }
            Err(e) => log::error!("waiting for signals failed: {e}"),
        })
        .map(drop)
        .map_err(|e| Error::io("start the signal watcher", e))
}
