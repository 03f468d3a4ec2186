//! Stopping an engine on `SIGINT` / `SIGTERM` (Ctrl-C), forcing the exit on
//! a second one, and surviving the signals whose default action would kill a
//! server for no good reason — without a signal handler running arbitrary
//! code.
//!
//! Owns only the signal watcher. The signals are blocked in the calling thread,
//! so every thread it starts afterwards (the loops, the acceptor, the worker
//! pool) inherits the mask, and one watcher thread takes them synchronously
//! with `sigwait`. It must never block on the engine: the stop it starts runs
//! on the thread in [`Engine::run`](crate::Engine::run), so the watcher is
//! always free to take the next signal.

use nix::sys::signal::Signal;

use crate::engine::EngineHandle;
use crate::error::{Error, Result};
use crate::sys;

/// Handles the process's signals the way a server should; call it once.
///
/// | signal | what it does |
/// |---|---|
/// | `SIGINT`, `SIGTERM` (first) | a graceful stop, as [`EngineHandle::stop`]: no new connections, the worker pool finishes its jobs (bounded by [`EngineBuilder::pool_shutdown_timeout`](crate::EngineBuilder::pool_shutdown_timeout)), queued bytes are flushed (bounded by [`EngineBuilder::drain_timeout`](crate::EngineBuilder::drain_timeout)) |
/// | `SIGINT`, `SIGTERM` (second) | exits the process at once, status 128 + the signal's number (130, 143), as Redis does on a second Ctrl-C |
/// | `SIGQUIT` (Ctrl-\\) | exits the process at once (status 131), without the core dump of its default action |
/// | `SIGHUP` | ignored (logged): a server outlives the terminal it was started from. ringloop has no configuration to reload |
/// | `SIGUSR1`, `SIGUSR2` | ignored (logged), rather than killing the process |
///
/// Call it before [`Engine::run`](crate::Engine::run), on the thread that will
/// call `run` (in practice `main`, before starting any thread), so every
/// thread of the process inherits the blocked signals; a thread that does not
/// would take them with their default actions. Child processes started later
/// inherit the blocked mask too: reset it in the child (`pre_exec`) if they
/// need those signals. Returns once the watcher thread is started.
///
/// ```no_run
/// use ringloop::{Engine, EventHandler};
/// struct Quiet;
/// impl EventHandler for Quiet { type State = (); }
///
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:9000").build()?;
/// ringloop::stop_on_signals(&server.handle())?;
/// server.run()?; // returns after Ctrl-C, once every connection is closed
/// # Ok::<(), ringloop::Error>(())
/// ```
pub fn stop_on_signals(engine: &EngineHandle) -> Result<()> {
    let waiter = sys::signal::block_server_signals()
        .map_err(|e| Error::io("block the server signals", e))?;
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("ringloop-signals".into())
        .spawn(move || {
            let mut stopping = false;
            loop {
                let signal = match waiter.wait() {
                    Ok(signal) => signal,
                    Err(e) => {
                        log::error!("waiting for signals failed: {e}");
                        return;
                    }
                };
                match signal {
                    Signal::SIGINT | Signal::SIGTERM if !stopping => {
                        log::info!("received {signal}, stopping (a second one exits at once)");
                        stopping = true;
                        // Never waits: the stop runs on the thread in `run`.
                        engine.shared.request_stop();
                    }
                    Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT => {
                        log::warn!("received {signal}: exiting now, without finishing the stop");
                        eprintln!("ringloop: received {signal}, exiting now");
                        std::process::exit(128 + signal as i32);
                    }
                    other => log::info!("received {other}: ignored"),
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::io("start the signal watcher", e))
}
