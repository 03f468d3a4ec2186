//! Framing codecs over real sockets: gnet's simulation scenario, every
//! codec with frames split at every byte boundary, the `Framed` callbacks,
//! and hostile peers (each closed with its reason, without buffering past
//! the maximum, while other connections carry on).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use ringloop::codec::{
    Codec, CodecError, ConfigError, DelimiterCodec, FixedLengthCodec, Frame, FrameCloseReason,
    FrameConn, FrameHandler, Framed, LengthFieldCodec, LineCodec,
};
use ringloop::{Action, Engine, EngineBuilder};

// ----- shared pieces -----

/// Wraps a codec and reports what it is shown: the bytes received so far
/// on the current connection, and the largest input ever passed to
/// `decode` (how much the server buffered for one connection).
#[derive(Clone)]
struct Spy<C> {
    inner: C,
    seen: Arc<AtomicUsize>,
    largest: Arc<AtomicUsize>,
    consumed: usize,
}

impl<C> Spy<C> {
    fn new(inner: C) -> Self {
        Spy {
            inner,
            seen: Arc::default(),
            largest: Arc::default(),
            consumed: 0,
        }
    }
}

impl<C: Codec> Codec for Spy<C> {
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        self.seen.store(self.consumed + src.len(), Ordering::SeqCst);
        self.largest.fetch_max(src.len(), Ordering::SeqCst);
        let result = self.inner.decode(src);
        if let Ok(Some(frame)) = &result {
            self.consumed += frame.consumed;
        }
        result
    }

    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        self.inner.encode(frame, dst)
    }

    fn max_frame_length(&self) -> usize {
        self.inner.max_frame_length()
    }
}

/// What the echo handlers saw, shared by every loop's handler.
#[derive(Default)]
struct Log {
    frames: Mutex<Vec<Vec<u8>>>,
    frame_count: AtomicUsize,
    closes: Mutex<Vec<String>>,
}

impl Log {
    fn closes(&self) -> Vec<String> {
        self.closes.lock().unwrap().clone()
    }
}

fn describe(reason: FrameCloseReason<'_>) -> String {
    match reason {
        FrameCloseReason::Codec(e) => format!("codec: {e:?}"),
        FrameCloseReason::Conn(r) => format!("conn: {r:?}"),
        _ => "other".into(),
    }
}

/// Echoes every frame through the codec; records frames (unless told not
/// to) and close reasons.
struct EchoFrames {
    log: Arc<Log>,
    keep_frames: bool,
}

impl FrameHandler for EchoFrames {
    type State = ();

    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        self.log.frame_count.fetch_add(1, Ordering::SeqCst);
        if self.keep_frames {
            self.log.frames.lock().unwrap().push(frame.to_vec());
        }
        match conn.write_frame(frame) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }

    fn on_close(&mut self, _conn: &mut FrameConn<'_, ()>, reason: FrameCloseReason<'_>) -> Action {
        self.log.closes.lock().unwrap().push(describe(reason));
        Action::None
    }
}

fn echo_server<C>(
    codec: C,
    log: &Arc<Log>,
    keep_frames: bool,
) -> EngineBuilder<Framed<C, EchoFrames>>
where
    C: Codec + Clone + Send + Sync + 'static,
{
    let log = log.clone();
    Engine::builder(move |_| {
        Framed::new(
            codec.clone(),
            EchoFrames {
                log: log.clone(),
                keep_frames,
            },
        )
    })
    .listen("tcp://127.0.0.1:0")
}

fn encode_all<C: Codec>(codec: &mut C, frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        codec.encode(f, &mut out).expect("test frames encode");
    }
    out
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read the echo");
    buf
}

// ----- gnet's TestSimServer -----

const MAGIC: [u8; 2] = 1314u16.to_be_bytes();

/// gnet's simulation protocol, as a user-defined codec built on the
/// length-field decoder: 2-byte magic number, 4-byte big-endian body
/// length, body.
#[derive(Clone)]
struct SimCodec {
    inner: LengthFieldCodec,
}

impl SimCodec {
    fn new(max: usize) -> Self {
        let inner = LengthFieldCodec::builder()
            .length_field_offset(2)
            .length_field_length(4)
            .max_frame_length(max)
            .build()
            .expect("valid");
        SimCodec { inner }
    }
}

impl Codec for SimCodec {
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        if src.len() >= 2 && src[..2] != MAGIC {
            return Err(CodecError::custom("bad magic number"));
        }
        self.inner.decode(src)
    }

    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        let len = u32::try_from(frame.len()).map_err(CodecError::custom)?;
        dst.extend_from_slice(&MAGIC);
        dst.extend_from_slice(&len.to_be_bytes());
        dst.extend_from_slice(frame);
        Ok(())
    }

    fn max_frame_length(&self) -> usize {
        self.inner.max_frame_length()
    }
}

const MIB: usize = 1 << 20;

/// Each client writes batches of 2 to 200 packets of 64 B to 1 MiB in one
/// write each, while reading the echo; the echo must be byte-exact.
fn sim_server(loops: usize, clients: u64, rounds: usize) {
    let log = Arc::new(Log::default());
    let server = Running::start(echo_server(SimCodec::new(MIB + 6), &log, false).loops(loops));
    let addr = server.tcp_addr(0);
    let workers: Vec<_> = (0..clients)
        .map(|c| thread::spawn(move || sim_client(addr, c, rounds)))
        .collect();
    let packets: usize = workers.into_iter().map(|w| w.join().expect("client")).sum();
    assert_eq!(log.frame_count.load(Ordering::SeqCst), packets);
    wait_until("clients gone", || server.engine.connection_count() == 0);
    assert!(
        log.closes().iter().all(|c| c == "conn: Eof"),
        "{:?}",
        log.closes()
    );
    server.stop();
}

fn sim_client(addr: SocketAddr, client: u64, rounds: usize) -> usize {
    let mut rng = Rng(0x9E37_79B9 ^ ((client + 1) * 0x1234_5678_9ABC));
    let mut codec = SimCodec::new(MIB + 6);
    let mut batches = Vec::new();
    let mut packets = 0;
    for round in 0..rounds {
        let sizes: Vec<usize> = if round == 0 {
            vec![MIB, 64] // the extremes, in the smallest batch
        } else {
            let k = 2 + rng.below(199);
            let most = (2 * MIB / k).clamp(64, MIB);
            (0..k).map(|_| 64 + rng.below(most - 64 + 1)).collect()
        };
        packets += sizes.len();
        let mut batch = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let body = payload((client << 32) | ((round as u64) << 16) | i as u64, *size);
            codec.encode(&body, &mut batch).unwrap();
        }
        batches.push(batch);
    }
    let expected: Vec<u8> = batches.concat();
    let mut s = tcp_client(addr);
    let mut writer = s.try_clone().unwrap();
    let w = thread::spawn(move || {
        for batch in &batches {
            writer.write_all(batch).expect("write a batch");
        }
    });
    let back = read_exactly(&mut s, expected.len());
    w.join().unwrap();
    assert!(back == expected, "client {client}: echo differs");
    packets
}

#[test]
fn sim_server_one_loop() {
    sim_server(1, 4, 5);
}

#[test]
fn sim_server_four_loops() {
    sim_server(4, 6, 5);
}

// ----- every codec, split at every byte boundary -----

/// For every cut of `wire`: a fresh connection gets `wire[..cut]`, the
/// server is seen to have read exactly that, then gets the rest. The
/// frames delivered and the echo must be the same for every cut.
fn split_over_socket<C>(codec: C, wire: &[u8], expected: &[&[u8]])
where
    C: Codec + Clone + Send + Sync + 'static,
{
    let spy = Spy::new(codec.clone());
    let seen = spy.seen.clone();
    let log = Arc::new(Log::default());
    let server = Running::start(echo_server(spy, &log, true).loops(1));
    let addr = server.tcp_addr(0);
    let echo = encode_all(&mut codec.clone(), expected);
    for cut in 0..=wire.len() {
        log.frames.lock().unwrap().clear();
        seen.store(0, Ordering::SeqCst);
        let mut s = tcp_client(addr);
        s.set_nodelay(true).unwrap();
        let (a, b) = wire.split_at(cut);
        s.write_all(a).unwrap();
        if cut > 0 {
            // The server has read `a` alone; `b` comes in a later read.
            wait_until("the first part read", || seen.load(Ordering::SeqCst) == cut);
        }
        s.write_all(b).unwrap();
        assert_eq!(read_exactly(&mut s, echo.len()), echo, "cut at {cut}");
        let frames = log.frames.lock().unwrap().clone();
        assert_eq!(frames, expected, "cut at {cut}");
        drop(s);
        // The next connection's reads must not mix with this one's.
        wait_until("closed", || server.engine.connection_count() == 0);
    }
    server.stop();
}

#[test]
fn line_codec_split_at_every_boundary_over_sockets() {
    split_over_socket(
        LineCodec::new(),
        b"hello\r\nworld\n\nx\ry\nunfinished",
        &[b"hello", b"world", b"", b"x\ry"],
    );
}

#[test]
fn delimiter_codec_split_at_every_boundary_over_sockets() {
    let codec = DelimiterCodec::builder("\r\n\r\n")
        .delimiter("||")
        .build()
        .unwrap();
    split_over_socket(
        codec,
        b"GET /\r\n\r\na||\r\n\r\n|b||\r\n\r",
        &[b"GET /", b"a", b"", b"|b"],
    );
}

#[test]
fn fixed_length_codec_split_at_every_boundary_over_sockets() {
    split_over_socket(
        FixedLengthCodec::new(5).unwrap(),
        b"abcdefghijklmnopq",
        &[b"abcde", b"fghij", b"klmno"],
    );
}

#[test]
fn length_field_codec_split_at_every_boundary_over_sockets() {
    for (field, includes) in [(1, false), (2, true), (3, false), (4, false), (8, true)] {
        let adjust = if includes { -(field as i64) } else { 0 };
        let codec = LengthFieldCodec::builder()
            .length_field_length(field)
            .length_adjustment(adjust)
            .length_includes_length_field(includes)
            .build()
            .unwrap();
        let frames: [&[u8]; 4] = [b"one", b"", b"three", b"x"];
        let mut wire = encode_all(&mut codec.clone(), &frames);
        wire.push(9); // the start of a frame that never completes
        split_over_socket(codec, &wire, &frames);
    }
}

#[test]
fn many_frames_in_one_write_over_sockets() {
    let frames: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("frame {i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let check = |wire: Vec<u8>, echo: Vec<u8>, server: Running, log: Arc<Log>| {
        let mut s = tcp_client(server.tcp_addr(0));
        s.write_all(&wire).unwrap();
        assert!(read_exactly(&mut s, echo.len()) == echo);
        assert_eq!(*log.frames.lock().unwrap(), frames);
        drop(s);
        server.stop();
    };
    let line = LineCodec::new();
    let wire = encode_all(&mut line.clone(), &refs);
    let log = Arc::new(Log::default());
    check(
        wire.clone(),
        wire,
        Running::start(echo_server(line, &log, true).loops(1)),
        log,
    );
    let lf = LengthFieldCodec::default();
    let wire = encode_all(&mut lf.clone(), &refs);
    let log = Arc::new(Log::default());
    check(
        wire.clone(),
        wire,
        Running::start(echo_server(lf, &log, true).loops(1)),
        log,
    );
}

// ----- Framed's callbacks -----

/// Greets on open, counts frames in its state, answers "count", closes on
/// "quit" (replying first), reports undelivered bytes at close.
struct Session {
    log: Arc<Log>,
}

impl FrameHandler for Session {
    type State = u32;

    fn on_open(&mut self, conn: &mut FrameConn<'_, u32>) -> Action {
        conn.set_state(0);
        let _ = conn.write_frame(b"welcome");
        Action::None
    }

    fn on_frame(&mut self, conn: &mut FrameConn<'_, u32>, frame: &[u8]) -> Action {
        let n = conn.state_mut().map(|n| {
            *n += 1;
            *n
        });
        self.log.frames.lock().unwrap().push(frame.to_vec());
        match frame {
            b"count" => {
                let _ = conn.write_frame(format!("{}", n.unwrap_or(0)).as_bytes());
            }
            b"quit" => {
                let _ = conn.write_frame(b"bye");
                conn.close();
            }
            b"stop" => return Action::Close,
            b"wake" => {
                let handle = conn.handle();
                thread::spawn(move || handle.wake().unwrap());
            }
            _ => {}
        }
        Action::None
    }

    fn on_wake(&mut self, conn: &mut FrameConn<'_, u32>) -> Action {
        let _ = conn.write_frame(b"woken");
        Action::None
    }

    fn on_close(&mut self, conn: &mut FrameConn<'_, u32>, reason: FrameCloseReason<'_>) -> Action {
        let frames = conn.take_state().unwrap_or(0);
        let left = conn.inbound_buffered();
        self.log.closes.lock().unwrap().push(format!(
            "{} after {frames} frames, {left} left",
            describe(reason)
        ));
        Action::None
    }
}

fn session_server(log: &Arc<Log>) -> Running {
    let log = log.clone();
    Running::start(
        Engine::builder(move |_| Framed::new(LineCodec::new(), Session { log: log.clone() }))
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    )
}

#[test]
fn greeting_state_and_replies_in_order() {
    let log = Arc::new(Log::default());
    let server = session_server(&log);
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"a\nb\ncount\n").unwrap();
    assert_eq!(read_exactly(&mut s, 10), b"welcome\n3\n");
    s.write_all(b"count\n").unwrap();
    assert_eq!(read_exactly(&mut s, 2), b"4\n");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty());
    wait_until("closed", || log.closes().len() == 1);
    assert_eq!(log.closes(), ["conn: Eof after 4 frames, 0 left"]);
    server.stop();
}

#[test]
fn closing_from_a_frame_stops_delivery_and_flushes_the_reply() {
    let log = Arc::new(Log::default());
    let server = session_server(&log);
    for (cmd, reply) in [
        (&b"quit\n"[..], &b"welcome\nbye\n"[..]),
        (b"stop\n", b"welcome\n"),
    ] {
        log.frames.lock().unwrap().clear();
        let mut s = tcp_client(server.tcp_addr(0));
        let mut wire = b"x\n".to_vec();
        wire.extend_from_slice(cmd);
        wire.extend_from_slice(b"never\ndelivered\n");
        s.write_all(&wire).unwrap();
        assert_eq!(read_to_end(&mut s), reply);
        assert_eq!(log.frames.lock().unwrap().len(), 2, "nothing after {cmd:?}");
    }
    wait_until("closed", || log.closes().len() == 2);
    let closes = log.closes();
    assert!(
        closes
            .iter()
            .all(|c| c.starts_with("conn: Local after 2 frames")),
        "{closes:?}"
    );
    server.stop();
}

#[test]
fn wake_reaches_on_wake() {
    let log = Arc::new(Log::default());
    let server = session_server(&log);
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"wake\n").unwrap();
    assert_eq!(read_exactly(&mut s, 14), b"welcome\nwoken\n");
    server.stop();
}

#[test]
fn a_peer_leaving_mid_frame_is_reported_with_the_bytes_lost() {
    let log = Arc::new(Log::default());
    let server = session_server(&log);
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"one\ntwo-without-end").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"welcome\n");
    wait_until("closed", || log.closes().len() == 1);
    assert_eq!(log.closes(), ["conn: Eof after 1 frames, 15 left"]);
    server.stop();
}

// ----- hostile peers -----

/// Runs `attack` on one connection while a bystander on the same loop has
/// half a frame pending; checks the attacker is closed with `reason`, the
/// server read at most `buffered_at_most` bytes for it at once, and the
/// bystander's frame still completes. `reason` is the start of the close
/// reason's description.
fn hostile<C>(codec: C, attack: impl FnOnce(&mut TcpStream), reason: &str, buffered_at_most: usize)
where
    C: Codec + Clone + Send + Sync + 'static,
{
    let spy = Spy::new(codec.clone());
    let largest = spy.largest.clone();
    let log = Arc::new(Log::default());
    let server = Running::start(echo_server(spy, &log, false).loops(1));
    let addr = server.tcp_addr(0);

    let mut bystander = tcp_client(addr);
    let frame = encode_all(&mut codec.clone(), &[b"still here"]);
    let (head, tail) = frame.split_at(frame.len() / 2);
    bystander.write_all(head).unwrap();
    wait_until("the bystander's half frame", || {
        largest.load(Ordering::SeqCst) > 0
    });
    largest.store(0, Ordering::SeqCst);

    let mut attacker = tcp_client(addr);
    attack(&mut attacker);
    let _ = read_to_end(&mut attacker); // EOF or reset: closed by the server
    wait_until("the attacker's close", || log.closes().len() == 1);
    let closes = log.closes();
    assert!(closes[0].starts_with(reason), "{closes:?}");
    let largest = largest.load(Ordering::SeqCst);
    assert!(
        largest <= buffered_at_most,
        "the server held {largest} bytes (bound {buffered_at_most})"
    );

    bystander.write_all(tail).unwrap();
    assert_eq!(read_exactly(&mut bystander, frame.len()), frame);
    wait_until("only the bystander left", || {
        server.engine.connection_count() == 1
    });
    drop(bystander);
    wait_until("the bystander's close", || log.closes().len() == 2);
    assert_eq!(log.closes()[1], "conn: Eof");
    server.stop();
}

/// Writes `pattern` over and over until the server stops taking bytes
/// (it closed), at most `limit` bytes.
fn flood(s: &mut TcpStream, pattern: &[u8], limit: usize) {
    let chunk = pattern.repeat(4096 / pattern.len());
    let mut sent = 0;
    while sent < limit {
        if s.write_all(&chunk).is_err() {
            return;
        }
        sent += chunk.len();
    }
}

const READ_BUFFER: usize = 64 * 1024; // the engine's default read size

#[test]
fn a_header_announcing_4_gib_is_refused_from_the_header_alone() {
    let codec = LengthFieldCodec::builder()
        .max_frame_length(MIB)
        .build()
        .unwrap();
    hostile(
        codec,
        |s| s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap(), // and no body at all
        "codec: FrameTooLong { length: 4294967299, max: 1048576 }",
        4,
    );
}

#[test]
fn an_8_byte_length_field_at_its_maximum_is_refused() {
    let codec = LengthFieldCodec::builder()
        .length_field_length(8)
        .build()
        .unwrap();
    hostile(
        codec,
        |s| s.write_all(&[0xff; 8]).unwrap(),
        "codec: FrameTooLong { length: 18446744073709551615, max: 8388608 }",
        8,
    );
}

#[test]
fn a_negative_adjusted_length_is_refused() {
    let codec = LengthFieldCodec::builder()
        .length_field_length(2)
        .length_adjustment(-2)
        .length_includes_length_field(true)
        .build()
        .unwrap();
    hostile(
        codec,
        |s| s.write_all(&[0x00, 0x01, b'x', b'y']).unwrap(),
        "codec: InvalidLength { value: 1, adjustment: -2, header: 2 }",
        4,
    );
}

#[test]
fn an_endless_line_is_refused_at_the_maximum() {
    let max = 32 * 1024;
    let codec = LineCodec::builder().max_frame_length(max).build().unwrap();
    hostile(
        codec,
        |s| flood(s, b"a", 64 * MIB),
        "codec: DelimiterNotFound { max: 32768 }",
        max + READ_BUFFER,
    );
}

#[test]
fn an_endless_delimited_frame_is_refused_at_the_maximum() {
    let codec = DelimiterCodec::builder("\r\n\r\n")
        .max_frame_length(1000)
        .build()
        .unwrap();
    hostile(
        codec,
        |s| flood(s, b"\r\n\r", 64 * MIB),
        "codec: DelimiterNotFound { max: 1000 }",
        1000 + READ_BUFFER,
    );
}

#[test]
fn a_bad_magic_number_from_a_user_codec_is_refused() {
    hostile(
        SimCodec::new(MIB),
        |s| s.write_all(b"GET / HTTP/1.1\r\n").unwrap(),
        "codec: Custom(\"bad magic number\")",
        16,
    );
}

/// A careless user codec: waits for a terminator it never bounds.
#[derive(Clone)]
struct Unbounded;

impl Codec for Unbounded {
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        Ok(src
            .iter()
            .position(|&b| b == b'!')
            .map(|i| Frame::borrowed(&src[..i], i + 1)))
    }

    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        dst.extend_from_slice(frame);
        dst.push(b'!');
        Ok(())
    }

    fn max_frame_length(&self) -> usize {
        100_000
    }
}

#[test]
fn framed_bounds_a_careless_user_codec() {
    hostile(
        Unbounded,
        |s| flood(s, b"z", 64 * MIB),
        "codec: BufferLimit { buffered: ",
        100_000 + READ_BUFFER,
    );
}

/// A broken user codec: on '?', claims a frame without consuming input.
#[derive(Clone)]
struct Stuck;

impl Codec for Stuck {
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        if src.first() == Some(&b'?') {
            return Ok(Some(Frame::borrowed(&src[..0], 0)));
        }
        Unbounded.decode(src)
    }

    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        Unbounded.encode(frame, dst)
    }
}

#[test]
fn framed_refuses_a_codec_that_consumes_nothing() {
    hostile(
        Stuck,
        |s| s.write_all(b"what!?").unwrap(),
        "codec: Misbehaved(\"a frame consumed no input\")",
        6,
    );
}

#[test]
fn config_errors_convert_into_the_crate_error() {
    let built = || -> ringloop::Result<LengthFieldCodec> {
        Ok(LengthFieldCodec::builder().length_field_length(5).build()?)
    };
    match built() {
        Err(ringloop::Error::InvalidConfig(msg)) => assert!(msg.contains("5 bytes"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        DelimiterCodec::new("").unwrap_err(),
        ConfigError::EmptyDelimiter
    );
}

#[test]
fn codec_types_can_cross_threads() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<LineCodec>();
    send_sync_clone::<DelimiterCodec>();
    send_sync_clone::<FixedLengthCodec>();
    send_sync_clone::<LengthFieldCodec>();
    send_sync_clone::<ConfigError>();
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<CodecError>();
}

// ----- the codec example as a hardened server -----

/// `examples/codec` as a child process with a small half-frame timeout.
fn codec_example() -> example::Example {
    example::Example::start(
        "codec",
        &[
            "tcp://127.0.0.1:0",
            "--loops",
            "1",
            "--half-frame-ms",
            "300",
        ],
    )
}

#[test]
fn the_codec_example_takes_frames_up_to_its_documented_limit() {
    let server = codec_example();
    // The limit is 8 MiB on the wire, header included: the largest payload
    // is 8 MiB - 4 bytes, echoed whole.
    let largest = payload(7, (8 << 20) - 4);
    let mut client = tcp_client(server.addr);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let frame = [&(largest.len() as u32).to_be_bytes()[..], &largest].concat();
        std::thread::spawn(move || client.write_all(&frame).unwrap())
    };
    let mut echoed = vec![0; 4 + largest.len()];
    client.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(&echoed[..4], &(largest.len() as u32).to_be_bytes());
    assert!(echoed[4..] == largest[..]);
    // One byte more is refused when its header arrives.
    let mut over = tcp_client(server.addr);
    over.write_all(&(((8 << 20) - 3) as u32).to_be_bytes())
        .unwrap();
    assert!(read_to_end(&mut over).is_empty());
    assert!(server.stop().success());
}

#[test]
fn the_codec_example_drops_a_half_sent_frame() {
    let server = codec_example();
    let mut client = tcp_client(server.addr);
    // A 100-byte frame of which 10 bytes come, then nothing: closed by the
    // half-frame timeout without an answer.
    client.write_all(&100u32.to_be_bytes()).unwrap();
    client.write_all(&[1; 10]).unwrap();
    let mut answer = Vec::new();
    assert!(
        client.read_to_end(&mut answer).is_ok(),
        "held past PATIENCE"
    );
    assert!(answer.is_empty());
    // A whole frame on a fresh connection is still served.
    let mut fine = tcp_client(server.addr);
    fine.write_all(&[0, 0, 0, 2, b'o', b'k']).unwrap();
    let mut back = [0; 6];
    fine.read_exact(&mut back).unwrap();
    assert_eq!(&back, &[0, 0, 0, 2, b'o', b'k']);
    assert!(server.stop().success());
}

#[test]
fn the_codec_example_returns_memory_after_a_burst_of_half_frames() {
    let server = example::Example::start(
        "codec",
        &[
            "tcp://127.0.0.1:0",
            "--loops",
            "1",
            "--half-frame-ms",
            "120000",
        ],
    );
    let before = server.rss();
    // 40 clients each send 4 MiB of an 8 MiB frame and stop: the server
    // holds ~160 MiB of partial frames (within its buffer budget).
    let clients: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut c = tcp_client(server.addr);
            c.write_all(&((8 << 20) - 4u32).to_be_bytes()).unwrap();
            c.write_all(&payload(i, 4 << 20)).unwrap();
            c
        })
        .collect();
    wait_until("the partial frames to be buffered", || {
        server.rss() > before + (120 << 20)
    });
    let peak = server.rss();
    drop(clients);
    // Once they are gone the memory goes back to the system, not just to
    // the allocator's free lists.
    wait_until("the memory to be returned", || {
        server.rss() < before + (32 << 20)
    });
    assert!(peak > before);
    assert!(server.stop().success());
}
