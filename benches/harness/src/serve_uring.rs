//! ringloop's io_uring groundwork driven directly, without the event loop
//! (`src/sys/uring`, compiled into the harness): one thread, one ring,
//! multishot accept, multishot receive into the provided buffer ring, each
//! received buffer sent straight back (no copy), every send of a turn
//! submitted by the turn's single `io_uring_enter`. It shows what the
//! completion driver can reach before the loop sits on top of it.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};

use crate::uring::bufring::BufRingConfig;
use crate::uring::probe::{self, ProbeOptions};
use crate::uring::ring::{Event, Ring, RingConfig, SourceId};
use crate::Result;

/// Serves until SIGINT or SIGTERM; prints the `io_uring_enter` count.
pub fn run(addr: SocketAddr, buf: usize) -> Result<()> {
    if let Err(unsupported) = probe::probe(&ProbeOptions::default()) {
        return Err(format!("the uring echo needs io_uring: {unsupported}").into());
    }
    let buf_size = u32::try_from(buf).map_err(|_| "--buf too large")?;
    // A signal becomes a ring of the doorbell the loop reads through the ring.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    let bell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    let bell_dup = bell.as_fd().try_clone_to_owned()?;
    std::thread::spawn(move || {
        let _ = mask.wait();
        let _ = bell.write(1);
    });

    let mut ring = Ring::new(RingConfig {
        entries: 1024,
        buffers: BufRingConfig {
            count: 1024,
            buf_size,
            group: 0,
        },
        ..RingConfig::default()
    })?;
    let listener = TcpListener::bind(addr)?;
    println!(
        "uring echo listening on tcp://{} (1 thread, direct io_uring, {} x {buf}-byte provided buffers)",
        listener.local_addr()?,
        ring.buffers().capacity()
    );
    let lid = ring.adopt(OwnedFd::from(listener));
    ring.accept_multishot(lid)?;
    ring.watch_doorbell(bell_dup)?;
    let mut finishing: HashSet<SourceId> = HashSet::new();
    let mut events = Vec::new();
    'serve: loop {
        ring.submit_and_wait(1, Some(Duration::from_secs(1)))?;
        ring.complete(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Accepted { fd, .. } => {
                    nix::sys::socket::setsockopt(
                        &fd,
                        nix::sys::socket::sockopt::TcpNoDelay,
                        &true,
                    )?;
                    let id = ring.adopt(fd);
                    if ring.recv_multishot(id).is_err() {
                        let _ = ring.close(id);
                    }
                }
                Event::AcceptEnded { listener, error } => {
                    if let Some(e) = error {
                        eprintln!("uring echo: accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    ring.accept_multishot(listener)?;
                }
                Event::Received { source, buf } => {
                    let sent = ring.send(source, buf);
                    if sent.is_err() {
                        let _ = ring.close(source);
                    }
                }
                Event::Sent {
                    source, queued: 0, ..
                } if finishing.remove(&source) => {
                    let _ = ring.close(source);
                }
                Event::Eof { source } => {
                    if ring.pending_send(source) == 0 {
                        let _ = ring.close(source);
                    } else {
                        finishing.insert(source);
                    }
                }
                Event::RecvFailed { source, .. } | Event::SendFailed { source, .. } => {
                    finishing.remove(&source);
                    let _ = ring.close(source);
                }
                Event::Doorbell => break 'serve,
                _ => {}
            }
        }
    }
    let stats = ring.stats();
    eprintln!(
        "uring echo: signal received, stopping ({} io_uring_enter, {} completions, {} starved receives)",
        stats.enters, stats.completions, stats.starved
    );
    Ok(())
}
