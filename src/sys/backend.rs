//! Choosing an engine's I/O driver at build time: the backend asked for (or
//! `RINGLOOP_BACKEND`, or epoll), checked against what the kernel allows.
//!
//! Owns the probe's cache (one probe per process and probe options: a probe
//! sets up a ring and a socket pair) and the one log line of a fallback. It
//! never creates a loop's ring: each loop makes its own on its thread.

use std::sync::Mutex;

use super::uring::probe::{probe, ProbeOptions};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Probe outcomes so far, per probe options (`Err`: why io_uring cannot run).
static PROBED: Mutex<Vec<(ProbeOptions, std::result::Result<(), String>)>> = Mutex::new(Vec::new());

/// Whether the completion driver can run here (probed once per options).
fn uring_works(options: ProbeOptions) -> std::result::Result<(), String> {
    let mut cache = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, outcome)) = cache.iter().find(|(o, _)| *o == options) {
        return outcome.clone();
    }
    // On a thread of its own: the probe's ring is created, used and dropped
    // there, and io_uring may still queue task work for the ring's issuer
    // after the drop (its teardown is asynchronous). Queued on the caller's
    // thread, that work would interrupt the caller's next blocking call with
    // a timeout (a socket read with SO_RCVTIMEO fails with EINTR); on a
    // thread that has ended it is dropped harmlessly.
    let outcome = std::thread::Builder::new()
        .name("ringloop-probe".into())
        .spawn(move || probe(&options).map(|_| ()).map_err(|e| e.to_string()))
        .map_err(|e| format!("io_uring probe: cannot start its thread: {e}"))
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err("io_uring probe: its thread panicked".into()))
        });
    if let Ok(()) = outcome {
        log::debug!("io_uring probe: the completion driver can run here");
    }
    cache.push((options, outcome.clone()));
    outcome
}

/// The driver an engine runs on: `requested` (the builder's), else
/// `RINGLOOP_BACKEND`, else [`Backend::Auto`] (the default); `Auto` resolved by probing
/// (a fallback to epoll is logged once per engine). `Auto` with
/// `edge_triggered_asked` (the builder was told `edge_triggered(true)`, not
/// the default) is epoll: edge-triggered mode is an epoll feature, so
/// asking for it is asking for epoll. Never returns `Auto`.
pub(crate) fn choose(requested: Option<Backend>, edge_triggered_asked: bool) -> Result<Backend> {
    let requested = match requested {
        Some(b) => b,
        None => Backend::from_env()?.unwrap_or_default(),
    };
    let options = ProbeOptions::from_env();
    match requested {
        Backend::Epoll => Ok(Backend::Epoll),
        Backend::IoUring => match uring_works(options) {
            Ok(()) => Ok(Backend::IoUring),
            Err(reason) => Err(Error::BackendUnavailable {
                backend: Backend::IoUring,
                reason,
            }),
        },
        Backend::Auto if edge_triggered_asked => {
            log::debug!("edge-triggered mode asks for epoll: auto chose epoll");
            Ok(Backend::Epoll)
        }
        Backend::Auto => match uring_works(options) {
            Ok(()) => Ok(Backend::IoUring),
            Err(reason) => {
                log::warn!("{reason}; using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}
