//! Upgrades that drop nothing: a running engine hands its listening sockets
//! to a new process over a Unix control socket (`SCM_RIGHTS`), stops
//! accepting, serves the connections it has until they close (or the
//! upgrade deadline passes), then stops.
//!
//! Owns the handoff protocol, both sides. Every message is one
//! `SOCK_SEQPACKET` packet:
//!
//! ```text
//!   new → old   HELLO ringloop-upgrade/1
//!   old → new   FD <listen index> <address>     (one listening socket attached)
//!               … one per listening socket (every loop's, in reuseport mode)
//!   old → new   END                             or REFUSED <why>
//!   new → old   READY                           (the new engine is built)
//!   old → new   DRAINING                        (the old one accepts no more)
//! ```
//!
//! Until `READY` nothing changes for the old process: a new process that
//! fails (an address it cannot bind, a crash) leaves it serving as before.
//! After `DRAINING` the new process replaces the control socket file and
//! serves it for the next upgrade. The listening sockets never close in
//! between (both processes hold them), so connections arriving meanwhile
//! wait in the kernel's queues; none is refused or lost.
//!
//! It must never touch a connection; the actors stop accepting and the loops
//! keep serving on their own when they see the draining flag.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::addr::{ListenAddr, SockAddr};
use crate::error::{Error, Result};
use crate::listener::{Listener, LoopSockets};
use crate::runtime::EngineShared;
use crate::sys::handoff;

/// How long an upgrade lets old connections finish, by default.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
const HELLO: &str = "HELLO ringloop-upgrade/1";
/// Bound on every step of the handoff, so neither side waits forever on a
/// peer that hangs.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the old side's thread looks at the engine's state.
const POLL: Duration = Duration::from_millis(20);

fn upgrade_error(e: io::Error) -> Error {
    Error::io("upgrade through the control socket", e)
}

fn refused(why: impl Into<String>) -> Error {
    upgrade_error(io::Error::other(why.into()))
}

/// Receives one packet as text, with the descriptor attached (if any).
fn receive(conn: &OwnedFd) -> io::Result<(String, Option<OwnedFd>)> {
    let mut buf = [0u8; 512];
    let (n, mut fds) = handoff::recv_with_fds(conn.as_fd(), &mut buf)?;
    if n == 0 && fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the other process closed the control connection",
        ));
    }
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    // More than one descriptor in a packet is a protocol error; extra ones
    // are closed by being dropped.
    let fd = (!fds.is_empty()).then(|| fds.swap_remove(0));
    Ok((text, fd))
}

fn send(conn: &OwnedFd, text: &str) -> io::Result<()> {
    handoff::send_with_fds(conn.as_fd(), text.as_bytes(), &[])
}

// ----- the new process -----

/// The new process's side: sockets received, `READY` not yet sent.
#[derive(Debug)]
pub(crate) struct Takeover {
    conn: OwnedFd,
    sockets: Vec<(usize, ListenAddr, OwnedFd)>,
}

/// Asks the process serving `path` for its listening sockets. `Ok(None)` if
/// nobody serves it (no file, or a stale one).
pub(crate) fn request(path: &Path) -> Result<Option<Takeover>> {
    let conn = match handoff::control_connect(path) {
        Ok(conn) => conn,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            log::debug!("nobody serves {}: binding as usual", path.display());
            return Ok(None);
        }
        Err(e) => return Err(upgrade_error(e)),
    };
    handoff::set_io_timeout(conn.as_fd(), STEP_TIMEOUT).map_err(upgrade_error)?;
    send(&conn, HELLO).map_err(upgrade_error)?;
    let mut sockets = Vec::new();
    loop {
        let (text, fd) = receive(&conn).map_err(upgrade_error)?;
        if text == "END" {
            break;
        }
        if let Some(why) = text.strip_prefix("REFUSED ") {
            return Err(refused(format!(
                "the process serving {} refused the handoff: {why}",
                path.display()
            )));
        }
        let parsed = text.strip_prefix("FD ").and_then(|rest| {
            let (index, addr) = rest.split_once(' ')?;
            Some((index.parse::<usize>().ok()?, ListenAddr::parse(addr).ok()?))
        });
        match (parsed, fd) {
            (Some((index, addr)), Some(fd)) => sockets.push((index, addr, fd)),
            _ => return Err(refused(format!("unexpected handoff message {text:?}"))),
        }
    }
    log::info!(
        "received {} listening socket(s) from the process serving {}",
        sockets.len(),
        path.display()
    );
    Ok(Some(Takeover { conn, sockets }))
}

impl Takeover {
    /// The received sockets that serve listen address `index`, wanted as
    /// `want`: the same address, or the same IP with port 0 at the same
    /// index (an address that asked for any port keeps the one it got).
    pub(crate) fn take_for(
        &mut self,
        index: usize,
        want: &ListenAddr,
    ) -> Vec<(ListenAddr, OwnedFd)> {
        let fits = |i: usize, got: &ListenAddr| {
            if got == want {
                return true;
            }
            match (want.sock_addr(), got.sock_addr()) {
                (SockAddr::Inet(w), SockAddr::Inet(g)) => {
                    i == index
                        && w.port() == 0
                        && w.ip() == g.ip()
                        && want.transport() == got.transport()
                }
                _ => false,
            }
        };
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(i, got, _)| fits(*i, got));
        self.sockets = kept;
        taken.into_iter().map(|(_, a, fd)| (a, fd)).collect()
    }

    /// Tells the old process the new engine is ready; returns once it
    /// stopped accepting.
    pub(crate) fn complete(self) -> Result<()> {
        for (_, addr, _) in &self.sockets {
            log::info!("{addr} is not listened on any more: closing it");
        }
        send(&self.conn, "READY").map_err(upgrade_error)?;
        match receive(&self.conn).map_err(upgrade_error)?.0.as_str() {
            "DRAINING" => Ok(()),
            other => Err(refused(format!("unexpected handoff reply {other:?}"))),
        }
    }
}

// ----- the old process -----

/// The control socket of a running engine and a second descriptor of each
/// of its listening sockets, to hand over.
pub(crate) struct Control {
    path: PathBuf,
    listener: OwnedFd,
    offered: Vec<(u16, ListenAddr, OwnedFd)>,
    deadline: Duration,
}

impl Control {
    /// Serves `path` (replacing whatever file is there: the caller took
    /// over from its process, or found nobody there) for the engine whose
    /// listeners these are.
    pub(crate) fn bind(
        path: &Path,
        deadline: Duration,
        acceptor: &[(Listener, u16)],
        loops: &[LoopSockets],
    ) -> Result<Control> {
        let all = acceptor
            .iter()
            .chain(loops.iter().flat_map(|l| l.listeners.iter()));
        let mut offered = all
            .map(|(l, index)| {
                let fd = handoff::duplicate(l.fd.as_fd()).map_err(upgrade_error)?;
                Ok((*index, l.addr.clone(), fd))
            })
            .collect::<Result<Vec<_>>>()?;
        // UDP sockets go over too: the new process could not bind the port
        // while this one holds it.
        for (fd, index) in loops.iter().flat_map(|l| l.udp.iter()) {
            let bound = crate::sys::socket::local_addr(fd.as_fd()).map_err(upgrade_error)?;
            let addr = ListenAddr::parse(&format!("udp://{bound}"))?;
            let fd = handoff::duplicate(fd.as_fd()).map_err(upgrade_error)?;
            offered.push((*index, addr, fd));
        }
        let listener = handoff::control_listener(path).map_err(|e| {
            Error::io(
                "serve the upgrade control socket",
                io::Error::new(e.kind(), format!("{}: {e}", path.display())),
            )
        })?;
        Ok(Control {
            path: path.to_path_buf(),
            listener,
            offered,
            deadline,
        })
    }
}

/// Starts the thread that serves the control socket, if there is one.
pub(crate) fn start(
    control: Option<Control>,
    engine: &Arc<EngineShared>,
) -> Result<Option<thread::JoinHandle<()>>> {
    let Some(control) = control else {
        return Ok(None);
    };
    let engine = engine.clone();
    thread::Builder::new()
        .name("ringloop-upgrade".into())
        .spawn(move || serve(control, &engine))
        .map(Some)
        .map_err(|e| Error::io("start a thread", e))
}

/// The old side: waits for a new process, hands over, drains, stops.
fn serve(control: Control, engine: &EngineShared) {
    let deadline = control.deadline;
    let handed_over = loop {
        if engine.is_stopping() {
            break false;
        }
        match handoff::wait_readable(control.listener.as_fd(), POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                log::error!("upgrade control socket {}: {e}", control.path.display());
                break false;
            }
        }
        let conn = match handoff::accept_control(control.listener.as_fd()) {
            Ok(conn) => conn,
            Err(e) => {
                log::warn!("upgrade control socket {}: {e}", control.path.display());
                continue;
            }
        };
        match hand_over(&control, &conn, engine) {
            Ok(()) => break true,
            Err(e) => log::warn!("upgrade abandoned, still serving: {e}"),
        }
    };
    if !handed_over {
        // Stopping for good: nobody will serve the path.
        let _ = std::fs::remove_file(&control.path);
        return;
    }
    // The new process owns the path and the sockets now.
    drop(control);
    let until = Instant::now() + deadline;
    loop {
        if engine.is_stopping() {
            return;
        }
        // Count only once no actor can still be accepting: one that has
        // just accepted a connection counts it before it counts itself out.
        let left = engine.connection_count();
        if left == 0 && engine.deploy().still_accepting() == 0 {
            log::info!("upgrade: the last connection closed; stopping");
            break;
        }
        if Instant::now() >= until {
            log::info!("upgrade: deadline passed with {left} connection(s) open; stopping");
            break;
        }
        thread::sleep(POLL);
    }
    engine.request_stop();
}

/// One handoff attempt on `conn`. `Ok` once the new process is ready and
/// this engine stopped accepting.
fn hand_over(control: &Control, conn: &OwnedFd, engine: &EngineShared) -> io::Result<()> {
    handoff::set_io_timeout(conn.as_fd(), STEP_TIMEOUT)?;
    let (hello, _) = receive(conn)?;
    if hello != HELLO {
        let _ = send(
            conn,
            "REFUSED unknown protocol (expected ringloop-upgrade/1)",
        );
        return Err(io::Error::other(format!("unexpected greeting {hello:?}")));
    }
    if engine.is_stopping() {
        let _ = send(conn, "REFUSED the engine is stopping");
        return Err(io::Error::other("asked to hand over while stopping"));
    }
    for (index, addr, fd) in &control.offered {
        let text = format!("FD {index} {addr}");
        handoff::send_with_fds(conn.as_fd(), text.as_bytes(), &[fd.as_fd()])?;
    }
    send(conn, "END")?;
    let (ready, _) = receive(conn)?;
    if ready != "READY" {
        return Err(io::Error::other(format!("unexpected reply {ready:?}")));
    }
    // From READY on the new process is responsible for the sockets: drain
    // even if it cannot hear the acknowledgement.
    engine.begin_upgrade_drain();
    if let Err(e) = send(conn, "DRAINING") {
        log::warn!("upgrade: the new process did not take the acknowledgement: {e}");
    }
    log::info!(
        "handed {} listening socket(s) over; draining",
        control.offered.len()
    );
    Ok(())
}
