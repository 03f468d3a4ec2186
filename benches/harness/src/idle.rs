//! Idle-connection memory: how much a server's resident memory grows per
//! connection that is open but silent.

use std::net::SocketAddr;
use std::time::Duration;

use crate::connect::open_confirmed;
use crate::{procfs, Result};

/// Descriptors the harness needs besides the connections themselves.
const SPARE_FDS: u64 = 64;

/// Connections opened, echoed and closed before the first reading, so the
/// server's code for accepting, echoing and closing is paged in and its
/// allocator warmed: that memory is per server, not per connection (in a
/// release build of ringloop on io_uring it was ~26 B per connection at
/// 10,000 when read before any connection).
const WARM_CONNS: usize = 16;

/// How long the connections stay idle before the second reading.
const IDLE_SETTLE: Duration = Duration::from_millis(2500);

/// What one idle test measured.
pub struct IdleReport {
    /// Connections held open.
    pub conns: usize,
    /// Server `VmRSS` before opening them, bytes.
    pub rss_before: u64,
    /// Server `VmRSS` with all of them open, bytes.
    pub rss_after: u64,
}

impl IdleReport {
    /// Growth of the server's resident memory per idle connection.
    pub fn bytes_per_conn(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / self.conns as f64
    }

    /// Human-readable one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} idle conns: server VmRSS {} KiB -> {} KiB, {:.0} bytes per connection",
            self.conns,
            self.rss_before / 1024,
            self.rss_after / 1024,
            self.bytes_per_conn()
        )
    }
}

/// Opens `conns` connections to the server `pid` listening on `addr`, waits
/// until each has echoed one byte (so the server holds its state for it),
/// reads the server's `VmRSS` before and after, and closes them all. Before
/// the first reading, [`WARM_CONNS`] connections are opened, echoed and
/// closed, the same for every server.
pub fn run(addr: SocketAddr, conns: usize, pid: u32) -> Result<IdleReport> {
    if conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    let limit = procfs::nofile_limit()?;
    if (conns as u64) + SPARE_FDS > limit {
        return Err(format!(
            "{conns} connections need about {} file descriptors but RLIMIT_NOFILE is {limit} \
             (the harness already raised it to the hard limit)",
            conns as u64 + SPARE_FDS
        )
        .into());
    }
    drop(open_confirmed(addr, WARM_CONNS, Duration::from_secs(60))?);
    // Let the server close them and settle before the first reading.
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = procfs::vm_rss(pid)?;
    let streams = open_confirmed(addr, conns, Duration::from_secs(60))?;
    // Everything has been echoed. Idle connections are measured on an idle
    // server: the wait lets deferred work finish and lets a server that
    // gives memory back when it goes quiet do so (ringloop's loops free
    // their send-buffer pools within about 2 s of quiet, their io_uring
    // receive buffers' pages after 50 ms). The same for every server.
    std::thread::sleep(IDLE_SETTLE);
    let rss_after = procfs::vm_rss(pid)?;
    drop(streams);
    Ok(IdleReport {
        conns,
        rss_before,
        rss_after,
    })
}
