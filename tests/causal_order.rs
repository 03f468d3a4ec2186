//! Issue 18 over real sockets: requests sent to one connection from
//! different threads are applied in causal order. When one request's call
//! happens-before another's (the first returned, a flag was set, another
//! thread saw the flag and sent), the loop applies the first first:
//!
//! * a close, a wake or an `EngineHandle::execute` (how a pool job hands its
//!   result back to the loop) sent after another thread's write comes after
//!   that write;
//! * `Framed` frames sent by a chain of pool workers through their
//!   connections' `FrameHandle`s arrive in chain order;
//! * `examples/echo_pool` (one job in flight per connection, any worker)
//!   echoes byte-exact with no delay and four workers, as a black box.
//!
//! Before the fix every producer thread's lane was drained round-robin, so
//! only per-thread order held, and each of these could be reordered.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;
use ringloop::codec::{Codec, FrameConn, FrameHandle, FrameHandler, Framed, LengthFieldCodec};
use ringloop::{Action, CloseReason, Conn, Engine, EventHandler};

/// Waits (yielding) until `flag` is set.
fn wait_for(flag: &AtomicBool) {
    // Acquire: pairs with the Release after the first request's call
    // returned, which therefore happens-before whatever follows.
    while !flag.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

// ----- a close, wake or execute after another thread's write -----

/// What the second worker sends once it has seen the first one's write
/// return.
#[derive(Clone, Copy)]
enum FollowUp {
    Close,
    Wake,
    Execute,
}

/// One connection's record: set by the loop when the write is applied (its
/// completion runs there), read by the loop when the follow-up is applied.
#[derive(Default)]
struct Probe {
    applied: AtomicBool,
}

/// Shared by every loop's handler.
#[derive(Default)]
struct Tally {
    /// Follow-ups applied.
    followed: AtomicUsize,
    /// Follow-ups applied before the write they came after.
    overtaken: AtomicUsize,
    /// Writes that failed (a close applied first makes them fail).
    failed_writes: AtomicUsize,
}

impl Tally {
    fn check(&self, probe: &Probe) {
        // Relaxed: `applied` is written and read on the same loop thread.
        if !probe.applied.load(Ordering::Relaxed) {
            self.overtaken.fetch_add(1, Ordering::SeqCst);
        }
        self.followed.fetch_add(1, Ordering::SeqCst);
    }
}

struct WriteThenFollow {
    follow: FollowUp,
    tally: Arc<Tally>,
}

/// The bytes connection `port` gets: distinct per connection.
fn greeting(port: u16) -> Vec<u8> {
    payload(u64::from(port), 2000)
}

impl EventHandler for WriteThenFollow {
    type State = Arc<Probe>;

    fn on_open(&mut self, conn: &mut Conn<'_, Arc<Probe>>) -> Action {
        let probe = Arc::new(Probe::default());
        conn.set_state(probe.clone());
        let peer_port = conn
            .peer_addr()
            .as_inet()
            .map(|a| a.port())
            .unwrap_or_default();
        let (engine, handle) = (conn.engine(), conn.handle());
        let written = Arc::new(AtomicBool::new(false));
        // Job A: the write, then the flag.
        let (a_handle, a_written, a_probe) = (handle.clone(), written.clone(), probe.clone());
        let a_tally = self.tally.clone();
        let first = move || {
            let _ = a_handle.async_write(greeting(peer_port), move |r| {
                if r.is_ok() {
                    // Relaxed: read on this same loop thread (`Tally::check`).
                    a_probe.applied.store(true, Ordering::Relaxed);
                } else {
                    a_tally.failed_writes.fetch_add(1, Ordering::SeqCst);
                }
            });
            // Release: "the write's call returned", for job B.
            a_written.store(true, Ordering::Release);
        };
        // Job B, on another worker when the pool has a free one: waits for
        // the flag, then sends its follow-up.
        let (follow, tally) = (self.follow, self.tally.clone());
        let b_engine = engine.clone();
        let loop_index = handle.id().loop_index();
        let second = move || {
            wait_for(&written);
            match follow {
                FollowUp::Close => drop(handle.close()),
                FollowUp::Wake => drop(handle.wake()),
                FollowUp::Execute => {
                    drop(b_engine.execute(loop_index, move |_| tally.check(&probe)))
                }
            }
        };
        // The pool takes jobs in order, so A starts before B: B's wait ends.
        if engine.submit(first).is_err() || engine.submit(second).is_err() {
            return Action::Close;
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Arc<Probe>>) -> Action {
        // Only wakes reach here: the clients never send.
        if let (FollowUp::Wake, Some(probe)) = (self.follow, conn.state()) {
            self.tally.check(probe);
        }
        Action::None
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Arc<Probe>>, reason: &CloseReason) -> Action {
        if let (FollowUp::Close, CloseReason::Requested, Some(probe)) =
            (self.follow, reason, conn.state())
        {
            self.tally.check(probe);
        }
        Action::None
    }
}

/// `CONNS` connections at once on two loops and four workers; each gets a
/// write from one worker and, causally after it, `follow` from another.
fn follow_up_comes_after_the_write(follow: FollowUp) {
    const CONNS: usize = 96;
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let server = Running::start(
        Engine::builder(move |_| WriteThenFollow {
            follow,
            tally: t.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2)
        .workers(4),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            let tally = tally.clone();
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                let port = s.local_addr().unwrap().port();
                let expected = greeting(port);
                if let FollowUp::Close = follow {
                    // The write, then the close: every byte, then EOF.
                    let got = read_to_end(&mut s);
                    assert!(got == expected, "{} bytes before EOF", got.len());
                } else {
                    let mut got = vec![0; expected.len()];
                    s.read_exact(&mut got).expect("the write's bytes");
                    assert!(got == expected, "the write's bytes differ");
                    // Stay connected until every follow-up is applied: a
                    // wake for a connection that closed meanwhile would be
                    // dropped, and never checked.
                    wait_until("every follow-up applied", || {
                        tally.followed.load(Ordering::SeqCst) == CONNS
                    });
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    wait_until("every follow-up applied", || {
        tally.followed.load(Ordering::SeqCst) == CONNS
    });
    server.stop();
    assert_eq!(
        tally.failed_writes.load(Ordering::SeqCst),
        0,
        "a close overtook its write"
    );
    assert_eq!(
        tally.overtaken.load(Ordering::SeqCst),
        0,
        "a follow-up was applied before the write it came after"
    );
}

#[test]
fn a_close_after_another_threads_write_is_applied_after_it() {
    follow_up_comes_after_the_write(FollowUp::Close);
}

#[test]
fn a_wake_after_another_threads_write_is_applied_after_it() {
    follow_up_comes_after_the_write(FollowUp::Wake);
}

#[test]
fn an_execute_after_another_threads_write_runs_after_it() {
    follow_up_comes_after_the_write(FollowUp::Execute);
}

// ----- Framed frames written by a chain of workers -----

/// A job for the test's own worker pool: write frame `turn` of a connection
/// once the previous turn's write has returned.
struct FrameJob {
    frames: FrameHandle,
    chain: Arc<AtomicU64>,
    turn: u64,
    frame: Vec<u8>,
}

/// Per connection: frames handed to workers so far (loop side), and the
/// chain the workers take turns through.
struct Chained {
    issued: u64,
    chain: Arc<AtomicU64>,
}

struct FrameRelay {
    jobs: crossbeam_channel::Sender<FrameJob>,
}

impl FrameHandler for FrameRelay {
    type State = Chained;

    fn on_open(&mut self, conn: &mut FrameConn<'_, Chained>) -> Action {
        conn.set_state(Chained {
            issued: 0,
            chain: Arc::new(AtomicU64::new(0)),
        });
        Action::None
    }

    fn on_frame(&mut self, conn: &mut FrameConn<'_, Chained>, frame: &[u8]) -> Action {
        let frames = conn.frame_handle();
        let Some(state) = conn.state_mut() else {
            return Action::Close;
        };
        let job = FrameJob {
            frames,
            chain: state.chain.clone(),
            turn: state.issued,
            frame: frame.to_vec(),
        };
        state.issued += 1;
        match self.jobs.send(job) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

/// A worker: sends each job's frame (encoded through the connection's
/// codec) when its turn comes.
fn frame_worker(jobs: crossbeam_channel::Receiver<FrameJob>) {
    for job in jobs {
        // Acquire: the previous turn's write returned before its Release.
        while job.chain.load(Ordering::Acquire) != job.turn {
            thread::yield_now();
        }
        job.frames
            .send_frame(&job.frame, |_| {})
            .expect("the codec takes the frame");
        // Release: hands "turn written" to whichever worker has the next.
        job.chain.store(job.turn + 1, Ordering::Release);
    }
}

#[test]
fn framed_frames_written_by_a_chain_of_workers_arrive_in_chain_order() {
    const CLIENTS: u64 = 8;
    const FRAMES: u64 = 200;
    let (jobs, queue) = crossbeam_channel::unbounded();
    // Jobs are taken in order, so the holder of turn `i` is always running
    // when the holder of `i + 1` waits for it.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            thread::spawn(move || frame_worker(queue))
        })
        .collect();
    drop(queue);
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                LengthFieldCodec::default(),
                FrameRelay { jobs: jobs.clone() },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let bodies: Vec<Vec<u8>> = (0..FRAMES)
                    .map(|i| {
                        let seed = c * 1_000_000 + i;
                        payload(seed, 1 + (seed * 7919 % 40_000) as usize)
                    })
                    .collect();
                let mut s = tcp_client(addr);
                let mut writer = s.try_clone().unwrap();
                let sent = bodies.clone();
                let writing = thread::spawn(move || {
                    for body in &sent {
                        let mut wire = Vec::new();
                        LengthFieldCodec::default().encode(body, &mut wire).unwrap();
                        writer.write_all(&wire).expect("write a frame");
                    }
                });
                for (i, body) in bodies.iter().enumerate() {
                    let mut header = [0u8; 4];
                    s.read_exact(&mut header).expect("a reply header");
                    let len = u32::from_be_bytes(header) as usize;
                    let mut got = vec![0; len];
                    s.read_exact(&mut got).expect("a reply body");
                    assert!(
                        &got == body,
                        "client {c}: reply {i} is not frame {i} ({len} bytes, expected {})",
                        body.len()
                    );
                }
                writing.join().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    server.stop();
    for w in workers {
        w.join().unwrap();
    }
}

// ----- examples/echo_pool as a black box -----

/// `examples/echo_pool`, run as a child process; killed if dropped.
struct EchoPool {
    child: Child,
    addr: SocketAddr,
}

impl EchoPool {
    fn start(args: &[&str]) -> EchoPool {
        let mut cmd = Command::new(example::example_binary("echo_pool"));
        cmd.arg("tcp://127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: runs in the forked child before exec and only makes the
        // prctl(2) system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // Should the test thread die first, the server dies with it.
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start examples/echo_pool");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("the listening line");
        // "echo_pool listening on tcp://127.0.0.1:PORT with N loops"
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tcp://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .expect("a socket address");
        // Keep reading, so that the final "stopped" line never blocks it.
        thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
        EchoPool { child, addr }
    }

    /// Ctrl-C, then the exit status must be success.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let status = self.child.wait().expect("wait for echo_pool");
        assert!(status.success(), "echo_pool exited with {status}");
    }
}

impl Drop for EchoPool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reproduction: `--delay-ms 0 --workers 4`, many clients, large
/// random payloads (up to 1 MiB), every echo byte-exact.
#[test]
fn echo_pool_example_with_four_workers_and_no_delay_is_byte_exact() {
    const CLIENTS: u64 = 12;
    let server = EchoPool::start(&["--loops", "2", "--delay-ms", "0", "--workers", "4"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                // Random sizes from a per-client seed: 4 messages, 1 B to 1 MiB.
                let payloads: Vec<Vec<u8>> = (0..4)
                    .map(|i| {
                        let seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(c * 4 + i + 1);
                        let len = 1 + (seed >> 40) as usize % (1 << 20);
                        payload(seed, len)
                    })
                    .collect();
                pipelined_echo(&mut s, payloads);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    server.stop();
}
