//! The UDP load generator: closed-loop echo clients on connected mio UDP
//! sockets, every datagram verified.
//!
//! Each socket keeps one datagram in flight. A datagram is a 12-byte header
//! (socket id `u32`, sequence number `u64`, little-endian) followed by the
//! rest of the TCP generator's pattern message for (socket, sequence), so a
//! reply that is truncated, padded, altered, crossed with another socket's,
//! or from the future fails the run at once. UDP may drop datagrams: a
//! datagram with no reply after `timeout` is counted as *lost* and the next
//! one is sent; a reply that arrives after that is *late*, still verified,
//! and otherwise ignored. A second reply to the current datagram is a
//! duplicate, which an echo server never makes: the run fails.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::load::{LoadConfig, LoadReport, ThreadReport};
use crate::pattern::Pattern;
use crate::{procfs, Result};

/// Bytes of the header in front of every datagram.
pub const HEADER: usize = 12;
/// Wait this long for a reply before counting the datagram as lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// Largest datagram size accepted (loopback MTU is 64 KiB, IPv4 payload less).
pub const MAX_SIZE: usize = 65_000;

/// Runs warm-up plus measured window with `cfg.conns` sockets and reports.
/// `LoadReport::errors` counts sockets that failed (ICMP errors such as
/// "connection refused"); `LoadReport::datagrams_lost` the timeouts.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport> {
    if cfg.conns == 0 || cfg.threads == 0 {
        return Err("--conns and --threads must be at least 1".into());
    }
    if !(HEADER + 4..=MAX_SIZE).contains(&cfg.size) {
        return Err(format!(
            "UDP datagrams must be {} to {MAX_SIZE} bytes (a {HEADER}-byte header plus payload)",
            HEADER + 4
        )
        .into());
    }
    if cfg.duration.is_zero() {
        return Err("the measured time must be above zero".into());
    }
    let mut groups: Vec<Vec<(usize, UdpSocket)>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for id in 0..cfg.conns {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().expect("a valid address"))?;
        socket.connect(cfg.addr)?;
        groups[id % cfg.threads].push((id, socket));
    }
    let pattern = Pattern::new(cfg.size);
    let abort = AtomicBool::new(false);
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;

    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let (pattern, abort) = (&pattern, &abort);
                scope.spawn(move || {
                    let r = drive(group, pattern, start, end, abort);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let sample = |pid: Option<u32>| pid.map(procfs::cpu_time).transpose();
        crate::load::sleep_until(start, &abort);
        let (server0, client0) = (sample(cfg.server_pid), procfs::cpu_time(std::process::id()));
        crate::load::sleep_until(end, &abort);
        let (server1, client1) = (sample(cfg.server_pid), procfs::cpu_time(std::process::id()));
        let report = LoadReport::empty(end - start);
        let results = workers
            .into_iter()
            .map(|w| w.join().expect("load thread panicked"));
        crate::load::finish(report, results, (server0, client0), (server1, client1))
    })
}

struct Peer {
    id: usize,
    socket: UdpSocket,
    /// Sequence number of the datagram in flight (or next to send).
    seq: u64,
    /// A reply to `seq` is awaited.
    waiting: bool,
    sent_at: Instant,
    in_window: u64,
    dead: bool,
}

/// Writes datagram `seq` of socket `id` into `out`.
fn datagram(pattern: &Pattern, id: usize, seq: u64, out: &mut [u8]) {
    out[..4].copy_from_slice(&(id as u32).to_le_bytes());
    out[4..HEADER].copy_from_slice(&seq.to_le_bytes());
    out[HEADER..].copy_from_slice(&pattern.message(id, seq)[HEADER..]);
}

fn drive(
    group: Vec<(usize, UdpSocket)>,
    pattern: &Pattern,
    start: Instant,
    end: Instant,
    abort: &AtomicBool,
) -> Result<ThreadReport> {
    let size = pattern.message(0, 0).len();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut peers = Vec::with_capacity(group.len());
    for (i, (id, mut socket)) in group.into_iter().enumerate() {
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        peers.push(Peer {
            id,
            socket,
            seq: 0,
            waiting: false,
            sent_at: now,
            in_window: 0,
            dead: false,
        });
    }
    let mut report = ThreadReport::default();
    let mut out = vec![0u8; size];
    // One byte more than a datagram, so a longer reply shows up as longer.
    let mut buf = vec![0u8; size + 1];
    let mut expected = vec![0u8; size];

    let lose = |p: &mut Peer, report: &mut ThreadReport, why: String| {
        p.dead = true;
        report.errors += 1;
        if report.error_samples.len() < 5 {
            report.error_samples.push(format!("socket {}: {why}", p.id));
        }
    };
    let send = |p: &mut Peer, out: &mut [u8]| {
        datagram(pattern, p.id, p.seq, out);
        p.sent_at = Instant::now();
        p.waiting = true;
        match p.socket.send(out) {
            Ok(n) if n == out.len() => None,
            Ok(n) => Some(format!("send took {n} of {} bytes", out.len())),
            // The client's own buffer is full: the datagram is dropped here
            // and times out like one the server dropped.
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => Some(format!("send: {e}")),
        }
    };

    for p in &mut peers {
        if let Some(why) = send(p, &mut out) {
            lose(p, &mut report, why);
        }
    }
    let mut next_scan = Instant::now() + Duration::from_millis(10);
    loop {
        let now = Instant::now();
        if now >= end || abort.load(Ordering::Relaxed) {
            break;
        }
        let wait = (end - now)
            .min(next_scan.saturating_duration_since(now))
            .min(Duration::from_millis(50));
        match poll.poll(&mut events, Some(wait)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            let p = &mut peers[event.token().0];
            while !p.dead {
                let n = match p.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        lose(p, &mut report, format!("recv: {e}"));
                        break;
                    }
                };
                let corrupt = |why: String| -> crate::BoxError {
                    format!("UDP socket {} datagram #{}: {why}", p.id, p.seq).into()
                };
                if n != size {
                    return Err(corrupt(format!("echo is {n} bytes, sent {size}")));
                }
                let id = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                let seq = u64::from_le_bytes(buf[4..HEADER].try_into().expect("8 bytes"));
                if id != p.id {
                    return Err(corrupt(format!("echo carries socket id {id}")));
                }
                if seq > p.seq || (seq == p.seq && !p.waiting) {
                    return Err(corrupt(format!(
                        "echo carries sequence number {seq}{}",
                        if seq == p.seq {
                            ", already answered (a duplicate)"
                        } else {
                            ", not sent yet"
                        }
                    )));
                }
                datagram(pattern, id, seq, &mut expected);
                if buf[..n] != expected[..] {
                    let at = (0..n).find(|&i| buf[i] != expected[i]).unwrap_or(0);
                    return Err(corrupt(format!(
                        "byte {at} of {size} (reply to #{seq}): sent 0x{:02x}, echoed 0x{:02x}",
                        expected[at], buf[at]
                    )));
                }
                if seq < p.seq {
                    report.late += 1;
                    continue;
                }
                let now = Instant::now();
                if now >= start && now < end {
                    report.messages += 1;
                    report
                        .latency
                        .record((now - p.sent_at).as_nanos().min(u64::MAX as u128) as u64);
                    p.in_window += 1;
                }
                p.seq += 1;
                if let Some(why) = send(p, &mut out) {
                    lose(p, &mut report, why);
                }
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + Duration::from_millis(10);
            for p in peers.iter_mut().filter(|p| !p.dead && p.waiting) {
                if now - p.sent_at >= REPLY_TIMEOUT {
                    if p.sent_at >= start && p.sent_at < end {
                        report.lost += 1;
                    }
                    p.seq += 1;
                    if let Some(why) = send(p, &mut out) {
                        lose(p, &mut report, why);
                    }
                }
            }
        }
    }
    report.stalled = peers.iter().filter(|p| !p.dead && p.in_window == 0).count();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_carry_id_and_sequence() {
        let p = Pattern::new(64);
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        datagram(&p, 3, 7, &mut a);
        datagram(&p, 3, 8, &mut b);
        assert_eq!(u32::from_le_bytes(a[..4].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(a[4..12].try_into().unwrap()), 7);
        assert_ne!(a[HEADER..], b[HEADER..]);
    }
}
