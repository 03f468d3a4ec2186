//! The HTTP/1.1 plaintext handler behind `examples/http.rs`, shared with
//! `tests/http.rs` (which mounts this file with `#[path]`).
//!
//! # Routes
//!
//! `GET` or `HEAD` on `/plaintext` or `/` answers `Hello, World!` with
//! `Server`, `Date`, `Content-Type: text/plain` and `Content-Length`. Another
//! method on those paths gets `405` (with `Allow`), any other path `404`; both
//! keep the connection. A malformed request gets `400`, a head over
//! [`MAX_HEAD`] bytes `431`, a target over [`MAX_URI`] bytes `414`, an
//! unknown HTTP major version `505` and a `Transfer-Encoding` (request bodies
//! are only framed by `Content-Length` here) `501`; each of these closes the
//! connection after the reply.
//!
//! # What it bounds
//!
//! A client gets [`HEADER_TIMEOUT`] (30 s, as hyper's header read timeout)
//! from the first byte of a request head to its end, however it trickles the
//! bytes (the engine's incomplete-input timeout: the head stays unconsumed
//! until complete), and [`KEEPALIVE_TIMEOUT`] (60 s) of silence between
//! requests (the idle timeout). A peer that stops reading its replies is
//! dropped after 60 s without progress (the engine's default write timeout),
//! and stops being read as soon as a few tens of KiB of replies wait for it
//! (the engine's water marks); [`MAX_UNREAD_REPLIES`] caps what one read's
//! pipelined requests may queue. A head is at most [`MAX_HEAD`] bytes (else
//! `431`), a request target at most [`MAX_URI`] bytes (else `414`). Bodies
//! are discarded as they arrive, never buffered. Both origin-form and
//! absolute-form targets (`GET http://host/path`, RFC 9112 §3.2.2) are
//! accepted; the authority of an absolute-form target takes precedence over
//! `Host`, which is still required in HTTP/1.1. A connection closed after an
//! error reply lingers (the engine's lingering close, 5 s at most), draining
//! what the client still sends, so the reply is not lost to a reset.
//!
//! # Parsing
//!
//! Hand-written, one pass and zero-copy over [`Conn::peek`]: each byte of
//! a head is looked at once, by the check that validates it (method and
//! field names through a byte-class table, the target and field values
//! eight bytes a step), and those checks also find where lines end, so
//! there is no separate search for line ends or for the target's query.
//! The handler looks at everything buffered for the connection, answers
//! every complete request in it into one reply buffer, consumes exactly
//! those bytes and leaves the rest (a partial head) for the next read. A partial head is not rescanned from
//! its start: the connection's state remembers how far the search for the
//! blank line got. Request bodies (`Content-Length`) are discarded as they
//! arrive, so they are never buffered, however large. All the replies of one
//! read go out with one write. A client that pipelines requests but does not
//! read the replies is closed once [`MAX_UNREAD_REPLIES`] bytes wait for it.
//!
//! # The `Date` header
//!
//! Formatting a date per request would cost more than the rest of the reply.
//! Instead loop 0's ticker ([`EventHandler::on_tick`], enabled by
//! [`builder`]) stores the current Unix second in a shared [`Clock`] (one
//! atomic) and schedules itself just after the next second boundary. Every
//! loop's handler reads that atomic once per `on_traffic` call (the cache line
//! is written once a second, so the read is nearly free) and, when the second
//! changed, re-renders its own copy of the date and of the complete
//! `200 OK` reply. The common reply is then a single copy of a prebuilt
//! buffer.

#![allow(dead_code)] // the example and the tests each use a subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringloop::{Action, Conn, Engine, EngineBuilder, EventHandler, LoopContext, Timeouts};

/// Longest request head (request line and headers, with the blank line).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request target (URI); a longer one gets `414`.
pub const MAX_URI: usize = 4 * 1024;
/// The longest a request head may take to arrive, from its first byte.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a connection may stay silent between requests.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The `Server` header's value.
pub const SERVER: &str = "ringloop";
/// The plaintext body.
pub const BODY: &[u8] = b"Hello, World!";
/// Replies are written out once this much is pending within one read.
const FLUSH_AT: usize = 256 * 1024;
/// Most reply bytes a connection may leave unread; past it the connection is
/// closed, so a client that pipelines without reading cannot make the server
/// buffer without end.
pub const MAX_UNREAD_REPLIES: usize = 4 << 20;

/// Unix seconds as seen by loop 0's ticker, shared by every loop.
#[derive(Debug)]
pub struct Clock {
    secs: AtomicU64,
}

impl Clock {
    /// A clock set to now.
    pub fn new() -> Clock {
        Clock {
            secs: AtomicU64::new(unix_now().as_secs()),
        }
    }

    /// Sets the clock to now; returns how long until the next second starts.
    fn refresh(&self) -> Duration {
        let now = unix_now();
        // Relaxed: the value is a self-contained timestamp, nothing else is
        // published with it.
        self.secs.store(now.as_secs(), Ordering::Relaxed);
        Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()))
            + Duration::from_millis(1)
    }

    fn get(&self) -> u64 {
        // Relaxed: see `refresh`.
        self.secs.load(Ordering::Relaxed)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// An engine builder serving plaintext HTTP, with the ticker on (it drives the
/// shared [`Clock`]) and the [`timeouts`]. Add addresses and loops, then build.
pub fn builder() -> EngineBuilder<Http> {
    let clock = Arc::new(Clock::new());
    Engine::builder(move |_| Http::new(clock.clone()))
        .ticker(true)
        .timeouts(timeouts())
        // An error reply before a close reaches a client still sending.
        .lingering_close(Some(Duration::from_secs(5)))
}

/// The engine's default timeouts with the head ([`HEADER_TIMEOUT`]) and
/// keep-alive ([`KEEPALIVE_TIMEOUT`]) limits.
pub fn timeouts() -> Timeouts {
    Timeouts::default()
        .incomplete(HEADER_TIMEOUT)
        .idle(KEEPALIVE_TIMEOUT)
}

/// One loop's handler.
pub struct Http {
    clock: Arc<Clock>,
    /// The second `date` and `ok` were rendered for.
    rendered: u64,
    /// `Sun, 06 Nov 1994 08:49:37 GMT`.
    date: [u8; 29],
    /// The complete keep-alive `200 OK` reply to a `GET`.
    ok: Vec<u8>,
    /// Replies of the current read.
    out: Vec<u8>,
}

/// Per-connection parse state.
#[derive(Debug, Default)]
pub struct HttpConn {
    /// Body bytes of the last request still to be discarded.
    body_left: u64,
    /// How far the search for the end of the pending head got.
    scanned: usize,
}

impl Http {
    /// A handler reading the date from `clock`.
    pub fn new(clock: Arc<Clock>) -> Http {
        let mut http = Http {
            clock,
            rendered: u64::MAX,
            date: [b' '; 29],
            ok: Vec::with_capacity(160),
            out: Vec::with_capacity(4096),
        };
        http.render(http.clock.get());
        http
    }

    fn render(&mut self, secs: u64) {
        self.rendered = secs;
        self.date = http_date(secs);
        self.ok.clear();
        push_head(
            &mut self.ok,
            &self.date,
            Status::Ok,
            BODY.len(),
            Keep::Default,
            None,
        );
        self.ok.extend_from_slice(BODY);
    }

    /// Appends a complete reply with a text body to `self.out`.
    fn reply(&mut self, status: Status, keep: Keep, head_only: bool, allow: Option<&str>) {
        let body: &[u8] = match status {
            Status::Ok => BODY,
            _ => status.line().as_bytes(),
        };
        push_head(&mut self.out, &self.date, status, body.len(), keep, allow);
        if !head_only {
            self.out.extend_from_slice(body);
        }
    }

    /// Answers one parsed request; returns whether the connection stays open.
    fn answer(&mut self, req: &Request<'_>) -> bool {
        let keep_open = req.keep_alive();
        let keep = match (keep_open, req.minor) {
            (false, _) => Keep::Close,
            (true, 0) => Keep::Alive,
            (true, _) => Keep::Default,
        };
        if req.path != b"/plaintext" && req.path != b"/" {
            self.reply(Status::NotFound, keep, req.method == b"HEAD", None);
        } else if req.method == b"GET" && keep == Keep::Default {
            self.out.extend_from_slice(&self.ok);
        } else if req.method == b"GET" || req.method == b"HEAD" {
            self.reply(Status::Ok, keep, req.method == b"HEAD", None);
        } else {
            self.reply(Status::MethodNotAllowed, keep, false, Some("GET, HEAD"));
        }
        keep_open
    }
}

/// Appends a reply head: status line, `Server`, `Date`, `Content-Type`,
/// `Content-Length`, then `Connection` and `Allow` when needed.
fn push_head(
    out: &mut Vec<u8>,
    date: &[u8; 29],
    status: Status,
    len: usize,
    keep: Keep,
    allow: Option<&str>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, len as u64);
    match keep {
        Keep::Default => {}
        Keep::Close => out.extend_from_slice(b"\r\nConnection: close"),
        Keep::Alive => out.extend_from_slice(b"\r\nConnection: keep-alive"),
    }
    if let Some(allow) = allow {
        out.extend_from_slice(b"\r\nAllow: ");
        out.extend_from_slice(allow.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// What a reply's `Connection` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Nothing: HTTP/1.1 keeps the connection by default.
    Default,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive` (an HTTP/1.0 client asked for it).
    Alive,
}

impl EventHandler for Http {
    type State = HttpConn;

    fn on_open(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
        conn.set_state(HttpConn::default());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
        let secs = self.clock.get();
        if secs != self.rendered {
            self.render(secs);
        }
        let input = conn.peek(usize::MAX);
        let mut st = conn.take_state().unwrap_or_default();
        self.out.clear();
        let mut pos = 0;
        let mut open = true;
        // Replies already waiting for the peer (only this callback's own
        // writes below change it).
        let mut queued = conn.outbound_buffered();
        while open {
            if st.body_left > 0 {
                let n = st.body_left.min((input.len() - pos) as u64);
                pos += n as usize;
                st.body_left -= n;
                if st.body_left > 0 {
                    break;
                }
            }
            // Empty lines before a request line are ignored (RFC 9112 §2.2).
            while input[pos..].starts_with(b"\r\n") || input[pos..].starts_with(b"\n") {
                pos += if input[pos] == b'\r' { 2 } else { 1 };
                st.scanned = 0;
            }
            let rest = &input[pos..];
            if rest.is_empty() || rest == b"\r" {
                break;
            }
            let window = &rest[..rest.len().min(MAX_HEAD)];
            // The common case, a whole valid head, in one pass; else find
            // where the head ends (or how far it got), then parse it.
            let quick = if st.scanned == 0 {
                parse_complete_head(window)
            } else {
                None
            };
            let (head_len, parsed) = if let Some((len, req)) = quick {
                (len, Ok(req))
            } else {
                let head_len = match head_end(window, st.scanned) {
                    Ok(len) => len,
                    Err(_) if rest.len() >= MAX_HEAD => {
                        // A request line that alone passes the limit is a URI
                        // too long; otherwise the header fields are too large.
                        let status = match memchr::memchr(b'\n', window) {
                            None => Status::UriTooLong,
                            Some(_) => Status::HeaderTooLarge,
                        };
                        self.reply(status, Keep::Close, false, None);
                        open = false;
                        break;
                    }
                    Err(resume) => {
                        st.scanned = resume;
                        break;
                    }
                };
                (head_len, parse_head(&rest[..head_len]))
            };
            st.scanned = 0;
            match parsed {
                Ok(req) => {
                    pos += head_len;
                    st.body_left = req.content_length;
                    open = self.answer(&req);
                }
                Err(status) => {
                    self.reply(status, Keep::Close, false, None);
                    open = false;
                }
            }
            if self.out.len() >= FLUSH_AT {
                if conn.write(&self.out).is_err() {
                    return Action::Close;
                }
                self.out.clear();
                queued = conn.outbound_buffered();
            }
            if queued + self.out.len() > MAX_UNREAD_REPLIES {
                return Action::Close;
            }
        }
        if !open {
            // Whatever follows a closing request is not answered.
            pos = input.len();
        }
        conn.discard(pos);
        conn.set_state(st);
        if !self.out.is_empty() {
            // (A match, not `is_err()`: the common `Ok` needs no drop call.)
            match conn.write(&self.out) {
                Ok(_) => {}
                Err(_) => return Action::Close,
            }
        }
        if open {
            Action::None
        } else {
            Action::Close
        }
    }

    fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
        (self.clock.refresh(), Action::None)
    }
}

/// A reply status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200
    Ok,
    /// 400
    BadRequest,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 414
    UriTooLong,
    /// 431
    HeaderTooLarge,
    /// 501
    NotImplemented,
    /// 505
    VersionNotSupported,
}

impl Status {
    /// Code and reason phrase.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::UriTooLong => "414 URI Too Long",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
            Status::NotImplemented => "501 Not Implemented",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

/// What the handler needs of a request head; every slice borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token, as sent (methods are case-sensitive).
    pub method: &'a [u8],
    /// The target's path, without query.
    pub path: &'a [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The body length (0 without `Content-Length`).
    pub content_length: u64,
    /// `Connection: close` was sent.
    pub close: bool,
    /// `Connection: keep-alive` was sent.
    pub keep_alive_token: bool,
}

impl Request<'_> {
    /// Whether the connection stays open after this request.
    pub fn keep_alive(&self) -> bool {
        !self.close && (self.minor >= 1 || self.keep_alive_token)
    }
}

/// Finds the end of a head (just past its blank line) in `buf`, searching
/// from `from`. `Err(resume)` when there is none yet: search again from
/// `resume` once more bytes arrived.
pub fn head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from.min(buf.len());
    while let Some(offset) = find_byte(&buf[i..], b'\n') {
        let nl = i + offset;
        match buf.get(nl + 1) {
            None => return Err(nl),
            Some(b'\n') => return Ok(nl + 2),
            Some(b'\r') => match buf.get(nl + 2) {
                None => return Err(nl),
                Some(b'\n') => return Ok(nl + 3),
                Some(_) => {}
            },
            Some(_) => {}
        }
        i = nl + 1;
    }
    Err(buf.len())
}

const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The first byte of `s` that `marks` picks, eight bytes per step: `flag`
/// maps a word of `s` (little-endian) to one with the top bit set in the
/// picked bytes — exactly in the lowest one, possibly spuriously above it
/// (borrows and carries spill upwards), never below. `marks` is the same
/// test on one byte, for a slice shorter than a word.
#[inline(always)]
fn first_marked(s: &[u8], flag: impl Fn(u64) -> u64, marks: impl Fn(u8) -> bool) -> Option<usize> {
    if s.len() < 8 {
        return s.iter().position(|&b| marks(b));
    }
    let word_at = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 <= s.len() {
        let flags = flag(word_at(at));
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    if at < s.len() {
        // The tail as one last word, overlapping bytes already known not to
        // be picked: a spurious flag needs a picked byte below it, so none
        // lands there, and the lowest flag is the first pick of the tail.
        let last = s.len() - 8;
        let flags = flag(word_at(last));
        if flags != 0 {
            return Some(last + flags.trailing_zeros() as usize / 8);
        }
    }
    None
}

/// The first `byte` in `s`. Head lines are short (tens of bytes), where
/// `memchr`'s setup costs more than the search: the classic zero-byte test
/// on `word ^ byte…`, eight bytes per step.
#[inline]
fn find_byte(s: &[u8], byte: u8) -> Option<usize> {
    let pattern = LOW * u64::from(byte);
    first_marked(
        s,
        |word| {
            let x = word ^ pattern;
            x.wrapping_sub(LOW) & !x & HIGH
        },
        |b| b == byte,
    )
}

/// How many leading bytes of `s` are within `lo..=hi` (`0 < lo <= hi <
/// 0x7f`), eight bytes per step: a byte below `lo` borrows into its top bit
/// (`word - lo…`, where `!word` keeps bytes with the top bit clear), a byte
/// above `hi` (or past 0x7f) carries into it (`word + (0x7f - hi)…`, or'd
/// with `word`).
#[inline]
fn run_within(s: &[u8], lo: u8, hi: u8) -> usize {
    let below = LOW * u64::from(lo);
    let above = LOW * u64::from(0x7f - hi);
    first_marked(
        s,
        |word| {
            (word.wrapping_sub(below) & !word & HIGH) | ((word.wrapping_add(above) | word) & HIGH)
        },
        |b| !(lo..=hi).contains(&b),
    )
    .unwrap_or(s.len())
}

/// [`run_within`], stopping at `stop` too (one more test in the same pass).
#[inline]
fn run_within_or(s: &[u8], lo: u8, hi: u8, stop: u8) -> usize {
    let below = LOW * u64::from(lo);
    let above = LOW * u64::from(0x7f - hi);
    let pattern = LOW * u64::from(stop);
    first_marked(
        s,
        |word| {
            let x = word ^ pattern;
            (word.wrapping_sub(below) & !word & HIGH)
                | ((word.wrapping_add(above) | word) & HIGH)
                | (x.wrapping_sub(LOW) & !x & HIGH)
        },
        |b| !(lo..=hi).contains(&b) || b == stop,
    )
    .unwrap_or(s.len())
}

/// Byte classes, so that validating a field costs one table lookup a byte.
const TCHAR: u8 = 1; // RFC 9110 §5.6.2 token characters
const VISIBLE: u8 = 2; // VCHAR: allowed in a request target
const FIELD: u8 = 4; // field-value bytes: VCHAR, SP, HTAB, obs-text

static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        if b.is_ascii_graphic() {
            class |= VISIBLE;
        }
        if b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80 {
            class |= FIELD;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// How many leading bytes of `s` are of `class`.
fn class_run(s: &[u8], class: u8) -> usize {
    s.iter()
        .position(|&b| CLASSES[usize::from(b)] & class == 0)
        .unwrap_or(s.len())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// How a scan of the bytes at the start of a buffer ended.
#[derive(Debug, PartialEq, Eq)]
enum Scan<'a> {
    /// A complete, valid head of this many bytes (up to and including its
    /// blank line).
    Complete(usize, Request<'a>),
    /// Valid so far, but the buffer ends before the blank line.
    Partial,
    /// Malformed.
    Invalid(Status),
}

/// Parses a complete request head (as delimited by [`head_end`]).
pub fn parse_head(head: &[u8]) -> Result<Request<'_>, Status> {
    match scan_head(head) {
        Scan::Complete(_, req) => Ok(req),
        Scan::Invalid(status) => Err(status),
        // `head_end` delimited it, so it ends with its blank line; a head
        // that does not was not delimited by it.
        Scan::Partial => Err(Status::BadRequest),
    }
}

/// The common case in one pass: `buf` starts with a complete, valid head.
/// Returns its length and the request; `None` if the head is not complete
/// yet or not valid (then [`head_end`] and [`parse_head`] say which, and
/// how far the search got).
#[inline(always)] // into the handler's loop: no copy of the request out and in
pub fn parse_complete_head(buf: &[u8]) -> Option<(usize, Request<'_>)> {
    match scan_head(buf) {
        Scan::Complete(len, req) => Some((len, req)),
        _ => None,
    }
}

/// One forward pass over the head at the start of `buf`: every byte is
/// looked at once, by the check that validates it, and the same checks find
/// the ends of lines (a header value's run of printable bytes stops at its
/// `\r`), so there is no separate search for line ends.
#[inline(always)]
fn scan_head(buf: &[u8]) -> Scan<'_> {
    use Scan::{Invalid, Partial};
    const BAD: Scan<'static> = Invalid(Status::BadRequest);
    // method SP request-target SP HTTP-version: each part is the run of
    // its byte class, checked and delimited in one pass (a part that is
    // empty or not followed by its space is malformed).
    let (method, after) = if buf.starts_with(b"GET ") {
        (&buf[..3], &buf[4..])
    } else {
        let (method, after) = buf.split_at(class_run(buf, TCHAR));
        match after {
            [] => return Partial,
            [b' ', after @ ..] if !method.is_empty() => (method, after),
            _ => return BAD,
        }
    };
    // The target, noting where its query starts on the way.
    let mut end = run_within_or(after, 0x21, 0x7e, b'?'); // VISIBLE, or '?'
    let query = (after.get(end) == Some(&b'?')).then_some(end);
    if query.is_some() {
        end += run_within(&after[end..], 0x21, 0x7e);
    }
    let (target, version) = after.split_at(end);
    let version = match version {
        [] => return Partial,
        [b' ', version @ ..] if !target.is_empty() => version,
        _ => return BAD,
    };
    if target.len() > MAX_URI {
        return Invalid(Status::UriTooLong);
    }
    let (minor, mut rest) = if version.starts_with(b"HTTP/1.1\r\n") {
        (1, &version[10..])
    } else {
        let Some(nl) = find_byte(version, b'\n') else {
            return Partial;
        };
        let line = &version[..nl];
        let minor = match line.strip_suffix(b"\r").unwrap_or(line) {
            b"HTTP/1.1" => 1,
            b"HTTP/1.0" => 0,
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                return Invalid(Status::VersionNotSupported)
            }
            _ => return BAD,
        };
        (minor, &version[nl + 1..])
    };
    let path = match (target.first(), query) {
        (Some(b'/'), Some(q)) => &target[..q],
        (Some(b'/'), None) => target,
        _ => match request_path(method, target) {
            Ok(path) => path,
            Err(status) => return Invalid(status),
        },
    };
    let mut req = Request {
        method,
        path,
        minor,
        content_length: 0,
        close: false,
        keep_alive_token: false,
    };
    let mut content_length = None;
    let mut hosts = 0;
    let mut transfer_encoding = false;
    loop {
        // A blank line ends the head; a line starting with white space is
        // obsolete line folding. (A field name starts above the space: one
        // test passes the common line.)
        match rest {
            [first, ..] if *first > b' ' => {}
            [] | [b'\r'] => return Partial,
            [b'\n', ..] => {
                rest = &rest[1..];
                break;
            }
            [b'\r', b'\n', ..] => {
                rest = &rest[2..];
                break;
            }
            _ => return BAD,
        }
        // field-name ":" OWS field-value OWS (the name is a token run).
        let (name, after) = rest.split_at(class_run(rest, TCHAR));
        let mut after = match after {
            [] => return Partial,
            [b':', after @ ..] if !name.is_empty() => after,
            _ => return BAD,
        };
        // Commonly one space, then the value.
        match after {
            [b' ', next, ..] if *next > b' ' => after = &after[1..],
            _ => {
                while let [b' ' | b'\t', more @ ..] = after {
                    after = more;
                }
            }
        }
        // Printable ASCII and spaces (the common value) at eight bytes a
        // step; tabs and obs-text through the table. The first other byte
        // must end the line.
        let mut len = run_within(after, 0x20, 0x7e);
        let (value, next) = loop {
            match &after[len..] {
                [b'\r', b'\n', next @ ..] | [b'\n', next @ ..] => break (&after[..len], next),
                [] | [b'\r'] => return Partial,
                // (At most once: the run through the table stops at neither.)
                [b, ..] if *b == b'\t' || *b >= 0x80 => len += class_run(&after[len..], FIELD),
                _ => return BAD,
            }
        };
        rest = next;
        // (Leading white space is already skipped.)
        let mut value = value;
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in value.split(|&b| b == b',').map(trim_ows) {
                    req.close |= option.eq_ignore_ascii_case(b"close");
                    req.keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let Some(n) = parse_length(value) else {
                    return BAD;
                };
                if content_length.is_some_and(|m| m != n) {
                    return BAD;
                }
                content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => transfer_encoding = true,
            _ => {}
        }
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
    if hosts > 1 || (minor == 1 && hosts == 0) {
        return BAD;
    }
    if transfer_encoding {
        // With Content-Length too it is a smuggling attempt (§6.3); in 1.0 it
        // is not allowed; otherwise it is a coding this server does not decode.
        return Invalid(if content_length.is_some() || minor == 0 {
            Status::BadRequest
        } else {
            Status::NotImplemented
        });
    }
    req.content_length = content_length.unwrap_or(0);
    Scan::Complete(buf.len() - rest.len(), req)
}

/// `1*DIGIT`, without overflow.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The path of a request target (origin-form, absolute-form, or `*` for
/// `OPTIONS`), without its query.
#[inline]
fn request_path<'a>(method: &[u8], target: &'a [u8]) -> Result<&'a [u8], Status> {
    let path = if target[0] == b'/' {
        target
    } else if target == b"*" && method == b"OPTIONS" {
        return Ok(target);
    } else {
        let lower = |n: usize| target.get(..n).map(|p| p.to_ascii_lowercase());
        let after_scheme = if lower(7).as_deref() == Some(b"http://") {
            &target[7..]
        } else if lower(8).as_deref() == Some(b"https://") {
            &target[8..]
        } else {
            return Err(Status::BadRequest);
        };
        match after_scheme.iter().position(|&b| b == b'/') {
            Some(slash) => &after_scheme[slash..],
            None => b"/",
        }
    };
    Ok(match find_byte(path, b'?') {
        Some(q) => &path[..q],
        None => path,
    })
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Formats Unix seconds as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = [0u8; 29];
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]); // 1970-01-01 was a Thursday
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(in_day / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(in_day / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(in_day % 60));
    out[25..].copy_from_slice(b" GMT");
    out
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar. Counts in 400-year eras of 146,097 days, with years
/// starting on 1 March so that the leap day is the last day of a year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719,468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    // Years of the era: every 4th year is long, except the 100th (but the
    // 400th is, which is the era's last day).
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 31 30 31 30 31 31 30 31 30 31 31 28/29, which the
    // line (153 * m + 2) / 5 reproduces.
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(1_709_251_199), b"Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(&http_date(4_107_542_400), b"Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn finds_bytes_like_memchr() {
        let mut line = b"GET /plaintext HTTP/1.1 \xff\x8a\x0b\x09 ".to_vec();
        for len in 0..line.len() {
            for nl in 0..=len {
                let mut s = line[..len].to_vec();
                if nl < len {
                    s[nl] = b'\n';
                    s.extend_from_slice(b"\n");
                }
                assert_eq!(find_byte(&s, b'\n'), memchr::memchr(b'\n', &s), "{s:?}");
                assert_eq!(find_byte(&s, 0xff), memchr::memchr(0xff, &s), "{s:?}");
            }
        }
        line.fill(b'\n');
        assert_eq!(find_byte(&line, b'\n'), Some(0));
    }

    #[test]
    fn ranges_run_like_the_table() {
        let visible = |s: &[u8]| class_run(s, VISIBLE);
        let printable = |s: &[u8]| {
            s.iter()
                .position(|&b| !(0x20..=0x7e).contains(&b))
                .unwrap_or(s.len())
        };
        for odd in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    let mut s = vec![b'a'; len];
                    s[at] = odd;
                    if at + 1 < len {
                        s[at + 1] = 0xff; // a carry just above must not matter
                    }
                    assert_eq!(run_within(&s, 0x21, 0x7e), visible(&s), "{s:?}");
                    assert_eq!(run_within(&s, 0x20, 0x7e), printable(&s), "{s:?}");
                    let visible_or_query =
                        visible(&s).min(s.iter().position(|&b| b == b'?').unwrap_or(s.len()));
                    assert_eq!(
                        run_within_or(&s, 0x21, 0x7e, b'?'),
                        visible_or_query,
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn head_end_resumes() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(head_end(head, 0), Ok(27));
        for cut in 0..27 {
            let resume = head_end(&head[..cut], 0).unwrap_err();
            assert_eq!(head_end(head, resume), Ok(27), "cut at {cut}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nx", 0), Ok(16));
    }

    #[test]
    fn parses_heads() {
        let r = parse_head(b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.method, b"GET");
        assert_eq!(r.path, b"/plaintext");
        assert_eq!(r.content_length, 5);
        assert!(!r.keep_alive());
        let r = parse_head(b"HEAD http://example.com HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.path, r.minor, r.keep_alive()), (&b"/"[..], 0, false));
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n\r\n",                                 // no Host
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",           // two
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                     // double space
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                     // space before colon
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",           // obs-fold
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",         // control byte
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",           // bare CR
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", // bad length
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            b"GET nope HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            b"GET ?x HTTP/1.1\r\nHost: h\r\n\r\n", // not a path
            b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", // CR CR LF
            b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", // space after the version
            b"GET / HTTP/1.1\r\n\rHost: h\r\n\r\n", // CR starting a field line
            b"GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n", // DEL in a value
            b"GET / HTTP/1.1\r\nHost: h\tx\x01\r\n\r\n", // control after a tab
            b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", // tab as separator
            b"GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n", // obs-text in the target
            b"GET / HTTP/1.1\r\n: h\r\n\r\n",      // empty field name
        ];
        for head in bad {
            assert_eq!(
                parse_head(head),
                Err(Status::BadRequest),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // The one-pass form agrees on every complete head and declines the
        // rest (incomplete or invalid), leaving them to head_end + parse_head.
        let good: &[&[u8]] = &[
            b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\nContent-Length: 5\r\n\r\nBODY",
            b"HEAD http://example.com HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\nGET",
        ];
        for head in good.iter().chain(bad) {
            let whole = head_end(head, 0)
                .ok()
                .map(|len| (len, parse_head(&head[..len])));
            let quick = parse_complete_head(head);
            match whole {
                Some((len, Ok(req))) => assert_eq!(quick, Some((len, req))),
                _ => assert_eq!(quick, None, "{:?}", String::from_utf8_lossy(head)),
            }
            for cut in 0..head.len() {
                if head_end(&head[..cut], 0).is_err() {
                    assert_eq!(parse_complete_head(&head[..cut]), None, "cut at {cut}");
                }
            }
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Err(Status::VersionNotSupported)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Status::NotImplemented)
        );
    }

    #[test]
    fn one_pass_scan_reads_every_part() {
        // (head, method, path, minor, Content-Length, keep-alive)
        type Case = (&'static [u8], &'static str, &'static str, u8, u64, bool);
        let cases: &[Case] = &[
            // The query ends the path, in origin-form and absolute-form; a
            // second `?` belongs to the query.
            (
                b"GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n",
                "GET",
                "/a",
                1,
                0,
                true,
            ),
            (
                b"GET /? HTTP/1.1\r\nHost: h\r\n\r\n",
                "GET",
                "/",
                1,
                0,
                true,
            ),
            (
                b"PUT http://h/x/y?z HTTP/1.1\r\nhost: h\r\ncontent-length:\t7 \t\r\n\r\n",
                "PUT",
                "/x/y",
                1,
                7,
                true,
            ),
            (
                b"OPTIONS * HTTP/1.1\nHost: h\n\n",
                "OPTIONS",
                "*",
                1,
                0,
                true,
            ),
            // HTTP/1.0 (the slow version path), bare LF line ends, tabs and
            // obs-text in values, names of the dispatched lengths that are
            // not the dispatched names.
            (
                b"GET / HTTP/1.0\nX: a\tb\xff\nConnection:keep-alive\r\nHosx: 1\n\n",
                "GET",
                "/",
                0,
                0,
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnectiom: close\r\nContent-Lengtx: z\r\n\r\n",
                "GET",
                "/",
                1,
                0,
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHOST: h\r\nCONNECTION: Close\r\n\r\n",
                "GET",
                "/",
                1,
                0,
                false,
            ),
        ];
        for &(head, method, path, minor, len, keep) in cases {
            let req = parse_head(head).unwrap_or_else(|s| panic!("{s:?}: {head:?}"));
            assert_eq!(
                (
                    req.method,
                    req.path,
                    req.minor,
                    req.content_length,
                    req.keep_alive()
                ),
                (method.as_bytes(), path.as_bytes(), minor, len, keep),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // Every proper prefix of a valid head is a partial one.
        let good: &[&[u8]] = &[
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            b"POST http://h/x?y HTTP/1.0\nContent-Length: 3\nX: \t\xfe\t\n\n",
        ];
        for head in good {
            assert!(matches!(scan_head(head), Scan::Complete(n, _) if n == head.len()));
            for cut in 0..head.len() {
                assert_eq!(scan_head(&head[..cut]), Scan::Partial, "cut at {cut}");
            }
        }
    }
}
