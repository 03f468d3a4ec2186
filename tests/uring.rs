//! The io_uring groundwork (issue 14) over real sockets on 127.0.0.1, without
//! the event loop: the probe and its simulated refusal, the provided buffer
//! ring (idle connections hold no buffer, exhaustion loses no data), an echo
//! server driven directly by multishot accept, multishot receive and batched
//! sends, close and drop with operations in flight, connect timeouts, the
//! doorbell, and the number of `io_uring_enter` calls per echoed message.
//!
//! `src/sys/uring` is crate-private (nothing in the loop uses it yet), so this
//! binary compiles the module itself. On a kernel or sandbox without io_uring
//! every test but the refusal tests prints why and returns.

#[path = "../src/sys/uring/mod.rs"]
mod uring;
// The ring gives finished send buffers to the loop's pool.
#[allow(dead_code)]
#[path = "../src/buffer_pool.rs"]
mod buffer_pool;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self as nixsock, AddressFamily, Backlog, SockFlag, SockType};

use uring::bufring::BufRingConfig;
use uring::probe::{self, Feature, Op, ProbeOptions};
use uring::ring::{Event, Ring, RingConfig, RingStats, SourceId};

/// The longest any test waits for the kernel or a peer.
const BOUND: Duration = Duration::from_secs(30);

/// Whether this kernel runs the completion driver; prints why not.
fn uring_available() -> bool {
    match probe::probe(&ProbeOptions::default()) {
        Ok(_) => true,
        Err(unsupported) => {
            eprintln!("skipped: {unsupported}");
            false
        }
    }
}

fn ring_with(count: u16, buf_size: u32) -> Ring {
    Ring::new(config_with(count, buf_size)).expect("ring")
}

/// The default ring configuration with `count` buffers of `buf_size`.
fn config_with(count: u16, buf_size: u32) -> RingConfig {
    RingConfig {
        buffers: BufRingConfig {
            count,
            buf_size,
            group: 0,
        },
        ..RingConfig::default()
    }
}

/// `len` bytes that differ per `seed` and per position.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// One turn: submit, wait up to `wait` for a completion, collect events.
fn turn(ring: &mut Ring, wait: Duration) -> Vec<Event> {
    ring.submit_and_wait(1, Some(wait))
        .expect("submit_and_wait");
    let mut events = Vec::new();
    ring.complete(&mut events);
    events
}

/// Turns until `on_event` says it is done, panicking past [`BOUND`]. Every
/// event of the last turn is handed over, also those after the one that
/// finished the wait (none is silently dropped).
fn turn_until(ring: &mut Ring, what: &str, mut on_event: impl FnMut(&mut Ring, Event) -> bool) {
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let mut done = false;
        for event in turn(ring, Duration::from_millis(50)) {
            done |= on_event(ring, event);
        }
        if done {
            return;
        }
    }
}

fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A loopback listener owned by `ring` with a multishot accept armed.
fn listening(ring: &mut Ring) -> SocketAddr {
    let (listener, addr) = loopback_listener();
    let lid = ring.adopt(OwnedFd::from(listener));
    ring.accept_multishot(lid).unwrap();
    addr
}

/// A connection whose server side `ring` owns, with a receive armed, and its
/// client.
fn receiving_connection(ring: &mut Ring) -> (SourceId, TcpStream) {
    let (listener, addr) = loopback_listener();
    let peer = client(addr);
    let (accepted, _) = listener.accept().unwrap();
    let id = ring.adopt(OwnedFd::from(accepted));
    ring.recv_multishot(id).unwrap();
    (id, peer)
}

// ---- probe ------------------------------------------------------------------

#[test]
fn probe_finds_every_feature_the_driver_needs_or_says_which_is_missing() {
    match probe::probe(&ProbeOptions::default()) {
        Ok(support) => eprintln!("io_uring available: {support:?}"),
        Err(unsupported) => {
            // A refusal must be a real, named one, never a simulated one.
            assert!(!unsupported.is_simulated());
            eprintln!("io_uring unavailable here: {unsupported}");
        }
    }
}

#[test]
fn simulated_refusal_names_the_missing_feature_and_falls_back() {
    let features = [
        Feature::Setup,
        Feature::ExtArg,
        Feature::NoDrop,
        Feature::CqeSkip,
        Feature::Opcode(None),
        Feature::Opcode(Some(Op::Recv)),
        Feature::Opcode(Some(Op::LinkTimeout)),
        Feature::BufRing,
        Feature::RecvMultishot,
        Feature::AcceptMultishot,
    ];
    let real = probe::probe(&ProbeOptions::default());
    for feature in features {
        let options = ProbeOptions {
            refuse: Some(feature),
        };
        match probe::probe(&options) {
            Ok(support) => panic!("refusing {feature} still probed fine: {support:?}"),
            Err(unsupported) => {
                // Setup is refused before the kernel is asked, so it is
                // simulated everywhere; later steps are reached only where the
                // earlier ones really work.
                if real.is_ok() || feature == Feature::Setup {
                    assert_eq!(unsupported.feature(), feature);
                    assert!(unsupported.is_simulated());
                    let text = unsupported.to_string();
                    assert!(
                        text.contains(&feature.to_string()) && text.contains(ProbeOptions::ENV),
                        "{text}"
                    );
                }
            }
        }
        assert_eq!(probe::probe_or_fall_back(&options), None);
    }
    // An optional opcode only turns its feature off.
    if real.is_ok() {
        let options = ProbeOptions {
            refuse: Some(Feature::Opcode(Some(Op::SendZc))),
        };
        let support = probe::probe(&options).expect("send_zc is optional");
        assert!(!support.send_zc);
    }
}

#[test]
fn refusal_names_parse_like_the_environment_variable_spells_them() {
    assert_eq!(Feature::parse("setup"), Some(Feature::Setup));
    assert_eq!(Feature::parse(" buf-ring "), Some(Feature::BufRing));
    assert_eq!(
        Feature::parse("recv-multishot"),
        Some(Feature::RecvMultishot)
    );
    assert_eq!(
        Feature::parse("accept-multishot"),
        Some(Feature::AcceptMultishot)
    );
    assert_eq!(
        Feature::parse("op:send_zc"),
        Some(Feature::Opcode(Some(Op::SendZc)))
    );
    assert_eq!(Feature::parse("op:nonsense"), None);
    assert_eq!(Feature::parse("epoll please"), None);
}

// ---- provided buffers ----------------------------------------------------------

#[test]
fn idle_connections_hold_no_buffer_and_a_dropped_view_returns_its_buffer() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(8, 1024);
    let addr = listening(&mut ring);
    let clients: Vec<TcpStream> = (0..20).map(|_| client(addr)).collect();
    let mut conns = Vec::new();
    turn_until(&mut ring, "20 accepts", |ring, event| {
        if let Event::Accepted { fd, .. } = event {
            let id = ring.adopt(fd);
            ring.recv_multishot(id).unwrap();
            conns.push(id);
        }
        conns.len() == 20
    });
    // Every receive is armed; nobody has sent anything.
    for _ in 0..3 {
        assert!(turn(&mut ring, Duration::from_millis(20)).is_empty());
    }
    assert_eq!(ring.buffers().lent(), 0, "idle connections hold no buffer");
    assert_eq!(ring.buffers().available(), 8);

    (&clients[7]).write_all(b"hello, ring").unwrap();
    let mut held = None;
    turn_until(&mut ring, "the bytes", |_, event| match event {
        Event::Received { buf, .. } => {
            held = Some(buf);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let mut buf = held.unwrap();
    assert_eq!(buf.as_slice(), b"hello, ring");
    assert_eq!(ring.buffers().lent(), 1, "the view holds its buffer");
    buf.advance(7);
    assert_eq!(buf.as_slice(), b"ring");
    drop(buf);
    assert_eq!(ring.buffers().lent(), 0, "dropping the view gives it back");
    assert_eq!(ring.stats().stale, 0);
}

#[test]
fn an_exhausted_buffer_ring_loses_no_data_and_reading_resumes() {
    if !uring_available() {
        return;
    }
    // 4 buffers of 1 KiB, 8 connections with 3,000 bytes each waiting.
    let mut ring = ring_with(4, 1024);
    exhaust_then_drain(&mut ring, 8, |_| true);
}

#[test]
fn a_lazy_buffer_ring_grows_with_demand_up_to_its_count_and_loses_no_data() {
    if !uring_available() {
        return;
    }
    // Room for 64 buffers of 1 KiB; 40 connections with 3,000 bytes each
    // need ~120: the ring starts with one block, grows while every buffer
    // is held, stops at 64 and runs dry; then every byte still arrives.
    let mut ring = ring_with(64, 1024);
    assert_eq!(ring.buffers().capacity(), 64);
    assert_eq!(
        ring.buffers().provided(),
        u32::from(uring::bufring::BLOCK),
        "only one block is provided before any receive needs more"
    );
    exhaust_then_drain(&mut ring, 40, |ring| {
        ring.buffers().provided() == 64 && ring.buffers().available() == 0
    });
    assert_eq!(ring.buffers().provided(), 64, "never beyond its count");
}

/// `conns` clients each send 3,000 bytes to `ring`'s listener; every
/// buffer the ring hands out is held until it runs dry (`ENOBUFS`) and
/// `dry` holds; then all are given back, and every byte must arrive once,
/// in order per connection.
fn exhaust_then_drain(ring: &mut Ring, conns: usize, dry: impl Fn(&Ring) -> bool) {
    let addr = listening(ring);
    let expected: Vec<Vec<u8>> = (0..conns)
        .map(|i| pattern(3000, (i as u8).wrapping_mul(17).wrapping_add(1)))
        .collect();
    let clients: Vec<TcpStream> = expected
        .iter()
        .map(|data| {
            let c = client(addr);
            (&c).write_all(data).unwrap();
            c
        })
        .collect();

    // Hold every buffer we are given: the ring must run dry and say so.
    let mut received: Vec<(SourceId, Vec<u8>)> = Vec::new();
    let mut held = Vec::new();
    let mut accepted = 0;
    turn_until(ring, "ENOBUFS", |ring, event| {
        match event {
            Event::Accepted { fd, .. } => {
                let id = ring.adopt(fd);
                ring.recv_multishot(id).unwrap();
                received.push((id, Vec::new()));
                accepted += 1;
            }
            Event::Received { source, buf } => held.push((source, buf)),
            other => panic!("unexpected {other:?}"),
        }
        ring.stats().starved > 0 && accepted == conns && dry(ring)
    });
    assert_eq!(ring.buffers().available(), 0);

    // Give them back: every starved receive resumes, every byte arrives once.
    fn add(received: &mut [(SourceId, Vec<u8>)], source: SourceId, bytes: &[u8]) {
        let entry = received.iter_mut().find(|(id, _)| *id == source).unwrap();
        entry.1.extend_from_slice(bytes);
    }
    for (source, buf) in held.drain(..) {
        add(&mut received, source, &buf);
    }
    let total: usize = expected.iter().map(Vec::len).sum();
    let mut got: usize = received.iter().map(|(_, v)| v.len()).sum();
    turn_until(ring, "every byte", |_, event| {
        match event {
            Event::Received { source, buf } => {
                got += buf.len();
                add(&mut received, source, &buf);
            }
            other => panic!("unexpected {other:?}"),
        }
        got == total
    });
    let mut got: Vec<Vec<u8>> = received.into_iter().map(|(_, v)| v).collect();
    let mut want = expected;
    got.sort();
    want.sort();
    assert!(got == want, "bytes lost, duplicated or reordered");
    let stats = ring.stats();
    assert!(stats.rearmed > 0, "{stats:?}");
    assert_eq!(ring.buffers().lent(), 0);
    drop(clients);
}

/// Whether the page holding `at` is resident (`mincore`).
fn resident(at: *const u8) -> bool {
    let page = 4096usize;
    let start = (at as usize) / page * page;
    let mut vec = [0u8; 1];
    // SAFETY: `start` is page-aligned and inside a live mapping (a buffer
    // of the ring under test); mincore only writes the one byte of `vec`.
    let r = unsafe { nix::libc::mincore(start as *mut _, page, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
    vec[0] & 1 != 0
}

#[test]
fn a_quiet_ring_gives_back_the_pages_of_returned_buffers_but_not_of_lent_ones() {
    if !uring_available() {
        return;
    }
    // One page per buffer, so each buffer's page is its own.
    let mut ring = Ring::new(RingConfig {
        release_idle_after: Some(Duration::from_millis(20)),
        ..config_with(16, 4096)
    })
    .expect("ring");
    let (_, peer) = receiving_connection(&mut ring);
    // A burst of six messages, each in a buffer of its own; the first is
    // kept (a connection holding unread bytes), the others come back.
    let mut held = None;
    let mut pages = Vec::new();
    for i in 0..6u8 {
        (&peer).write_all(&pattern(100, i)).unwrap();
        let mut got = None;
        turn_until(&mut ring, "a message", |_, event| match event {
            Event::Received { buf, .. } => {
                got = Some(buf);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let buf = got.unwrap();
        assert_eq!(buf.as_slice(), pattern(100, i));
        if i == 0 {
            held = Some(buf);
        } else {
            pages.push(buf.as_ptr());
        }
    }
    let held = held.unwrap();
    assert!(pages.iter().all(|&p| resident(p)), "the kernel wrote them");
    assert_eq!(ring.buffers().resident(), 6, "one lent, five returned");
    assert_eq!(ring.stats().released, 0, "nothing released while busy");

    // Quiet: a wait with no receive lets the ring release what came back.
    let deadline = Instant::now() + BOUND;
    while ring.stats().released == 0 {
        assert!(Instant::now() < deadline, "never released");
        assert!(turn(&mut ring, Duration::from_secs(1)).is_empty());
    }
    assert_eq!(ring.stats().released, 5, "{:?}", ring.stats());
    assert_eq!(ring.buffers().resident(), 1, "only the lent buffer");
    assert!(
        pages.iter().all(|&p| !resident(p)),
        "returned buffers' pages were given back"
    );
    assert_eq!(
        held.as_slice(),
        pattern(100, 0),
        "a lent buffer is untouched"
    );
    assert!(!ring.buffers().has_returned());

    // Released buffers still work: the next messages arrive whole.
    drop(held);
    for i in 6..40u8 {
        (&peer).write_all(&pattern(100, i)).unwrap();
        let mut got = Vec::new();
        turn_until(&mut ring, "a message", |_, event| match event {
            Event::Received { buf, .. } => {
                got.extend_from_slice(&buf);
                got.len() == 100
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, pattern(100, i));
    }
    assert_eq!(ring.buffers().lent(), 0);
    assert_eq!(ring.stats().stale, 0);
}

#[test]
fn a_paused_receive_leaves_bytes_in_the_socket_until_it_is_armed_again() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(8, 1024);
    let (id, peer) = receiving_connection(&mut ring);
    assert!(turn(&mut ring, Duration::from_millis(20)).is_empty());
    ring.pause_recv(id).unwrap();
    let deadline = Instant::now() + BOUND;
    while ring.in_flight() > 0 {
        assert!(Instant::now() < deadline, "the pause never completed");
        let events = turn(&mut ring, Duration::from_millis(20));
        assert!(events.is_empty(), "unexpected {events:?}");
    }
    (&peer).write_all(b"later").unwrap();
    for _ in 0..5 {
        let events = turn(&mut ring, Duration::from_millis(20));
        assert!(events.is_empty(), "a paused receive delivered {events:?}");
    }
    let expect = |ring: &mut Ring, want: &'static [u8]| {
        turn_until(ring, "the bytes", |_, event| match event {
            Event::Received { buf, .. } => {
                assert_eq!(buf.as_slice(), want);
                true
            }
            other => panic!("unexpected {other:?}"),
        })
    };
    ring.recv_multishot(id).unwrap();
    expect(&mut ring, b"later");

    // Paused and taken back before the cancellation completed: still reading.
    ring.pause_recv(id).unwrap();
    ring.recv_multishot(id).unwrap();
    (&peer).write_all(b"again").unwrap();
    expect(&mut ring, b"again");
    // Once the cancellation's completions are in: one receive armed, nothing else.
    let deadline = Instant::now() + BOUND;
    while ring.in_flight() != 1 {
        assert!(Instant::now() < deadline, "in flight: {}", ring.in_flight());
        let events = turn(&mut ring, Duration::from_millis(20));
        assert!(events.is_empty(), "unexpected {events:?}");
    }
}

// ---- the echo server ---------------------------------------------------------------

/// What the echo server saw, reported when it stops.
#[derive(Debug)]
struct EchoReport {
    stats: RingStats,
    bytes: u64,
    accepted: usize,
    released: usize,
    max_lent: u32,
}

/// An echo server on its own thread, driven only by the ring's primitives:
/// multishot accept, multishot receive, received buffers sent straight back
/// (no copy), all sends of a turn submitted by the turn's one
/// `io_uring_enter`, and the doorbell to stop it.
struct EchoServer {
    addr: SocketAddr,
    bell: EventFd,
    thread: JoinHandle<EchoReport>,
}

impl EchoServer {
    fn start(config: RingConfig) -> EchoServer {
        let (listener, addr) = loopback_listener();
        // Non-blocking, like the mailbox's doorbell.
        let bell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap();
        let bell_dup = bell.as_fd().try_clone_to_owned().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread =
            thread::spawn(move || serve_echo(config, OwnedFd::from(listener), bell_dup, ready_tx));
        ready_rx.recv_timeout(BOUND).expect("echo server ready");
        EchoServer { addr, bell, thread }
    }

    fn stop(self) -> EchoReport {
        self.bell.write(1).unwrap();
        self.thread.join().expect("echo server panicked")
    }
}

fn serve_echo(
    config: RingConfig,
    listener: OwnedFd,
    bell: OwnedFd,
    ready: mpsc::Sender<()>,
) -> EchoReport {
    let mut ring = Ring::new(config).unwrap();
    let lid = ring.adopt(listener);
    ring.accept_multishot(lid).unwrap();
    ring.watch_doorbell(bell).unwrap();
    ready.send(()).unwrap();
    let mut report = EchoReport {
        stats: RingStats::default(),
        bytes: 0,
        accepted: 0,
        released: 0,
        max_lent: 0,
    };
    // Connections whose peer has finished sending: close once flushed.
    let mut finishing: HashSet<SourceId> = HashSet::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    'serve: loop {
        assert!(Instant::now() < deadline, "echo server ran past its bound");
        ring.submit_and_wait(1, Some(Duration::from_millis(100)))
            .unwrap();
        ring.complete(&mut events);
        report.max_lent = report.max_lent.max(ring.buffers().lent());
        for event in events.drain(..) {
            match event {
                Event::Accepted { fd, .. } => {
                    let id = ring.adopt(fd);
                    ring.recv_multishot(id).unwrap();
                    report.accepted += 1;
                }
                Event::AcceptEnded { listener, error } => {
                    eprintln!("echo server: accept ended ({error:?}), re-arming");
                    ring.accept_multishot(listener).unwrap();
                }
                Event::Received { source, buf } => {
                    report.bytes += buf.len() as u64;
                    ring.send(source, buf).unwrap();
                }
                Event::Sent { source, queued, .. } => {
                    if queued == 0 && finishing.remove(&source) {
                        ring.close(source).unwrap();
                    }
                }
                Event::Eof { source } => {
                    if ring.pending_send(source) == 0 {
                        ring.close(source).unwrap();
                    } else {
                        finishing.insert(source);
                    }
                }
                Event::RecvFailed { source, error } | Event::SendFailed { source, error } => {
                    panic!("echo server: {source:?} failed: {error}");
                }
                Event::Released { .. } => report.released += 1,
                Event::Doorbell => break 'serve,
                other => panic!("echo server: unexpected {other:?}"),
            }
        }
    }
    report.stats = ring.stats();
    report
}

/// Sends `data` in `chunk`-sized writes from one thread while reading the
/// echo on another; the server closes after echoing everything.
fn echo_exact(addr: SocketAddr, data: Vec<u8>, chunk: usize) {
    let stream = client(addr);
    let writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let write = thread::spawn(move || {
        for piece in sent.chunks(chunk) {
            (&writer).write_all(piece).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(data.len());
    (&stream).read_to_end(&mut echoed).unwrap();
    write.join().unwrap();
    assert_eq!(echoed.len(), data.len(), "echo length");
    assert!(echoed == data, "echo differs from what was sent");
}

#[test]
fn echo_over_multishot_accept_and_receive_is_byte_exact_for_many_clients() {
    if !uring_available() {
        return;
    }
    let server = EchoServer::start(RingConfig::default());
    let sizes = [1usize, 511, 4096, 65_537, 300_000, 1 << 20];
    let clients: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let addr = server.addr;
            thread::spawn(move || echo_exact(addr, pattern(size, i as u8), 1000 + 997 * i))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let report = server.stop();
    eprintln!("{report:?}");
    assert_eq!(report.accepted, sizes.len());
    assert_eq!(report.released, sizes.len());
    assert_eq!(report.bytes, sizes.iter().sum::<usize>() as u64);
    assert_eq!(report.stats.stale, 0);
}

#[test]
fn echo_through_a_tiny_buffer_ring_stays_byte_exact() {
    if !uring_available() {
        return;
    }
    // 4 buffers for 16 busy connections: receives starve and resume all along.
    let server = EchoServer::start(RingConfig {
        buffers: BufRingConfig {
            count: 4,
            buf_size: 1024,
            group: 0,
        },
        ..RingConfig::default()
    });
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || echo_exact(addr, pattern(64 * 1024, i as u8), 4096))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let report = server.stop();
    eprintln!("{report:?}");
    assert_eq!(report.bytes, 16 * 64 * 1024);
    assert_eq!(report.released, 16);
}

/// Messages of `size` bytes, `depth` written at once per round, `rounds`
/// rounds, on `conns` connections; returns the server's report and the number
/// of messages echoed.
fn pipelined_load(conns: usize, size: usize, depth: usize, rounds: usize) -> (EchoReport, u64) {
    let server = EchoServer::start(RingConfig {
        buffers: BufRingConfig {
            count: 1024,
            buf_size: 16 * 1024,
            group: 0,
        },
        ..RingConfig::default()
    });
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let stream = client(addr);
                let batch = pattern(size * depth, i as u8);
                let mut back = vec![0; batch.len()];
                for _ in 0..rounds {
                    (&stream).write_all(&batch).unwrap();
                    (&stream).read_exact(&mut back).unwrap();
                    assert!(back == batch, "echo differs");
                }
                stream.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                (&stream).read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let report = server.stop();
    (report, (conns * depth * rounds) as u64)
}

#[test]
fn a_pipelined_echo_costs_at_most_a_fifth_of_an_enter_per_message() {
    if !uring_available() {
        return;
    }
    // 50 connections, 64 messages of 512 B in flight each, 20 rounds.
    let (report, messages) = pipelined_load(50, 512, 64, 20);
    let per_message = report.stats.enters as f64 / messages as f64;
    eprintln!(
        "pipelined 50 x 64 x 512 B: {} io_uring_enter for {messages} messages = {per_message:.4} \
         per message ({} completions, {} entries submitted)",
        report.stats.enters, report.stats.completions, report.stats.submitted
    );
    assert!(per_message <= 0.2, "{per_message} enters per message");

    // For the record, not asserted (it depends on timing): one message in
    // flight per connection, the benchmark's 50 x 512 B shape.
    let (report, messages) = pipelined_load(50, 512, 1, 200);
    eprintln!(
        "closed loop 50 x 1 x 512 B: {} io_uring_enter for {messages} messages = {:.4} per message",
        report.stats.enters,
        report.stats.enters as f64 / messages as f64
    );
}

// ---- close, drop, connect, doorbell ------------------------------------------------

/// A server-side connection adopted by `ring` whose client never reads,
/// with a receive armed and 32 MiB being sent: both stay in flight.
fn busy_connection(ring: &mut Ring) -> (SourceId, TcpStream) {
    let (id, peer) = receiving_connection(ring);
    ring.send(id, vec![7u8; 32 << 20]).unwrap();
    for _ in 0..5 {
        for event in turn(ring, Duration::from_millis(20)) {
            assert!(matches!(event, Event::Sent { .. }), "unexpected {event:?}");
        }
    }
    assert!(
        ring.pending_send(id) > 0,
        "32 MiB cannot fit in socket buffers"
    );
    (id, peer)
}

/// Reads until the peer is gone (end of stream or reset).
fn read_until_closed(mut peer: TcpStream) {
    let mut sink = vec![0; 1 << 20];
    loop {
        match peer.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("peer read: {e}"),
        }
    }
}

#[test]
fn close_with_a_receive_and_a_send_in_flight_waits_for_both_then_frees_the_slot() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(16, 4096);
    let (id, peer) = busy_connection(&mut ring);
    let before = ring.in_flight();
    assert!(before >= 2, "receive and send in flight ({before})");
    ring.close(id).unwrap();
    assert!(ring.fd(id).is_none(), "a closing source is not usable");
    assert_eq!(
        ring.send(id, vec![1]).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    released_and_closed(&mut ring, id, peer);

    // The slot comes back with a new generation: the old id stays dead.
    let reused = ring.adopt(unix_socket());
    assert_eq!(reused.index(), id.index());
    assert_ne!(reused, id);
    assert_eq!(
        ring.recv_multishot(id).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(ring.stats().stale, 0);
}

/// An attached connection (the caller owns the descriptor, as the event
/// loop does) closed while its receive is armed: only entries naming the
/// descriptor must be submitted before the caller closes it; the
/// cancellation names the operation, so the descriptor is closed first and
/// the next turn's enter cancels the receive, frees the slot and lets the
/// peer see the end of stream.
#[test]
fn an_attached_source_closes_without_a_submit_of_its_own_unless_its_descriptor_is_queued() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(16, 4096);
    let (listener, addr) = loopback_listener();
    let mut peer = client(addr);
    let (accepted, _) = listener.accept().unwrap();
    let id = ring.attach(accepted.as_fd());
    assert!(!ring.queued_for(id), "nothing queued yet");
    ring.recv_multishot(id).unwrap();
    assert!(ring.queued_for(id), "the receive names the descriptor");
    ring.submit_and_wait(0, None).unwrap();
    assert!(!ring.queued_for(id), "submitted");
    ring.send(id, b"ping".to_vec()).unwrap();
    assert!(ring.queued_for(id), "so does a send");
    turn_until(
        &mut ring,
        "the send",
        |_, event| matches!(event, Event::Sent { source, .. } if source == id),
    );
    assert!(!ring.queued_for(id));
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    let enters = ring.stats().enters;
    ring.close(id).unwrap();
    assert!(
        !ring.queued_for(id),
        "the cancellation names the operation, not the descriptor"
    );
    assert_eq!(ring.stats().enters, enters, "closing made no system call");
    drop(accepted); // closed before the cancellation is submitted
    released_and_closed(&mut ring, id, peer);
    assert_eq!(ring.stats().stale, 0);
}

/// Turns until closed source `id` is released (no other event may come for
/// it: its cancelled operations are the ring's business), then checks that
/// nothing is in flight or lent and that `peer` sees the connection end.
fn released_and_closed(ring: &mut Ring, id: SourceId, peer: TcpStream) {
    turn_until(ring, "the release", |_, event| match event {
        Event::Released { source } => {
            assert_eq!(source, id);
            true
        }
        other => panic!("event for a closed source: {other:?}"),
    });
    assert_eq!(ring.in_flight(), 0);
    assert_eq!(ring.buffers().lent(), 0);
    read_until_closed(peer);
}

/// One end of a connected Unix stream pair (the other end is dropped).
fn unix_socket() -> OwnedFd {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    OwnedFd::from(a)
}

/// A listener whose accept queue is full: further SYNs are dropped, so a
/// connect to it neither succeeds nor fails until it times out.
fn blackhole() -> (OwnedFd, SocketAddr, Vec<TcpStream>) {
    let fd = nixsock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let any = nixsock::SockaddrIn::new(127, 0, 0, 1, 0);
    nixsock::bind(fd.as_raw_fd(), &any).unwrap();
    nixsock::listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let local: nixsock::SockaddrIn = nixsock::getsockname(fd.as_raw_fd()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], local.port()));
    // Fill the queue; connects past its length hang, so each is bounded.
    let fillers = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    (fd, addr, fillers)
}

fn tcp_socket() -> OwnedFd {
    nixsock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

fn connect_outcome(ring: &mut Ring, id: SourceId) -> io::Result<()> {
    let mut outcome = None;
    turn_until(ring, "the connect", |_, event| match event {
        Event::Connected { source, result } => {
            assert_eq!(source, id);
            outcome = Some(result);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    outcome.unwrap()
}

#[test]
fn connect_succeeds_is_refused_or_times_out() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(4, 1024);

    let (listener, addr) = loopback_listener();
    let id = ring.adopt(tcp_socket());
    ring.connect(id, addr, Some(Duration::from_secs(10)))
        .unwrap();
    connect_outcome(&mut ring, id).expect("connect to a listener");
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.port(), {
        let local: nixsock::SockaddrIn =
            nixsock::getsockname(ring.fd(id).unwrap().as_raw_fd()).unwrap();
        local.port()
    });
    drop(listener);

    let closed = addr; // nothing listens there any more
    let id = ring.adopt(tcp_socket());
    ring.connect(id, closed, None).unwrap();
    let refused = connect_outcome(&mut ring, id).unwrap_err();
    assert_eq!(
        refused.kind(),
        io::ErrorKind::ConnectionRefused,
        "{refused}"
    );

    let (_hole, hole_addr, _fillers) = blackhole();
    let id = ring.adopt(tcp_socket());
    ring.connect(id, hole_addr, Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(
        ring.connect(id, hole_addr, None).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    let timed_out = connect_outcome(&mut ring, id).unwrap_err();
    assert_eq!(timed_out.kind(), io::ErrorKind::TimedOut, "{timed_out}");
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn the_doorbell_wakes_a_waiting_ring_every_time_it_rings() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(4, 1024);
    let bell =
        Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap());
    ring.watch_doorbell(bell.as_fd().try_clone_to_owned().unwrap())
        .unwrap();
    for round in 0..3 {
        let ringer = Arc::clone(&bell);
        let ring_later = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            ringer.write(1).unwrap();
        });
        let mut rang = 0;
        turn_until(&mut ring, "the doorbell", |_, event| match event {
            Event::Doorbell => {
                rang += 1;
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        ring_later.join().unwrap();
        assert_eq!(rang, 1, "round {round}: one ring, one wake-up");
    }
    assert!(ring.in_flight() >= 1, "the doorbell read is re-armed");
}

// ---- batched waits ----------------------------------------------------------

/// Whether `ring` bounds batched waits with the kernel's min-wait; says so
/// when it does not.
fn batches(ring: &Ring) -> bool {
    let yes = ring.batches_waits();
    if !yes {
        eprintln!("this kernel has no io_uring min-wait (6.12): skipping");
    }
    yes
}

/// One batched wait on `ring`: how long it took and the events it brought.
fn timed_batch_wait(
    ring: &mut Ring,
    batch: usize,
    min_wait: Duration,
    timeout: Option<Duration>,
) -> (Duration, Vec<Event>) {
    let start = Instant::now();
    ring.submit_and_wait_batch(batch, min_wait, timeout)
        .unwrap();
    let waited = start.elapsed();
    let mut events = Vec::new();
    ring.complete(&mut events);
    (waited, events)
}

fn received_bytes(events: &[Event], id: SourceId) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        if let Event::Received { source, buf } = event {
            if *source == id {
                bytes.extend_from_slice(buf.as_slice());
            }
        }
    }
    bytes
}

#[test]
fn a_batched_wait_returns_what_came_once_its_min_wait_passed() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(16, 4096);
    if !batches(&ring) {
        return;
    }
    let (id, mut peer) = receiving_connection(&mut ring);
    peer.write_all(b"alone").unwrap();
    // 16 completions never come: the 1 ms min-wait ends the wait, long
    // before the overall timeout.
    let (waited, events) = timed_batch_wait(&mut ring, 16, Duration::from_millis(1), Some(BOUND));
    assert!(waited < BOUND / 2, "a lone completion waited {waited:?}");
    assert_eq!(received_bytes(&events, id), b"alone");
}

#[test]
fn an_idle_batched_wait_sleeps_until_its_timeout_or_an_event() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(4, 1024);
    if !batches(&ring) {
        return;
    }
    let (waited, _) = timed_batch_wait(
        &mut ring,
        8,
        Duration::from_micros(50),
        Some(Duration::from_millis(200)),
    );
    assert!(
        waited >= Duration::from_millis(150),
        "nothing came, yet the wait ended after {waited:?}"
    );
    // No timeout at all: it sleeps until the doorbell rings (the kernel
    // alone would end a min-wait without an overall timeout at the
    // min-wait, waking an idle loop every 50 µs).
    let bell =
        Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap());
    ring.watch_doorbell(bell.as_fd().try_clone_to_owned().unwrap())
        .unwrap();
    let ringer = Arc::clone(&bell);
    let ring_later = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        ringer.write(1).unwrap();
    });
    let before = ring.stats().enters;
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, Event::Doorbell)) {
        ring.submit_and_wait_batch(8, Duration::from_micros(50), None)
            .unwrap();
        ring.complete(&mut events);
        let enters = ring.stats().enters - before;
        assert!(enters < 100, "an idle batched wait woke {enters} times");
    }
    ring_later.join().unwrap();
}

#[test]
fn without_the_kernels_min_wait_a_batched_wait_is_a_plain_wait() {
    if !uring_available() {
        return;
    }
    // A kernel without IORING_FEAT_MIN_TIMEOUT, simulated.
    let mut ring = Ring::new(RingConfig {
        min_wait: false,
        ..config_with(16, 4096)
    })
    .expect("ring");
    assert!(!ring.batches_waits());
    let (id, mut peer) = receiving_connection(&mut ring);
    peer.write_all(b"one").unwrap();
    // Two wanted, one comes: only the timeout ends it (callers that know
    // there is no min-wait wait for fewer).
    let (waited, events) = timed_batch_wait(
        &mut ring,
        2,
        Duration::from_micros(50),
        Some(Duration::from_millis(200)),
    );
    assert!(
        waited >= Duration::from_millis(150),
        "the min-wait applied anyway: {waited:?}"
    );
    assert_eq!(received_bytes(&events, id), b"one");
}

#[test]
fn dropping_the_ring_with_operations_in_flight_cancels_waits_and_closes_everything() {
    if !uring_available() {
        return;
    }
    let mut ring = ring_with(16, 4096);
    let listen_addr = listening(&mut ring);
    let (_conn, peer) = busy_connection(&mut ring);
    let bell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap();
    ring.watch_doorbell(bell.as_fd().try_clone_to_owned().unwrap())
        .unwrap();
    let (_hole, hole_addr, _fillers) = blackhole();
    let dialing = ring.adopt(tcp_socket());
    ring.connect(dialing, hole_addr, Some(Duration::from_secs(60)))
        .unwrap();
    ring.submit_and_wait(0, None).unwrap();
    let in_flight = ring.in_flight();
    assert!(
        in_flight >= 5,
        "accept, receive, send, doorbell, connect + timeout ({in_flight})"
    );

    let started = Instant::now();
    drop(ring);
    eprintln!(
        "dropped a ring with {in_flight} operations in flight in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < BOUND);
    // The descriptors were closed, not leaked: the peer sees the end, the
    // listener refuses.
    read_until_closed(peer);
    let refused = TcpStream::connect(listen_addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

// ---- registered files ----------------------------------------------------------

/// One echo of `seed`'s pattern over `id`, read back by `peer`.
fn echo_once(ring: &mut Ring, id: SourceId, peer: &mut TcpStream, seed: u8) {
    let data = pattern(512, seed);
    peer.write_all(&data).unwrap();
    let mut got = Vec::new();
    let mut sent = 0;
    turn_until(ring, "the echo", |ring, event| {
        match event {
            Event::Received { source, buf } if source == id => {
                got.extend_from_slice(&buf);
                ring.send(id, buf.to_vec()).unwrap();
            }
            Event::Sent { source, bytes, .. } if source == id => sent += bytes,
            other => panic!("unexpected {other:?}"),
        }
        sent == data.len()
    });
    let mut back = vec![0; data.len()];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(got, data);
    assert_eq!(back, data);
}

/// Connections opened and closed many times on a ring with a small
/// registered file table, attached (the caller closes the descriptor) and
/// adopted (the ring does) in turn: each names its table entry, the entry
/// (with its slot) is reused once the removal completed, and no socket
/// outlives its close (the peer sees every connection end, which it would
/// not while a table entry still held the socket).
#[test]
fn connections_opened_and_closed_many_times_reuse_their_fixed_files_and_leak_nothing() {
    if !uring_available() {
        return;
    }
    let mut ring = Ring::new(RingConfig {
        fixed_files: 2,
        ..config_with(16, 4096)
    })
    .expect("ring");
    assert_eq!(ring.fixed_files(), 2, "a small sparse table is not refused");
    let (listener, addr) = loopback_listener();
    for round in 0..300u32 {
        let mut peer = client(addr);
        let (accepted, _) = listener.accept().unwrap();
        // Attached, as the event loop does (it owns and closes the
        // socket), or adopted (the ring closes it at the release).
        let (id, kept) = if round % 2 == 0 {
            (ring.attach(accepted.as_fd()), Some(accepted))
        } else {
            (ring.adopt(OwnedFd::from(accepted)), None)
        };
        assert!(ring.is_fixed(id), "round {round}: slot {}", id.index());
        assert!(id.index() < 2, "slots are reused, not grown");
        ring.recv_multishot(id).unwrap();
        echo_once(&mut ring, id, &mut peer, round as u8);
        ring.close(id).unwrap();
        drop(kept);
        released_and_closed(&mut ring, id, peer);
    }
    assert_eq!(ring.stats().stale, 0);

    // Past the table's end a source names its descriptor.
    let (a, mut peer_a) = receiving_connection(&mut ring);
    let (b, mut peer_b) = receiving_connection(&mut ring);
    let (c, mut peer_c) = receiving_connection(&mut ring);
    assert!(ring.is_fixed(a) && ring.is_fixed(b));
    assert!(!ring.is_fixed(c), "slot {} lies past the table", c.index());
    for (id, peer) in [(a, &mut peer_a), (b, &mut peer_b), (c, &mut peer_c)] {
        echo_once(&mut ring, id, peer, 9);
    }
}

/// A table the kernel refuses (larger than it allows) leaves the ring on
/// plain descriptors: it still echoes, closes and releases.
#[test]
fn a_refused_file_table_falls_back_to_plain_descriptors() {
    if !uring_available() {
        return;
    }
    let mut ring = Ring::new(RingConfig {
        fixed_files: u32::MAX,
        ..config_with(16, 4096)
    })
    .expect("a refused table is no error");
    assert_eq!(ring.fixed_files(), 0);
    let (id, mut peer) = receiving_connection(&mut ring);
    assert!(!ring.is_fixed(id));
    echo_once(&mut ring, id, &mut peer, 3);
    ring.close(id).unwrap();
    released_and_closed(&mut ring, id, peer);
    assert_eq!(ring.stats().stale, 0);
}
