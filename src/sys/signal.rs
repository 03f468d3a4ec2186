//! Blocking and waiting for the signals a server handles: the termination
//! signals (`SIGINT`, `SIGTERM`, `SIGQUIT`) and the ones it must survive
//! (`SIGHUP`, `SIGUSR1`, `SIGUSR2`).
//!
//! Owns the signal mask calls. It must never install a signal handler.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The blocked signals, ready to be waited for.
pub(crate) struct SignalWaiter {
    set: SigSet,
}

/// Every signal [`block_server_signals`] blocks.
const BLOCKED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks the server signals in the calling thread (threads it starts later
/// inherit the mask).
pub(crate) fn block_server_signals() -> io::Result<SignalWaiter> {
    let mut set = SigSet::empty();
    for signal in BLOCKED {
        set.add(signal);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    Ok(SignalWaiter { set })
}

impl SignalWaiter {
    /// Waits for one of the blocked signals.
    pub(crate) fn wait(&self) -> io::Result<Signal> {
        self.set
            .wait()
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }
}
