//! Blocking and waiting for the termination signals (`SIGINT`, `SIGTERM`).
//!
//! Owns the signal mask calls. It must never install a signal handler.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The blocked termination signals, ready to be waited for.
pub(crate) struct SignalWaiter {
    set: SigSet,
}

/// Blocks `SIGINT` and `SIGTERM` in the calling thread (threads it starts
/// later inherit the mask).
pub(crate) fn block_termination_signals() -> io::Result<SignalWaiter> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    Ok(SignalWaiter { set })
}

impl SignalWaiter {
    /// Waits for one of the signals; returns its name.
    pub(crate) fn wait(&self) -> io::Result<&'static str> {
        let signal = self
            .set
            .wait()
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Ok(signal.as_str())
    }
}
