//! Codec benchmarks: decode throughput of each built-in codec against a
//! hand-written or `std` peer measured in the same run, and the cost of
//! `Framed` against a plain `EventHandler` parsing the same frames, over
//! loopback.
//!
//! ```text
//! cargo bench --bench codec                    # everything
//! cargo bench --bench codec -- decode/line     # one group / codec
//! ```
//! Results and how to read them: `benches/RESULTS-codec.md`. Under
//! `cargo bench` it first waits for an idle machine (`benches/common`) and
//! prints what it found at the end; `benches/codec-ratios.sh` runs it 3
//! times and reports each ratio's median and range.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ringloop::codec::{
    Codec, DelimiterCodec, FixedLengthCodec, FrameConn, FrameHandler, Framed, LengthFieldCodec,
    LineCodec,
};
use ringloop::{Action, Conn, Engine, EngineHandle, EventHandler};

mod common;

/// Size of every decode input.
const INPUT: usize = 1 << 20;

/// Deterministic text-like bytes (no `\n`, `;`, `\r`).
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// About `INPUT` bytes of frames of `lo..=hi` bytes, each encoded by
/// `codec`; returns the wire bytes and the frame count.
fn stream<C: Codec>(codec: &mut C, lo: usize, hi: usize) -> (Vec<u8>, usize) {
    let mut wire = Vec::with_capacity(INPUT + hi + 16);
    let mut n = 0u64;
    while wire.len() < INPUT {
        let len = lo + (n as usize * 7919) % (hi - lo + 1);
        codec
            .encode(&filler(n, len), &mut wire)
            .expect("bench frames encode");
        n += 1;
    }
    (wire, n as usize)
}

/// Decodes every frame of `wire` in one read, as `Framed` does.
fn decode_all<C: Codec>(codec: &mut C, wire: &[u8]) -> usize {
    let mut pos = 0;
    let mut frames = 0;
    while let Ok(Some(frame)) = codec.decode(&wire[pos..]) {
        black_box(frame.data.as_ref());
        pos += frame.consumed;
        frames += 1;
    }
    frames
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(INPUT as u64));

    // Lines of 20 to 120 bytes.
    let mut line = LineCodec::new();
    let (wire, n) = stream(&mut line, 20, 120);
    g.bench_function("line/LineCodec", |b| {
        b.iter(|| assert_eq!(decode_all(&mut line, &wire), n))
    });
    g.bench_function("line/std-slice-split", |b| {
        b.iter(|| {
            let mut frames = 0;
            // `split` yields the tail after the last '\n' too; skip it.
            for l in wire.split(|&b| b == b'\n').take(n) {
                black_box(l.strip_suffix(b"\r").unwrap_or(l));
                frames += 1;
            }
            assert_eq!(frames, n)
        })
    });
    g.bench_function("line/naive-position-loop", |b| {
        b.iter(|| {
            let (mut pos, mut frames) = (0, 0);
            while let Some(i) = wire[pos..].iter().position(|&b| b == b'\n') {
                black_box(&wire[pos..pos + i]);
                pos += i + 1;
                frames += 1;
            }
            assert_eq!(frames, n)
        })
    });

    // Frames of 100 to 2000 bytes ending in "\r\n\r\n".
    let mut delim = DelimiterCodec::new(b"\r\n\r\n").unwrap();
    let (wire, n) = stream(&mut delim, 100, 2000);
    g.bench_function("delimiter-4B/DelimiterCodec", |b| {
        b.iter(|| assert_eq!(decode_all(&mut delim, &wire), n))
    });
    g.bench_function("delimiter-4B/naive-windows-search", |b| {
        b.iter(|| {
            let (mut pos, mut frames) = (0, 0);
            while let Some(i) = wire[pos..].windows(4).position(|w| w == b"\r\n\r\n") {
                black_box(&wire[pos..pos + i]);
                pos += i + 4;
                frames += 1;
            }
            assert_eq!(frames, n)
        })
    });

    // 64-byte frames.
    let mut fixed = FixedLengthCodec::new(64).unwrap();
    let wire = filler(1, INPUT);
    g.bench_function("fixed-64B/FixedLengthCodec", |b| {
        b.iter(|| assert_eq!(decode_all(&mut fixed, &wire), INPUT / 64))
    });
    g.bench_function("fixed-64B/std-chunks-exact", |b| {
        b.iter(|| {
            let mut frames = 0;
            for chunk in wire.chunks_exact(64) {
                black_box(chunk);
                frames += 1;
            }
            assert_eq!(frames, INPUT / 64)
        })
    });

    // 4-byte big-endian length, payloads of 64 B and of 1 KiB.
    for size in [64usize, 1024] {
        let mut lf = LengthFieldCodec::default();
        let (wire, n) = stream(&mut lf, size, size);
        g.bench_with_input(
            BenchmarkId::new("length-field/LengthFieldCodec", size),
            &wire,
            |b, wire| b.iter(|| assert_eq!(decode_all(&mut lf, wire), n)),
        );
        g.bench_with_input(
            BenchmarkId::new("length-field/hand-written", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let (mut pos, mut frames) = (0, 0);
                    while let Some(h) = wire.get(pos..pos + 4) {
                        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                        let Some(body) = wire.get(pos + 4..pos + 4 + len) else {
                            break;
                        };
                        black_box(body);
                        pos += 4 + len;
                        frames += 1;
                    }
                    assert_eq!(frames, n)
                })
            },
        );
    }
    g.finish();
}

// ----- Framed against a plain handler, over loopback -----

/// Echoes every frame through the codec.
struct FramedEcho;

impl FrameHandler for FramedEcho {
    type State = ();
    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        match conn.write_frame(frame) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

/// The best a hand-written handler can do for the same protocol: find
/// where the whole frames end and write them back in one zero-copy write.
struct PlainEcho;

impl EventHandler for PlainEcho {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.peek(usize::MAX);
        let mut end = 0;
        while let Some(h) = data.get(end..end + 4) {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if data.len() < end + 4 + len {
                break;
            }
            end += 4 + len;
        }
        let whole = conn.next(end);
        match conn.write(whole) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

/// Sends `batch` and reads its echo, `rounds` times per iteration.
fn round_trip(s: &mut TcpStream, batch: &[u8], back: &mut [u8]) {
    s.write_all(batch).unwrap();
    s.read_exact(back).unwrap();
}

fn start<H: EventHandler>(
    builder: ringloop::EngineBuilder<H>,
) -> (
    EngineHandle,
    std::thread::JoinHandle<ringloop::Result<()>>,
    TcpStream,
) {
    let server = builder
        .listen("tcp://127.0.0.1:0")
        .loops(1)
        .build()
        .unwrap();
    let engine = server.handle();
    let addr = engine.local_addrs()[0].sock_addr().as_inet().unwrap();
    let thread = std::thread::spawn(move || server.run());
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    (engine, thread, s)
}

fn framed_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo-over-loopback");
    for (size, count) in [(64usize, 1000usize), (1024, 200)] {
        let mut codec = LengthFieldCodec::default();
        let mut batch = Vec::new();
        for i in 0..count {
            codec.encode(&filler(i as u64, size), &mut batch).unwrap();
        }
        let mut back = vec![0u8; batch.len()];
        g.throughput(Throughput::Bytes(batch.len() as u64));

        let (engine, thread, mut s) = start(Engine::builder(|_| PlainEcho));
        g.bench_function(BenchmarkId::new("plain-EventHandler", size), |b| {
            b.iter(|| round_trip(&mut s, &batch, &mut back))
        });
        assert!(back == batch);
        drop(s);
        engine.stop();
        thread.join().unwrap().unwrap();

        let (engine, thread, mut s) = start(Engine::builder(|_| {
            Framed::new(LengthFieldCodec::default(), FramedEcho)
        }));
        g.bench_function(BenchmarkId::new("Framed-LengthFieldCodec", size), |b| {
            b.iter(|| round_trip(&mut s, &batch, &mut back))
        });
        assert!(back == batch);
        drop(s);
        engine.stop();
        thread.join().unwrap().unwrap();
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs: two shared cores, and ratios within one run are the point.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, framed_overhead
}
fn main() {
    // Under `cargo test --benches` every case runs once: no wait.
    let idle = common::is_bench().then(|| common::idle_check("codec"));
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Some(idle) = idle {
        // One criterion run gives one median per case; benches/codec-ratios.sh
        // runs this 3 times and reports the median and range of the ratios.
        println!(
            "codec: {}; load average at the end {}",
            idle.line(),
            common::loadavg1().map_or_else(|| "?".to_string(), |l| format!("{l:.2}"))
        );
    }
}
