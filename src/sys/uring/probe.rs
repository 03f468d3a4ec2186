//! Can the completion driver run here? [`probe`] sets up a small ring and
//! checks, in order, everything the driver relies on, stopping at the first
//! thing missing:
//!
//! 1. `io_uring_setup` works (seccomp profiles such as Docker's default,
//!    `kernel.io_uring_disabled`, or a kernel without io_uring refuse it);
//! 2. the kernel features the driver's submit path uses: timed waits in the
//!    same `io_uring_enter` (`EXT_ARG`), no dropped completions (`NODROP`),
//!    completions skipped on success (`CQE_SKIP`);
//! 3. the opcodes: accept, receive, send, async cancel, read, poll, connect,
//!    link timeout (and, optionally, `SEND_ZC`);
//! 4. a provided buffer ring registers (`IORING_REGISTER_PBUF_RING`);
//! 5. a multishot receive with buffer select delivers bytes on a socket pair
//!    and stays armed;
//! 6. a multishot accept delivers a connection on a Unix listener and stays
//!    armed.
//!
//! Steps 4–6 are done for real, because the opcode table cannot tell whether
//! a kernel knows the multishot flags. The answer is typed: [`Support`] says
//! what optional features exist, [`Unsupported`] names what is missing, so the
//! caller falls back to epoll with one log line ([`probe_or_fall_back`]),
//! never a crash.
//!
//! **Simulated refusal** (tests, and CI runs of the whole suite on the
//! fallback path): [`ProbeOptions::refuse`] makes the named step fail as if
//! the kernel had refused it, through the same path as a real refusal;
//! [`ProbeOptions::from_env`] reads it from `RINGLOOP_URING_REFUSE`
//! (`setup`, `ext-arg`, `nodrop`, `cqe-skip`, `op:NAME`, `buf-ring`,
//! `recv-multishot`, `accept-multishot`).
//!
//! Owns nothing after it returns: the probe's ring, sockets and buffers are
//! gone by then.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use io_uring::{opcode, IoUring};

use super::bufring::BufRingConfig;
use super::ring::{Event, Ring, RingConfig};

/// An opcode the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `IORING_OP_ACCEPT` (multishot checked separately).
    Accept,
    /// `IORING_OP_RECV` (multishot checked separately).
    Recv,
    /// `IORING_OP_SEND`.
    Send,
    /// `IORING_OP_SEND_ZC` (optional: large sends only).
    SendZc,
    /// `IORING_OP_ASYNC_CANCEL`.
    AsyncCancel,
    /// `IORING_OP_READ` (the doorbell).
    Read,
    /// `IORING_OP_POLL_ADD` (the doorbell on a non-blocking eventfd).
    PollAdd,
    /// `IORING_OP_CONNECT`.
    Connect,
    /// `IORING_OP_LINK_TIMEOUT` (connect timeouts).
    LinkTimeout,
}

/// The opcodes without which the driver cannot run.
const REQUIRED_OPS: [Op; 8] = [
    Op::Accept,
    Op::Recv,
    Op::Send,
    Op::AsyncCancel,
    Op::Read,
    Op::PollAdd,
    Op::Connect,
    Op::LinkTimeout,
];

const ALL_OPS: [Op; 9] = [
    Op::Accept,
    Op::Recv,
    Op::Send,
    Op::SendZc,
    Op::AsyncCancel,
    Op::Read,
    Op::PollAdd,
    Op::Connect,
    Op::LinkTimeout,
];

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Accept => opcode::Accept::CODE,
            Op::Recv => opcode::Recv::CODE,
            Op::Send => opcode::Send::CODE,
            Op::SendZc => opcode::SendZc::CODE,
            Op::AsyncCancel => opcode::AsyncCancel::CODE,
            Op::Read => opcode::Read::CODE,
            Op::PollAdd => opcode::PollAdd::CODE,
            Op::Connect => opcode::Connect::CODE,
            Op::LinkTimeout => opcode::LinkTimeout::CODE,
        }
    }

    /// The name used in messages and in `RINGLOOP_URING_REFUSE=op:NAME`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Accept => "accept",
            Op::Recv => "recv",
            Op::Send => "send",
            Op::SendZc => "send_zc",
            Op::AsyncCancel => "async_cancel",
            Op::Read => "read",
            Op::PollAdd => "poll_add",
            Op::Connect => "connect",
            Op::LinkTimeout => "link_timeout",
        }
    }
}

/// Something the completion driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Feature {
    /// `io_uring_setup` itself.
    Setup,
    /// `IORING_FEAT_EXT_ARG` (5.11): a timed wait in the submitting call.
    ExtArg,
    /// `IORING_FEAT_NODROP` (5.5): completions are never dropped.
    NoDrop,
    /// `IORING_FEAT_CQE_SKIP` (5.17): the doorbell's poll posts nothing on
    /// success.
    CqeSkip,
    /// The opcode table (`IORING_REGISTER_PROBE`, 5.6) or one opcode in it.
    Opcode(Option<Op>),
    /// `IORING_REGISTER_PBUF_RING` (5.19).
    BufRing,
    /// Multishot receive with buffer select (6.0).
    RecvMultishot,
    /// Multishot accept (5.19).
    AcceptMultishot,
}

impl Feature {
    /// Parses the value of `RINGLOOP_URING_REFUSE`.
    pub(crate) fn parse(text: &str) -> Option<Feature> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix("op:") {
            return ALL_OPS
                .iter()
                .find(|op| op.name() == name)
                .map(|op| Feature::Opcode(Some(*op)));
        }
        Some(match text {
            "setup" => Feature::Setup,
            "ext-arg" => Feature::ExtArg,
            "nodrop" => Feature::NoDrop,
            "cqe-skip" => Feature::CqeSkip,
            "op-table" => Feature::Opcode(None),
            "buf-ring" => Feature::BufRing,
            "recv-multishot" => Feature::RecvMultishot,
            "accept-multishot" => Feature::AcceptMultishot,
            _ => return None,
        })
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::Setup => f.write_str("io_uring_setup"),
            Feature::ExtArg => f.write_str("timed waits (IORING_FEAT_EXT_ARG, Linux 5.11)"),
            Feature::NoDrop => {
                f.write_str("no dropped completions (IORING_FEAT_NODROP, Linux 5.5)")
            }
            Feature::CqeSkip => {
                f.write_str("skipped completions (IORING_FEAT_CQE_SKIP, Linux 5.17)")
            }
            Feature::Opcode(None) => {
                f.write_str("the opcode table (IORING_REGISTER_PROBE, Linux 5.6)")
            }
            Feature::Opcode(Some(op)) => write!(f, "the {} opcode", op.name()),
            Feature::BufRing => {
                f.write_str("provided buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19)")
            }
            Feature::RecvMultishot => f.write_str("multishot receive (Linux 6.0)"),
            Feature::AcceptMultishot => f.write_str("multishot accept (Linux 5.19)"),
        }
    }
}

/// Why the completion driver cannot run here.
#[derive(Debug)]
pub(crate) struct Unsupported {
    feature: Feature,
    cause: Option<io::Error>,
    simulated: bool,
}

impl Unsupported {
    /// The first missing feature.
    pub(crate) fn feature(&self) -> Feature {
        self.feature
    }

    /// Whether the refusal was asked for ([`ProbeOptions::refuse`]).
    pub(crate) fn is_simulated(&self) -> bool {
        self.simulated
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring lacks {}", self.feature)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        if self.simulated {
            write!(f, " (simulated by {})", ProbeOptions::ENV)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsupported {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What the kernel offers beyond the required features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct Support {
    /// `IORING_OP_SEND_ZC` exists (zero-copy sends, for large payloads).
    pub(crate) send_zc: bool,
}

/// Inputs of [`probe`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeOptions {
    /// Behave as if the kernel lacked this feature.
    pub(crate) refuse: Option<Feature>,
}

impl ProbeOptions {
    /// The environment variable [`ProbeOptions::from_env`] reads.
    pub(crate) const ENV: &'static str = "RINGLOOP_URING_REFUSE";

    /// Reads `RINGLOOP_URING_REFUSE`. An unknown value refuses `setup` (the
    /// variable's intent is clearly "do not use io_uring") and says so.
    pub(crate) fn from_env() -> ProbeOptions {
        let Ok(value) = std::env::var(Self::ENV) else {
            return ProbeOptions::default();
        };
        let refuse = Feature::parse(&value).unwrap_or_else(|| {
            log::warn!(
                "{}={value:?} names no io_uring feature; refusing io_uring_setup",
                Self::ENV
            );
            Feature::Setup
        });
        ProbeOptions {
            refuse: Some(refuse),
        }
    }

    /// Fails with a simulated refusal when `feature` is the one to refuse.
    fn simulate(&self, feature: Feature) -> Result<(), Unsupported> {
        if self.refuse == Some(feature) {
            return Err(Unsupported {
                feature,
                cause: Some(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "refused on request",
                )),
                simulated: true,
            });
        }
        Ok(())
    }

    /// The simulated refusal of `feature`, else the real outcome `real`.
    fn check(
        &self,
        feature: Feature,
        real: Result<(), Option<io::Error>>,
    ) -> Result<(), Unsupported> {
        self.simulate(feature)?;
        real.map_err(|cause| missing(feature, cause))
    }
}

fn missing(feature: Feature, cause: Option<io::Error>) -> Unsupported {
    Unsupported {
        feature,
        cause,
        simulated: false,
    }
}

/// How long a functional check waits for its completion.
const CHECK_BOUND: Duration = Duration::from_secs(2);

/// Checks that the completion driver can run (see the module doc).
pub(crate) fn probe(options: &ProbeOptions) -> Result<Support, Unsupported> {
    options.simulate(Feature::Setup)?;
    let uring = IoUring::new(8).map_err(|e| missing(Feature::Setup, Some(e)))?;
    let params = uring.params();
    let flag = |present: bool| if present { Ok(()) } else { Err(None) };
    options.check(Feature::ExtArg, flag(params.is_feature_ext_arg()))?;
    options.check(Feature::NoDrop, flag(params.is_feature_nodrop()))?;
    options.check(
        Feature::CqeSkip,
        flag(params.is_feature_skip_cqe_on_success()),
    )?;

    let mut table = io_uring::Probe::new();
    options.check(
        Feature::Opcode(None),
        uring.submitter().register_probe(&mut table).map_err(Some),
    )?;
    for op in REQUIRED_OPS {
        options.check(
            Feature::Opcode(Some(op)),
            flag(table.is_supported(op.code())),
        )?;
    }
    let send_zc = table.is_supported(Op::SendZc.code())
        && options.refuse != Some(Feature::Opcode(Some(Op::SendZc)));
    drop(uring);

    let config = RingConfig {
        entries: 8,
        buffers: BufRingConfig {
            count: 4,
            buf_size: 64,
            group: 0,
        },
        teardown_bound: CHECK_BOUND,
        ..RingConfig::default()
    };
    options.simulate(Feature::BufRing)?;
    let mut ring = Ring::new(config).map_err(|e| missing(Feature::BufRing, Some(e)))?;
    options.check(Feature::RecvMultishot, check_recv_multishot(&mut ring))?;
    options.check(Feature::AcceptMultishot, check_accept_multishot(&mut ring))?;
    Ok(Support { send_zc })
}

/// [`probe`], logging the outcome once: `Some` when the completion driver
/// can run, `None` (after one warning naming what is missing) when the
/// caller should use epoll.
pub(crate) fn probe_or_fall_back(options: &ProbeOptions) -> Option<Support> {
    match probe(options) {
        Ok(support) => {
            log::info!(
                "io_uring available (zero-copy send: {})",
                if support.send_zc { "yes" } else { "no" }
            );
            Some(support)
        }
        Err(unsupported) => {
            log::warn!("{unsupported}; using epoll");
            None
        }
    }
}

/// A receive armed on one end of a socket pair must deliver the byte written
/// at the other end and stay armed.
fn check_recv_multishot(ring: &mut Ring) -> Result<(), Option<io::Error>> {
    let (ours, theirs) = UnixStream::pair().map_err(Some)?;
    let id = ring.adopt(OwnedFd::from(ours));
    ring.recv_multishot(id).map_err(Some)?;
    io::Write::write_all(&mut &theirs, b"p").map_err(Some)?;
    let outcome = wait_for(ring, |event| match event {
        Event::Received { buf, .. } if buf.as_slice() == b"p" => Some(Ok(())),
        Event::RecvFailed { error, .. } => Some(Err(Some(copy_error(error)))),
        Event::Eof { .. } => Some(Err(None)),
        _ => None,
    });
    // Disarms and releases; the ring's teardown waits for the cancellation.
    let _ = ring.close(id);
    outcome
}

/// A multishot accept on a listener must deliver a connection and stay armed.
fn check_accept_multishot(ring: &mut Ring) -> Result<(), Option<io::Error>> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "ringloop-uring-probe-{}-{}",
        std::process::id(),
        // Relaxed: only uniqueness within the process matters.
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).map_err(Some)?;
    let listener = UnixListener::bind_addr(&addr).map_err(Some)?;
    let id = ring.adopt(OwnedFd::from(listener));
    ring.accept_multishot(id).map_err(Some)?;
    let client = UnixStream::connect_addr(&addr).map_err(Some)?;
    let outcome = wait_for(ring, |event| match event {
        Event::Accepted { .. } => Some(Ok(())),
        Event::AcceptEnded { error, .. } => Some(Err(error.as_ref().map(copy_error))),
        _ => None,
    });
    drop(client);
    let _ = ring.close(id);
    outcome
}

/// Runs the ring until `decide` settles on an event, for at most
/// [`CHECK_BOUND`]. Events it does not settle on are dropped.
fn wait_for(
    ring: &mut Ring,
    mut decide: impl FnMut(&Event) -> Option<Result<(), Option<io::Error>>>,
) -> Result<(), Option<io::Error>> {
    let deadline = Instant::now() + CHECK_BOUND;
    let mut events = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "no completion within the probe's bound",
            )));
        }
        ring.submit_and_wait(1, Some(deadline - now))
            .map_err(Some)?;
        ring.complete(&mut events);
        for event in events.drain(..) {
            if let Some(outcome) = decide(&event) {
                return outcome;
            }
        }
    }
}

/// `io::Error` is not `Clone`; keep the errno (or the kind and message).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
