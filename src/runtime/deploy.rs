//! What every actor of a running engine shares about deployment: the
//! admission gate, which listeners expect a PROXY header, the upgrade's
//! draining flag and how many actors still accept.
//!
//! Owns only this state; the builder-side settings and the inherited
//! sockets are in `crate::deploy`, the handoff in `crate::upgrade`.

use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Gate, Limits};
use crate::runtime::sync::{AtomicBool, AtomicUsize, Ordering};

/// What every actor of a running engine shares about deployment.
pub(crate) struct DeployShared {
    pub(crate) gate: Arc<Gate>,
    /// Set once the listeners went to a new process: accept nothing more.
    draining: AtomicBool,
    /// Actors (the acceptor, loops accepting inline) still holding listeners;
    /// each counts itself out once it closed them while draining.
    accepting: AtomicUsize,
    /// Indexed by listen address: does it expect a PROXY header?
    proxied: Vec<bool>,
    pub(crate) header_timeout: Duration,
    /// An upgrade socket is configured: the listeners may go to a new
    /// process, whose accepts share their backlog.
    pub(crate) upgradable: bool,
}

impl DeployShared {
    /// The state of an engine whose admission `limits` apply, whose listen
    /// addresses expect a PROXY header where `proxied` says so (taking at
    /// most `header_timeout`), with `accepting_actors` holding listeners.
    pub(crate) fn new(
        limits: Limits,
        proxied: Vec<bool>,
        header_timeout: Duration,
        accepting_actors: usize,
        upgradable: bool,
    ) -> Self {
        Self {
            gate: Gate::new(limits),
            draining: AtomicBool::new(false),
            accepting: AtomicUsize::new(accepting_actors),
            proxied,
            header_timeout,
            upgradable,
        }
    }

    /// The listeners went to a new process: accept nothing more.
    pub(crate) fn begin_draining(&self) {
        // Release: an actor that sees the flag sees everything before it.
        self.draining.store(true, Ordering::Release);
    }

    /// `true` once this engine handed its listeners to a new process.
    pub(crate) fn is_draining(&self) -> bool {
        // Acquire: pairs with the Release in `begin_draining`.
        self.draining.load(Ordering::Acquire)
    }

    /// An actor closed its listeners while draining: every connection it
    /// accepted is counted in its loop by now.
    pub(crate) fn stopped_accepting(&self) {
        // Release: pairs with the Acquire in `still_accepting`, so the
        // connection counts it updated before are seen.
        self.accepting.fetch_sub(1, Ordering::Release);
    }

    /// Actors that have not yet closed their listeners.
    pub(crate) fn still_accepting(&self) -> usize {
        // Acquire: see `stopped_accepting`.
        self.accepting.load(Ordering::Acquire)
    }

    /// Whether connections from listen address `index` start with a PROXY
    /// header.
    pub(crate) fn is_proxied(&self, index: u16) -> bool {
        self.proxied
            .get(usize::from(index))
            .copied()
            .unwrap_or(false)
    }
}
