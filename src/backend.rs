//! [`Backend`]: which I/O driver an engine's loops run on (epoll readiness
//! or io_uring completions), and how the default is chosen.
//!
//! Owns the names and the parsing only (vocabulary): probing the kernel is
//! `sys::uring::probe`'s job, choosing at build time the builder's.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The I/O driver of an engine's event loops.
///
/// `Auto` is the default: io_uring where the kernel allows it (the probe
/// checks `io_uring_setup`, the opcodes and the features the driver needs:
/// many container sandboxes refuse io_uring by seccomp), epoll otherwise,
/// saying so once in the log. `Epoll` asks for the readiness driver
/// (edge-triggered mode is an epoll feature). `IoUring` insists: an engine
/// asked for io_uring where it cannot work fails to build with
/// [`Error::BackendUnavailable`]. [`EngineHandle::backend`](crate::EngineHandle::backend)
/// tells which driver an engine runs on.
///
/// When the builder is not told, the environment variable
/// `RINGLOOP_BACKEND` (`auto`, `epoll` or `io-uring`) picks the default, so
/// a whole test suite or a deployed binary can be switched without a
/// rebuild.
///
/// On io_uring, plain and TLS stream connections receive through multishot
/// receives into a provided buffer ring and send through the ring; a loop's
/// own listeners accept through the ring (multishot accept) and TCP connects
/// are ring operations. The rest (UDP, Unix connects, PROXY-header reads,
/// the acceptor thread's listeners) is watched by an epoll instance that
/// the ring itself polls, so a turn is still one `io_uring_enter`.
/// Edge-triggered mode (the default on epoll) has no meaning there: with
/// `Auto`, asking for it explicitly
/// ([`edge_triggered(true)`](crate::EngineBuilder::edge_triggered)) chooses
/// epoll, and the default leaves `Auto`'s choice alone; on an engine told
/// `IoUring` it is ignored (a multishot receive reports every arrival).
///
/// ```
/// use ringloop::Backend;
/// assert_eq!("io-uring".parse::<Backend>()?, Backend::IoUring);
/// assert_eq!(Backend::default(), Backend::Auto);
/// assert_eq!(Backend::Epoll.to_string(), "epoll");
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring where it works, else epoll (one log line says why); the
    /// default.
    #[default]
    Auto,
    /// The readiness driver (epoll).
    Epoll,
    /// The completion driver (io_uring); building fails where it cannot work.
    IoUring,
}

impl Backend {
    /// The environment variable that picks the default backend.
    pub const ENV: &'static str = "RINGLOOP_BACKEND";

    /// The backend `RINGLOOP_BACKEND` names (`None` when unset or empty).
    /// A value that names none is an [`Error::InvalidConfig`].
    pub fn from_env() -> Result<Option<Backend>> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.trim().is_empty() => v
                .parse()
                .map(Some)
                .map_err(|e: Error| Error::InvalidConfig(format!("{}: {e}", Self::ENV))),
            _ => Ok(None),
        }
    }

    /// Its name as [`FromStr`] reads it (`auto`, `epoll`, `io-uring`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Epoll => "epoll",
            Backend::IoUring => "io-uring",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// `auto`, `epoll`, `io-uring` (also `io_uring`, `iouring`, `uring`),
    /// any case.
    fn from_str(s: &str) -> Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "epoll" => Ok(Backend::Epoll),
            "io-uring" | "io_uring" | "iouring" | "uring" => Ok(Backend::IoUring),
            other => Err(Error::InvalidConfig(format!(
                "unknown backend {other:?} (use auto, epoll or io-uring)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert_eq!("IO_URING".parse::<Backend>().unwrap(), Backend::IoUring);
        assert!("kqueue".parse::<Backend>().is_err());
    }
}
