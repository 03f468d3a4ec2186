//! The Redis-protocol example over real sockets: every command and its
//! errors through a raw RESP client and through `redis-cli`, pipelining,
//! splits at every byte, inline commands, expiry, oversized and malformed
//! requests, keys shared by all loops, and `redis-benchmark`.

mod common;
#[path = "../examples/kv_server/mod.rs"]
mod kv_server;

use std::io::{BufRead, Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kv_server::{Limits, Store};

fn start_with(loops: usize, limits: Limits) -> Running {
    Running::start(
        kv_server::builder(Arc::new(Store::new()), limits)
            .listen("tcp://127.0.0.1:0")
            .loops(loops),
    )
}

fn start(loops: usize) -> Running {
    start_with(loops, Limits::default())
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

use Reply::*;

fn ok() -> Reply {
    Simple("OK".into())
}

fn bulk(s: &str) -> Reply {
    Bulk(Some(s.as_bytes().to_vec()))
}

fn nil() -> Reply {
    Bulk(None)
}

/// A client connection reading responses with bounded waits.
type Client = SplitClient;

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `"SET k v"` split on spaces, encoded.
fn cmd(line: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    encode(&args)
}

impl Client {
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read reply");
        assert!(n > 0, "connection closed while a reply was expected");
        assert!(line.ends_with("\r\n"), "reply line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn reply(&mut self) -> Reply {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Simple(rest.into()),
            "-" => Error(rest.into()),
            ":" => Int(rest.parse().unwrap()),
            "$" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    return Bulk(None);
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data).unwrap();
                assert_eq!(&data[len as usize..], b"\r\n");
                data.truncate(len as usize);
                Bulk(Some(data))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Array(None);
                }
                Array(Some((0..n).map(|_| self.reply()).collect()))
            }
            other => panic!("unknown reply type {other:?} in {line:?}"),
        }
    }

    /// Sends `line` (split on spaces) as a RESP array and reads the reply.
    fn call(&mut self, line: &str) -> Reply {
        self.send(&cmd(line));
        self.reply()
    }

    fn call_args(&mut self, args: &[&[u8]]) -> Reply {
        self.send(&encode(args));
        self.reply()
    }

    fn expect_eof(&mut self) {
        let rest = read_to_end(&mut self.reader);
        assert!(
            rest.is_empty(),
            "expected EOF, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

fn expect_error(reply: Reply, contains: &str) {
    match reply {
        Error(e) => assert!(e.contains(contains), "error {e:?} lacks {contains:?}"),
        other => panic!("expected an error with {contains:?}, got {other:?}"),
    }
}

#[test]
fn every_command() {
    let server = start(2);
    let mut c = Client::connect(server.tcp_addr(0));
    let script: &[(&str, Reply)] = &[
        ("PING", Simple("PONG".into())),
        ("ping hello", bulk("hello")),
        ("ECHO hi", bulk("hi")),
        ("GET k", nil()),
        ("SET k v1", ok()),
        ("GET k", bulk("v1")),
        ("set k v2 XX", ok()),
        ("SET k v3 NX", nil()),
        ("SET k2 v NX", ok()),
        ("SET k3 v XX", nil()),
        ("SET k v4 GET", bulk("v2")),
        ("SET fresh v GET", nil()),
        ("SET k v5 EX 100", ok()),
        ("TTL k", Int(100)),
        ("SET k v6 KEEPTTL", ok()),
        ("TTL k", Int(100)),
        ("SET k v7", ok()),
        ("TTL k", Int(-1)),
        ("SET k v8 PX 100000", ok()),
        ("TTL k", Int(100)),
        ("TTL missing", Int(-2)),
        ("PTTL missing", Int(-2)),
        ("EXISTS k k2 missing k", Int(3)),
        ("DEL k missing k2", Int(2)),
        ("EXISTS k", Int(0)),
        ("INCR n", Int(1)),
        ("INCR n", Int(2)),
        ("DECR n", Int(1)),
        ("INCRBY n 41", Int(42)),
        ("INCRBY n -50", Int(-8)),
        ("DECRBY n 2", Int(-10)),
        ("GET n", bulk("-10")),
        ("MSET a 1 b 2 a 3", ok()),
        (
            "MGET a b nope",
            Array(Some(vec![bulk("3"), bulk("2"), nil()])),
        ),
        ("EXPIRE a 100", Int(1)),
        ("TTL a", Int(100)),
        ("EXPIRE a 200 NX", Int(0)),
        ("EXPIRE a 200 XX", Int(1)),
        ("EXPIRE a 50 GT", Int(0)),
        ("EXPIRE a 50 LT", Int(1)),
        ("TTL a", Int(50)),
        ("EXPIRE b 10 XX", Int(0)),
        ("EXPIRE b 10 NX", Int(1)),
        ("EXPIRE nope 10", Int(0)),
        ("PEXPIRE b 5000", Int(1)),
        ("TTL b", Int(5)),
        ("EXPIRE b 0", Int(1)),
        ("EXISTS b", Int(0)),
        ("SELECT 0", ok()),
        ("DBSIZE", Int(3)), // fresh, n, a
    ];
    for (i, (line, want)) in script.iter().enumerate() {
        assert_eq!(&c.call(line), want, "step {i}: {line}");
    }
    assert_eq!(c.call("FLUSHALL"), ok());
    assert_eq!(c.call("DBSIZE"), Int(0));
    assert_eq!(c.call("FLUSHDB ASYNC"), ok());
    // Binary-safe keys and values.
    let key = b"k\r\n\x00\xff";
    let value = payload(3, 100_000);
    assert_eq!(c.call_args(&[b"SET", key, &value]), ok());
    assert_eq!(c.call_args(&[b"GET", key]), Bulk(Some(value)));
    // COMMAND, COMMAND COUNT/INFO/DOCS, CONFIG GET.
    let Array(Some(all)) = c.call("COMMAND") else {
        panic!("COMMAND is an array")
    };
    assert_eq!(c.call("COMMAND COUNT"), Int(all.len() as i64));
    let Array(Some(info)) = c.call("COMMAND INFO get nosuch") else {
        panic!("COMMAND INFO is an array")
    };
    assert_eq!(info[1], Array(None));
    let Array(Some(get)) = &info[0] else {
        panic!("info for get")
    };
    assert_eq!((&get[0], &get[1]), (&bulk("get"), &Int(2)));
    assert_eq!(c.call("COMMAND DOCS"), Array(Some(vec![])));
    assert_eq!(
        c.call("CONFIG GET save"),
        Array(Some(vec![bulk("save"), bulk("")]))
    );
    assert_eq!(
        c.call("CONFIG GET appendonly"),
        Array(Some(vec![bulk("appendonly"), bulk("no")]))
    );
    assert_eq!(c.call("CONFIG GET nothing*"), Array(Some(vec![])));
    assert_eq!(c.call("QUIT"), ok());
    c.expect_eof();
    server.stop();
}

#[test]
fn command_errors() {
    let server = start(1);
    let mut c = Client::connect(server.tcp_addr(0));
    for (line, error) in [
        ("GET", "wrong number of arguments for 'get' command"),
        ("GET a b", "wrong number of arguments for 'get' command"),
        ("SET a", "wrong number of arguments for 'set' command"),
        ("PING a b", "wrong number of arguments for 'ping' command"),
        ("ECHO", "wrong number of arguments for 'echo' command"),
        ("DEL", "wrong number of arguments for 'del' command"),
        ("EXISTS", "wrong number of arguments for 'exists' command"),
        ("INCR", "wrong number of arguments for 'incr' command"),
        ("DECR a b", "wrong number of arguments for 'decr' command"),
        ("INCRBY a", "wrong number of arguments for 'incrby' command"),
        ("MSET a", "wrong number of arguments for 'mset' command"),
        ("MSET a 1 b", "wrong number of arguments for 'mset' command"),
        ("MGET", "wrong number of arguments for 'mget' command"),
        ("EXPIRE a", "wrong number of arguments for 'expire' command"),
        ("TTL", "wrong number of arguments for 'ttl' command"),
        ("DBSIZE x", "wrong number of arguments for 'dbsize' command"),
        ("CONFIG", "wrong number of arguments for 'config' command"),
        (
            "NOSUCH a b",
            "unknown command 'NOSUCH', with args beginning with: 'a' 'b'",
        ),
        ("SET a b NX XX", "syntax error"),
        ("SET a b EX 1 PX 1", "syntax error"),
        ("SET a b EX", "syntax error"),
        ("SET a b BOGUS", "syntax error"),
        ("SET a b EX x", "not an integer"),
        ("SET a b EX 0", "invalid expire time in 'set' command"),
        ("SET a b PX -5", "invalid expire time in 'set' command"),
        (
            "SET a b EX 9223372036854775807",
            "invalid expire time in 'set' command",
        ),
        ("INCRBY n x", "not an integer"),
        ("DECRBY n -9223372036854775808", "decrement would overflow"),
        ("EXPIRE a x", "not an integer"),
        (
            "EXPIRE a 1 NX XX",
            "NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            "EXPIRE a 1 GT LT",
            "GT and LT options at the same time are not compatible",
        ),
        ("EXPIRE a 1 FOO", "Unsupported option FOO"),
        (
            "EXPIRE a 9223372036854775807",
            "invalid expire time in 'expire' command",
        ),
        ("SELECT 1", "DB index is out of range"),
        ("SELECT x", "not an integer"),
        ("FLUSHALL NOW", "syntax error"),
        ("COMMAND NOSUCH", "unknown subcommand"),
        ("CONFIG SET a b", "unknown subcommand"),
    ] {
        expect_error(c.call(line), error);
    }
    // INCR on something that is not an integer, and overflow.
    assert_eq!(c.call("SET s hello"), ok());
    expect_error(c.call("INCR s"), "value is not an integer or out of range");
    assert_eq!(c.call("SET big 9223372036854775807"), ok());
    expect_error(c.call("INCR big"), "increment or decrement would overflow");
    assert_eq!(c.call("GET big"), bulk("9223372036854775807"));
    assert_eq!(c.call("SET lead 007"), ok());
    expect_error(c.call("INCR lead"), "not an integer");
    // A long unknown command is quoted only in part, on one line.
    let long = "x".repeat(10_000);
    match c.call_args(&[long.as_bytes(), b"a\r\nb"]) {
        Error(e) => assert!(e.len() < 400 && !e.contains('\n'), "{e}"),
        other => panic!("{other:?}"),
    }
    // The connection survived every error.
    assert_eq!(c.call("PING"), Simple("PONG".into()));
    server.stop();
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = start(2);
    let mut c = Client::connect(server.tcp_addr(0));
    for n in [1usize, 2, 16, 100, 1000, 5000] {
        let mut batch = Vec::new();
        for i in 0..n {
            batch.extend_from_slice(&cmd(&format!("SET key:{i} v{i}")));
            batch.extend_from_slice(&cmd(&format!("INCR counter:{n}")));
            batch.extend_from_slice(&cmd(&format!("GET key:{i}")));
        }
        c.send(&batch);
        for i in 0..n {
            assert_eq!(c.reply(), ok());
            assert_eq!(c.reply(), Int(i as i64 + 1));
            assert_eq!(c.reply(), bulk(&format!("v{i}")));
        }
    }
    server.stop();
}

#[test]
fn commands_split_at_every_byte() {
    let server = start(2);
    let mut c = Client::connect(server.tcp_addr(0));
    let mut pair = cmd("SET split value");
    pair.extend_from_slice(b"GET split\r\n"); // an inline one too
    for cut in 1..pair.len() {
        c.send(&pair[..cut]);
        std::thread::sleep(Duration::from_millis(1));
        c.send(&pair[cut..]);
        assert_eq!(c.reply(), ok(), "cut {cut}");
        assert_eq!(c.reply(), bulk("value"), "cut {cut}");
    }
    // A large value arriving in small pieces.
    let value = payload(9, 3 << 20);
    for chunk in encode(&[b"SET", b"big", &value]).chunks(70_001) {
        c.send(chunk);
    }
    assert_eq!(c.reply(), ok());
    assert_eq!(c.call("GET big"), Bulk(Some(value)));
    server.stop();
}

#[test]
fn inline_commands() {
    let server = start(1);
    let mut c = Client::connect(server.tcp_addr(0));
    c.send(b"PING\r\n");
    assert_eq!(c.reply(), Simple("PONG".into()));
    c.send(b"\r\n   \r\nset  greeting \"hello world\\n\"  \n");
    assert_eq!(c.reply(), ok());
    c.send(b"GET greeting\r\n");
    assert_eq!(c.reply(), bulk("hello world\n"));
    c.send(b"set 'it''s' x\r\n"); // a quote must end its argument
    expect_error(c.reply(), "unbalanced quotes");
    c.expect_eof();
    // An inline line longer than 64 KiB is refused.
    let mut c = Client::connect(server.tcp_addr(0));
    c.send(&vec![b'a'; 70_000]);
    expect_error(c.reply(), "too big inline request");
    c.expect_eof();
    server.stop();
}

/// Resident memory of this process (the server runs in it).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_huge_bulk_is_refused_without_allocating_it() {
    let server = start(2);
    let addr = server.tcp_addr(0);
    let before = rss();
    // Announce 1 GiB and send none of it: the refusal must come right after
    // the header, so nothing was waited for or buffered.
    let mut c = Client::connect(addr);
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n");
    expect_error(c.reply(), "Protocol error: invalid bulk length");
    c.expect_eof();
    // The same for a huge array, and for one huge bulk among pipelined commands.
    let mut c = Client::connect(addr);
    c.send(b"*2147483648\r\n");
    expect_error(c.reply(), "Protocol error: invalid multibulk length");
    c.expect_eof();
    let mut c = Client::connect(addr);
    let mut req = cmd("SET before ok");
    req.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$9999999999\r\n");
    c.send(&req);
    assert_eq!(c.reply(), ok());
    expect_error(c.reply(), "invalid bulk length");
    c.expect_eof();
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
    server.stop();
    // A lower, configured limit: at the limit is fine, one byte over is not.
    let server = start_with(
        1,
        Limits {
            max_bulk: 1024,
            ..Limits::default()
        },
    );
    let mut c = Client::connect(server.tcp_addr(0));
    assert_eq!(c.call_args(&[b"SET", b"k", &[b'v'; 1024]]), ok());
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n");
    expect_error(c.reply(), "invalid bulk length");
    c.expect_eof();
    server.stop();
}

#[test]
fn a_client_that_never_reads_is_dropped() {
    let limits = Limits {
        max_output: 8 << 20,
        ..Limits::default()
    };
    let server = start_with(2, limits);
    let addr = server.tcp_addr(0);
    let mut c = Client::connect(addr);
    assert_eq!(c.call_args(&[b"SET", b"big", &payload(1, 1 << 20)]), ok());
    // GET a 1 MiB value over and over without reading: far past the 8 MiB
    // cap and every kernel buffer, the server must drop the connection.
    let gets: Vec<u8> = (0..16).flat_map(|_| cmd("GET big")).collect();
    let mut refused = false;
    for _ in 0..1000 {
        if c.writer.write_all(&gets).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(refused, "the server kept buffering replies nobody reads");
    let mut other = Client::connect(addr);
    assert_eq!(other.call("EXISTS big"), Int(1));
    server.stop();
}

#[test]
fn malformed_resp_gets_an_error_and_a_close() {
    let server = start(2);
    let addr = server.tcp_addr(0);
    for (bytes, error) in [
        (&b"*1\r\n+PING\r\n"[..], "expected '$', got '+'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$4\r\nPINGxx", "expected CRLF"),
        (
            b"*99999999999999999999999\r\n",
            "too big mbulk count string",
        ),
        (
            b"*1\r\n$99999999999999999999999\r\n",
            "too big bulk count string",
        ),
        (b"*1\r\n$4\r\nPI\x00G\r\n", "unknown command"),
    ] {
        let mut c = Client::connect(addr);
        c.send(bytes);
        expect_error(c.reply(), error);
        if !error.contains("unknown command") {
            c.expect_eof();
        }
    }
    // Random junk on many connections: never a crash, never a hang.
    let junk: Vec<_> = (0..16u64)
        .map(|seed| {
            std::thread::spawn(move || {
                let mut s = tcp_client(addr);
                let mut bytes = payload(seed, 20_000);
                if seed % 2 == 0 {
                    bytes[0] = b'*'; // RESP-looking junk
                }
                let _ = s.write_all(&bytes);
                let _ = s.shutdown(std::net::Shutdown::Write);
                read_to_end(&mut s); // the server answers or closes; never hangs
            })
        })
        .collect();
    for j in junk {
        j.join().unwrap();
    }
    let mut c = Client::connect(addr);
    assert_eq!(c.call("PING"), Simple("PONG".into()));
    server.stop();
}

#[test]
fn keys_expire_eventually() {
    let server = start(2);
    let mut c = Client::connect(server.tcp_addr(0));
    let until_gone = |c: &mut Client, key: &str| {
        wait_until(&format!("{key} to expire"), || {
            c.call(&format!("EXISTS {key}")) == Int(0)
        });
    };
    assert_eq!(c.call("SET short v PX 30"), ok());
    until_gone(&mut c, "short");
    assert_eq!(c.call("GET short"), nil());
    assert_eq!(c.call("SET later v"), ok());
    assert_eq!(c.call("PEXPIRE later 30"), Int(1));
    until_gone(&mut c, "later");
    assert_eq!(c.call("TTL later"), Int(-2));
    // An INCR keeps the expiry; a plain SET removes it.
    assert_eq!(c.call("SET n 1 PX 100000"), ok());
    assert_eq!(c.call("INCR n"), Int(2));
    assert!(matches!(c.call("PTTL n"), Int(ms) if ms > 0));
    assert_eq!(c.call("SET n 1"), ok());
    assert_eq!(c.call("TTL n"), Int(-1));
    // Keys nobody reads are purged by loop 0's ticker: DBSIZE drops to 0.
    assert_eq!(c.call("FLUSHALL"), ok());
    let mut batch = Vec::new();
    for i in 0..3000 {
        batch.extend_from_slice(&cmd(&format!("SET unread:{i} v PX 20")));
    }
    c.send(&batch);
    for _ in 0..3000 {
        assert_eq!(c.reply(), ok());
    }
    wait_until("active expiry to purge unread keys", || {
        c.call("DBSIZE") == Int(0)
    });
    server.stop();
}

#[test]
fn keys_are_shared_by_all_loops_and_updates_are_atomic() {
    let server = start(4);
    let addr = server.tcp_addr(0);
    // INCR from 8 connections (spread over the 4 loops), pipelined.
    let incrs: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..10 {
                    let batch: Vec<u8> = (0..100).flat_map(|_| cmd("INCR shared")).collect();
                    c.send(&batch);
                    for _ in 0..100 {
                        assert!(matches!(c.reply(), Int(_)));
                    }
                }
            })
        })
        .collect();
    for t in incrs {
        t.join().unwrap();
    }
    let mut c = Client::connect(addr);
    assert_eq!(c.call("GET shared"), bulk("8000"));
    // MSET is atomic: readers on other loops never see a half-applied one.
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<String> = (0..16).map(|i| format!("atomic:{i}")).collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for round in 0..300 {
                    let value = format!("{w}-{round}");
                    let mut args: Vec<&[u8]> = vec![b"MSET"];
                    for k in &keys {
                        args.push(k.as_bytes());
                        args.push(value.as_bytes());
                    }
                    assert_eq!(c.call_args(&args), ok());
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let keys = keys.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                while !stop.load(Ordering::Relaxed) {
                    let Array(Some(values)) = c.call_args(&args) else {
                        panic!("MGET is an array")
                    };
                    assert!(
                        values.iter().all(|v| v == &values[0]),
                        "MGET saw a partial MSET: {values:?}"
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    server.stop();
}

/// Runs `redis-cli -p PORT args...` and returns its output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("20")
        .arg("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_speaks_to_it() {
    if !have_tool("redis-cli", "redis-tools") {
        return;
    }
    let server = start(2);
    let port = server.tcp_addr(0).port();
    let cli = |args: &[&str]| redis_cli(port, args);
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["ECHO", "hello world"]), "hello world");
    assert_eq!(cli(&["SET", "k", "v", "EX", "100"]), "OK");
    assert_eq!(cli(&["SET", "k", "v2", "NX"]), "");
    assert_eq!(cli(&["SET", "k", "v3", "XX", "PX", "100000"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "v3");
    assert_eq!(cli(&["TTL", "k"]), "100");
    assert_eq!(cli(&["EXPIRE", "k", "50"]), "1");
    assert_eq!(cli(&["TTL", "k"]), "50");
    assert_eq!(cli(&["EXISTS", "k", "nope"]), "1");
    assert_eq!(cli(&["INCR", "n"]), "1");
    assert_eq!(cli(&["INCRBY", "n", "9"]), "10");
    assert_eq!(cli(&["DECR", "n"]), "9");
    assert_eq!(cli(&["MSET", "a", "1", "b", "2"]), "OK");
    assert_eq!(cli(&["MGET", "a", "c", "b"]), "1\n\n2"); // nil prints as an empty line
    assert_eq!(cli(&["DEL", "a", "b", "c"]), "2");
    assert_eq!(cli(&["DBSIZE"]), "2");
    assert_eq!(cli(&["CONFIG", "GET", "appendonly"]), "appendonly\nno");
    assert!(cli(&["COMMAND", "COUNT"]).parse::<u32>().unwrap() > 10);
    assert_eq!(cli(&["FLUSHALL"]), "OK");
    assert_eq!(cli(&["DBSIZE"]), "0");
    // Errors come back as errors.
    assert!(cli(&["GET"]).contains("ERR wrong number of arguments for 'get' command"));
    assert!(cli(&["NOPE"]).contains("ERR unknown command 'NOPE'"));
    assert!(cli(&["SET", "k", "v", "EX", "zero"]).contains("ERR value is not an integer"));
    assert!(cli(&["INCR", "k2"]) == "1");
    // Several commands on one connection through stdin.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'SET s 1\\nINCR s\\nGET s\\n' | timeout 20 redis-cli -h 127.0.0.1 -p {port}"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n2\n2\n");
    server.stop();
}

#[test]
fn redis_benchmark_runs_against_it() {
    if !have_tool("redis-benchmark", "redis-tools") {
        return;
    }
    let server = start(2);
    let port = server.tcp_addr(0).port();
    for pipeline in ["1", "16"] {
        let out = Command::new("timeout")
            .args(["60", "redis-benchmark", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args([
                "-t",
                "set,get,incr",
                "-n",
                "2000",
                "-c",
                "10",
                "-P",
                pipeline,
            ])
            .args(["--csv"])
            .output()
            .expect("run redis-benchmark");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "redis-benchmark -P {pipeline}: {out:?}"
        );
        for test in ["\"SET\"", "\"GET\"", "\"INCR\""] {
            assert!(stdout.contains(test), "no {test} in {stdout}");
        }
    }
    let mut c = Client::connect(server.tcp_addr(0));
    // redis-benchmark INCRs `counter:__rand_int__` 2,000 times per run.
    assert_eq!(c.call("GET counter:__rand_int__"), bulk("4000"));
    server.stop();
}

/// Parses `CLIENT LIST` into one map of fields per line.
fn client_list(c: &mut Client) -> Vec<std::collections::HashMap<String, String>> {
    let Bulk(Some(text)) = c.call("CLIENT LIST") else {
        panic!("CLIENT LIST is a bulk string");
    };
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn client_list_shows_every_client() {
    let server = start(2);
    let addr = server.tcp_addr(0);
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    assert_eq!(a.call("SET k v"), ok());
    let Int(b_id) = b.call("CLIENT ID") else {
        panic!("CLIENT ID is an integer");
    };
    let list = client_list(&mut b);
    assert_eq!(list.len(), 2, "{list:?}");
    for row in &list {
        for field in ["id", "addr", "laddr", "fd", "age", "idle", "cmd"] {
            assert!(row.contains_key(field), "{field} missing in {row:?}");
        }
        assert_eq!(row["laddr"], addr.to_string());
        assert!(row["fd"].parse::<i32>().unwrap() > 2);
        assert!(row["age"].parse::<u64>().is_ok() && row["idle"].parse::<u64>().is_ok());
    }
    let me = list.iter().find(|r| r["id"] == b_id.to_string()).unwrap();
    assert_eq!(me["addr"], b.writer.local_addr().unwrap().to_string());
    assert_eq!(me["cmd"], "client");
    let other = list.iter().find(|r| r["id"] != b_id.to_string()).unwrap();
    assert_eq!(other["addr"], a.writer.local_addr().unwrap().to_string());
    assert_eq!(other["cmd"], "set");
    expect_error(b.call("CLIENT KILL x"), "unknown subcommand");
    drop(a);
    wait_until("the closed client gone from the list", || {
        client_list(&mut b).len() == 1
    });
    server.stop();
}

// ----- the limits it advertises, errors before a close, maxclients -----

#[test]
fn the_advertised_bulk_limit_is_the_real_one() {
    let server = start(1);
    let mut c = Client::connect(server.tcp_addr(0));
    let advertised = match c.call("CONFIG GET proto-max-bulk-len") {
        Array(Some(items)) => match &items[1] {
            Bulk(Some(v)) => String::from_utf8(v.clone())
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(advertised, Limits::default().max_bulk);
    // A 100 MiB SET works (the engine's own input cap once refused anything
    // over 64 MiB with a bare reset), and reads back whole.
    let value = payload(3, 100 << 20);
    let writer = {
        let mut w = c.writer.try_clone().unwrap();
        let req = encode(&[b"SET", b"big", &value]);
        std::thread::spawn(move || w.write_all(&req).unwrap())
    };
    assert_eq!(c.reply(), ok());
    writer.join().unwrap();
    match c.call("GET big") {
        Bulk(Some(v)) => assert!(v == value, "GET big differs"),
        other => panic!("{other:?}"),
    }
    server.stop();
}

#[test]
fn an_over_limit_bulk_gets_its_error_before_the_close_not_a_reset() {
    let server = start(1);
    let mut c = Client::connect(server.tcp_addr(0));
    // One byte over the advertised limit, and the client keeps sending the
    // body after the header (as redis-cli would): the error must arrive,
    // then a clean end of stream, though input was still coming.
    let over = Limits::default().max_bulk + 1;
    let mut w = c.writer.try_clone().unwrap();
    let header = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${over}\r\n");
    let sender = std::thread::spawn(move || {
        w.write_all(header.as_bytes()).unwrap();
        let chunk = vec![b'v'; 64 * 1024];
        // 8 MiB of the body, or until the server's close stops us.
        for _ in 0..128 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    expect_error(c.reply(), "Protocol error: invalid bulk length");
    let mut rest = Vec::new();
    let end = c.reader.read_to_end(&mut rest);
    assert!(end.is_ok(), "a reset instead of an end of stream: {end:?}");
    assert!(rest.is_empty());
    sender.join().unwrap();
    server.stop();
}

#[test]
fn maxclients_refuses_one_more_with_an_error() {
    let limits = Limits {
        max_clients: 2,
        ..Limits::default()
    };
    let server = start_with(1, limits);
    let addr = server.tcp_addr(0);
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    assert_eq!(a.call("PING"), Simple("PONG".into()));
    assert_eq!(b.call("PING"), Simple("PONG".into()));
    let mut third = Client::connect(addr);
    expect_error(third.reply(), "max number of clients reached");
    third.expect_eof();
    drop(a);
    // A place is free again once a client left (the count is the engine's).
    wait_until("the first client's close", || {
        server.engine.connection_count() < 2
    });
    let mut fourth = Client::connect(addr);
    assert_eq!(fourth.call("PING"), Simple("PONG".into()));
    drop(b);
    server.stop();
}
