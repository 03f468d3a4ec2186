//! `IORING_OP_SEND` against `IORING_OP_SEND_ZC` over loopback TCP, the only
//! network this project benchmarks on (issue 14: "SEND_ZC only above a size
//! where a benchmark shows it pays").
//!
//! One io_uring, one connected pair on 127.0.0.1; a reader thread drains the
//! far end. The sender keeps `DEPTH` sends of `SIZE` bytes in flight from
//! `DEPTH` buffers, each reused only once its send completed (and, for
//! SEND_ZC, once its notification arrived: until then the kernel may still
//! read it). Alternates the two modes, `ROUNDS` rounds each, and prints the
//! sender thread's CPU per message (`getrusage(RUSAGE_THREAD)`) and msgs/s,
//! and their ratio SEND_ZC ÷ SEND measured in the same round.
//!
//!   cargo bench --bench send_zc                      # 16 KiB and 64 KiB, 5 rounds
//!   SEND_ZC_SIZES=4096,65536 SEND_ZC_ROUNDS=3 cargo bench --bench send_zc
//!
//! CPU time depends less on the machine's load than msgs/s does; both are
//! reported as same-round ratios.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};
use nix::libc;

const DEPTH: usize = 8;
const MESSAGES: usize = 40_000;

/// CPU time of the calling thread (`RUSAGE_THREAD`) or of the process.
fn cpu(who: i32) -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sends `MESSAGES` messages of `size` bytes; returns (sender thread CPU,
/// process CPU (sender, reader and any io_uring worker), wall time).
fn run(size: usize, zc: bool) -> (Duration, Duration, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = TcpStream::connect(addr).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    let total = size * MESSAGES;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            match far.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    let mut ring = IoUring::new(64).unwrap();
    let bufs: Vec<Vec<u8>> = (0..DEPTH).map(|i| vec![i as u8; size]).collect();
    // Per buffer: bytes sent so far of the current message, and whether the
    // kernel still owns it (a send or a notification outstanding).
    let mut sent = [0usize; DEPTH];
    let mut owed = [0u32; DEPTH];
    let mut started = 0;
    let mut done = 0;
    let fd = types::Fd(sender.as_raw_fd());
    let push = |ring: &mut IoUring, i: usize, off: usize| {
        let ptr = bufs[i][off..].as_ptr();
        let len = (size - off) as u32;
        let e = if zc {
            opcode::SendZc::new(fd, ptr, len).build()
        } else {
            opcode::Send::new(fd, ptr, len).build()
        };
        // SAFETY: `bufs` outlives every operation (we wait for all of them).
        unsafe { ring.submission().push(&e.user_data(i as u64)).unwrap() };
    };
    let cpu0 = cpu(libc::RUSAGE_THREAD);
    let all0 = cpu(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    for (i, owed) in owed.iter_mut().enumerate() {
        push(&mut ring, i, 0);
        *owed += 1;
        started += 1;
    }
    while done < MESSAGES || owed.iter().any(|&o| o > 0) {
        ring.submit_and_wait(1).unwrap();
        let cqes: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in cqes {
            let i = ud as usize;
            if cqueue::notif(flags) {
                owed[i] -= 1; // the kernel no longer reads the buffer
            } else {
                assert!(res > 0, "send failed: {res}");
                if !cqueue::more(flags) {
                    owed[i] -= 1; // no notification follows
                }
                sent[i] += res as usize;
                if sent[i] < size {
                    // Short send: the rest from the same buffer.
                    push(&mut ring, i, sent[i]);
                    owed[i] += 1;
                    continue;
                }
                sent[i] = 0;
                done += 1;
            }
            if owed[i] == 0 && sent[i] == 0 && started < MESSAGES {
                push(&mut ring, i, 0);
                owed[i] += 1;
                started += 1;
            }
        }
    }
    let wall = t0.elapsed();
    let sender_cpu = cpu(libc::RUSAGE_THREAD) - cpu0;
    drop(sender);
    assert_eq!(reader.join().unwrap(), total);
    (sender_cpu, cpu(libc::RUSAGE_SELF) - all0, wall)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SEND_ZC_SIZES")
        .unwrap_or_else(|_| "16384,65536".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("SEND_ZC_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "| size | round | SEND sender µs CPU/msg | SEND_ZC sender µs CPU/msg | sender CPU ZC ÷ SEND \
         | process CPU ZC ÷ SEND | SEND msgs/s | SEND_ZC msgs/s | msgs/s ZC ÷ SEND |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &size in &sizes {
        for round in 1..=rounds {
            // Alternate which goes first.
            let (plain, zc) = if round % 2 == 1 {
                let p = run(size, false);
                (p, run(size, true))
            } else {
                let z = run(size, true);
                (run(size, false), z)
            };
            let per = |d: Duration| d.as_secs_f64() * 1e6 / MESSAGES as f64;
            let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
            println!(
                "| {size} | {round} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
                per(plain.0),
                per(zc.0),
                per(zc.0) / per(plain.0),
                per(zc.1) / per(plain.1),
                rate(plain.2),
                rate(zc.2),
                rate(zc.2) / rate(plain.2)
            );
        }
    }
}
