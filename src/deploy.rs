//! Running in production: the builder-side settings for connection limits,
//! PROXY protocol listeners, inherited sockets (`fd://N`, systemd) and
//! upgrades.
//!
//! Owns those settings ([`DeployConfig`]), which listen addresses are taken
//! over instead of bound ([`Inherited`]) and where those sockets go. What a
//! running engine shares about them is `runtime::deploy::DeployShared`; the
//! builder's setters are in `builder.rs`, the engine's queries in
//! `engine.rs`; a proxied connection's header state is
//! `proxy_protocol::ProxyState`.
//! The work itself lives elsewhere: [`crate::admission`] (accepting), the
//! loop's `admit` step (headers, draining), [`crate::upgrade`] (the handoff),
//! [`crate::sys::handoff`] (descriptor calls). It makes no socket call of
//! its own beyond those.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::error::{Error, Result};
use crate::listener::{Listener, LoopSockets};
use crate::options::Options;
use crate::sys;
use crate::upgrade::{Control, Takeover};

/// How long a proxied connection may take to send its header, by default.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Builder-side settings kept beside the options.
#[derive(Debug)]
pub(crate) struct DeployConfig {
    /// Listen-address indexes that expect a PROXY header.
    pub(crate) proxied: BTreeSet<usize>,
    /// Every stream listener expects a PROXY header.
    pub(crate) all_proxied: bool,
    pub(crate) header_timeout: Duration,
    /// Why `listen_systemd` found no sockets (reported by `build`).
    pub(crate) systemd_error: Option<Error>,
    /// The upgrade control socket, if the engine serves one.
    pub(crate) upgrade_path: Option<PathBuf>,
    pub(crate) upgrade_deadline: Duration,
    /// A handoff under way: sockets received, `READY` not yet sent.
    pub(crate) takeover: Option<Takeover>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            proxied: BTreeSet::new(),
            all_proxied: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            systemd_error: None,
            upgrade_path: None,
            upgrade_deadline: crate::upgrade::DEFAULT_DEADLINE,
            takeover: None,
        }
    }
}

impl DeployConfig {
    /// Indexed by listen address: does it expect a PROXY header?
    pub(crate) fn proxied_flags(&self, addrs: &[ListenAddr]) -> Vec<bool> {
        let stream = |a: &ListenAddr| a.transport() != Transport::Udp;
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| self.proxied.contains(&i) || (self.all_proxied && stream(a)))
            .collect()
    }

    /// Checks the settings against the parsed listen addresses.
    pub(crate) fn validate(&self, addrs: &[ListenAddr]) -> Result<()> {
        for &i in &self.proxied {
            if addrs
                .get(i)
                .is_some_and(|a| a.transport() == Transport::Udp)
            {
                return Err(Error::InvalidConfig(format!(
                    "{}: the PROXY protocol needs a stream listener (tcp:// or unix://)",
                    addrs[i]
                )));
            }
        }
        if self.header_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "the PROXY header timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Listening sockets taken over instead of bound, by listen-address index.
#[derive(Default)]
pub(crate) struct Inherited {
    /// The address, its sockets, and whether a Unix socket file is ours to
    /// remove at exit (taken over in an upgrade: yes; inherited: no).
    by_index: HashMap<usize, (ListenAddr, Vec<OwnedFd>, bool)>,
}

impl Inherited {
    /// The address of inherited listen address `index`, if it is one.
    pub(crate) fn addr(&self, index: usize) -> Option<ListenAddr> {
        self.by_index.get(&index).map(|(a, _, _)| a.clone())
    }

    pub(crate) fn has(&self, index: u16) -> bool {
        self.by_index.contains_key(&usize::from(index))
    }

    /// Hands the sockets of listen address `index` to whoever accepts: the
    /// acceptor, or the loops that accept inline, spread evenly (a TCP
    /// address with fewer sockets than loops gets new ones bound beside
    /// them, joining their `SO_REUSEPORT` group). Every socket taken over
    /// is served: closing one would drop the connections in its queue.
    pub(crate) fn place(
        &mut self,
        index: u16,
        acceptor: &mut Vec<(Listener, u16)>,
        loops: &mut [LoopSockets],
        options: &Options,
    ) -> Result<ListenAddr> {
        let (addr, fds, owns_file) = self
            .by_index
            .remove(&usize::from(index))
            .expect("checked by has()");
        if addr.transport() == Transport::Udp {
            // Every loop reads its own socket of the SO_REUSEPORT group
            // (ours always are); loops beyond the ones handed over join it.
            let n = fds.len();
            for (i, fd) in fds.into_iter().enumerate() {
                loops[i % loops.len()].udp.push((fd, index));
            }
            for sockets in loops.iter_mut().skip(n) {
                let (fd, _) = Listener::bind_udp(&addr, options, false)?;
                sockets.udp.push((fd, index));
            }
            return Ok(addr);
        }
        if !options.accepts_inline() {
            acceptor.extend(
                fds.into_iter()
                    .map(|fd| (Listener::adopt(fd, addr.clone(), owns_file, options), index)),
            );
            return Ok(addr);
        }
        let n = fds.len();
        for (i, fd) in fds.into_iter().enumerate() {
            loops[i % loops.len()]
                .listeners
                .push((Listener::adopt(fd, addr.clone(), owns_file, options), index));
        }
        if addr.transport() == Transport::Tcp {
            for sockets in loops.iter_mut().skip(n) {
                match Listener::bind(&addr, options, true) {
                    Ok(listener) => sockets.listeners.push((listener, index)),
                    Err(e) => {
                        // Not in a SO_REUSEPORT group: the loops holding
                        // the inherited sockets serve them alone.
                        log::info!("{addr}: served by {n} loop(s) only ({e})");
                        break;
                    }
                }
            }
        }
        Ok(addr)
    }
}

impl DeployConfig {
    /// Takes the sockets named by `fd://N` addresses, checking each is an
    /// open, listening stream socket named once.
    pub(crate) fn take_inherited(&mut self, addrs: &[String]) -> Result<Inherited> {
        if let Some(e) = self.systemd_error.take() {
            return Err(e);
        }
        let mut inherited = Inherited::default();
        let mut taken = BTreeSet::new();
        for (i, a) in addrs.iter().enumerate() {
            let Some(number) = a.strip_prefix("fd://") else {
                continue;
            };
            let invalid = |reason: &str| Error::invalid_address(a, reason);
            let raw: RawFd = number
                .parse()
                .ok()
                .filter(|n: &RawFd| *n >= 0 && number.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| invalid("fd:// takes a descriptor number, e.g. fd://3"))?;
            if !taken.insert(raw) {
                return Err(invalid("the same descriptor is named twice"));
            }
            let fd = sys::handoff::take_inherited(raw)
                .map_err(|e| invalid(&format!("descriptor {raw} is not open ({e})")))?;
            let sock_addr = sys::handoff::listening_stream_addr(fd.as_fd())
                .map_err(|e| invalid(&format!("descriptor {raw}: {e}")))?;
            let transport = match sock_addr {
                SockAddr::Inet(_) => Transport::Tcp,
                SockAddr::Unix(_) => Transport::Unix,
            };
            // An unnamed (abstract) Unix socket has no URL form: keep its
            // address as the kernel gave it.
            let addr = ListenAddr::parse(&format!("{transport}://{sock_addr}")).or_else(|_| {
                ListenAddr::parse("unix://inherited").map(|u| u.with_sock_addr(sock_addr.clone()))
            })?;
            inherited.by_index.insert(i, (addr, vec![fd], false));
        }
        if let Some(path) = &self.upgrade_path {
            if let Some(mut takeover) = crate::upgrade::request(path)? {
                for (i, a) in addrs.iter().enumerate() {
                    let Ok(want) = ListenAddr::parse(a) else {
                        continue; // fd:// (taken above), or an error build reports
                    };
                    let taken = takeover.take_for(i, &want);
                    if let Some((addr, _)) = taken.first() {
                        let addr = addr.clone();
                        let fds = taken.into_iter().map(|(_, fd)| fd).collect();
                        inherited.by_index.insert(i, (addr, fds, true));
                    }
                }
                self.takeover = Some(takeover);
            }
        }
        Ok(inherited)
    }

    /// After every listener is in place: completes a handoff under way (the
    /// old process stops accepting) and binds the control socket for the
    /// next upgrade.
    pub(crate) fn finish_upgrade(
        &mut self,
        acceptor: &[(Listener, u16)],
        loops: &[LoopSockets],
    ) -> Result<Option<Control>> {
        if let Some(takeover) = self.takeover.take() {
            takeover.complete()?;
        }
        let Some(path) = &self.upgrade_path else {
            return Ok(None);
        };
        Control::bind(path, self.upgrade_deadline, acceptor, loops).map(Some)
    }
}

/// The descriptors systemd passed (`LISTEN_FDS` from `SD_LISTEN_FDS_START`,
/// for `LISTEN_PID`); removes the variables.
pub(crate) fn systemd_fds() -> Result<std::ops::Range<RawFd>> {
    const SD_LISTEN_FDS_START: RawFd = 3;
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Err(Error::InvalidConfig(
            "no sockets from systemd: LISTEN_PID and LISTEN_FDS are not set".into(),
        ));
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Err(Error::InvalidConfig(format!(
            "the sockets from systemd are for process {pid}, not this one ({})",
            std::process::id()
        )));
    }
    let n: RawFd = count
        .parse()
        .ok()
        .filter(|n| (1..=1024).contains(n))
        .ok_or_else(|| {
            Error::InvalidConfig(format!("LISTEN_FDS={count:?} is not a count of sockets"))
        })?;
    Ok(SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n)
}
