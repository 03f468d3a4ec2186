//! RESP2 requests (arrays of bulk strings, and inline commands) and replies.
//!
//! The parser never copies a RESP argument: it records each one as a byte
//! range of the connection's buffered input ([`Conn::peek`]). It is
//! resumable: when a command is incomplete it keeps the ranges parsed so far
//! and where to continue, and since the server consumes input only a whole
//! command at a time, those ranges stay valid when more bytes arrive. So a
//! command split over many reads is parsed once, not once per read, and a
//! large bulk string costs O(1) per read while it trickles in.
//!
//! Every length is checked against [`Limits`] as soon as its header line is
//! complete: a bulk string announcing more than `max_bulk` bytes, or an array
//! announcing more than `max_args` elements, is refused before a single
//! byte of it is buffered, and nothing is ever allocated from an announced
//! length (the argument list grows as arguments actually arrive).
//!
//! [`Conn::peek`]: ringloop::Conn::peek

use std::ops::Range;

use super::store::parse_i64;

/// Protocol limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest bulk string (Redis' `proto-max-bulk-len`; 128 MiB by default
    /// here, a quarter of Redis' 512 MiB, so that what is advertised can be
    /// received within the engine's buffer budget).
    pub max_bulk: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
    /// Most bytes one pending command may buffer (Redis' query buffer limit).
    pub max_command: usize,
    /// Most reply bytes a connection may have waiting for its peer to read;
    /// past it the connection is closed (Redis' client output buffer
    /// limit), so a client that pipelines without reading cannot make the
    /// server buffer without end.
    pub max_output: usize,
    /// Most clients connected at once (Redis' `maxclients`); past it a new
    /// client gets `-ERR max number of clients reached` and is closed.
    pub max_clients: usize,
}

impl Limits {
    /// Limits for bulk strings of up to `max_bulk` bytes: a command may
    /// hold one such bulk plus 1 MiB of other arguments, and twice that may
    /// wait unread as replies.
    pub fn for_max_bulk(max_bulk: usize) -> Limits {
        let max_command = max_bulk.saturating_add(1 << 20);
        Limits {
            max_bulk,
            max_args: 1 << 20,
            max_inline: 64 << 10,
            max_command,
            max_output: max_command.saturating_mul(2),
            max_clients: 10_000,
        }
    }
}

impl Default for Limits {
    /// [`Limits::for_max_bulk`] of 128 MiB, 10,000 clients.
    fn default() -> Self {
        Limits::for_max_bulk(128 << 20)
    }
}

/// Longest `*<count>` or `$<length>` number, in characters.
const MAX_NUMBER: usize = 20;

/// What the parser found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete command of `len` bytes; its arguments are
    /// [`Parser::args`], ranges of the buffer or (if `inline`) of the
    /// scratch buffer given to [`Parser::parse`].
    Command {
        /// Bytes of input it took.
        len: usize,
        /// The arguments index the scratch buffer rather than the input.
        inline: bool,
    },
    /// `len` bytes holding no command (an empty line, `*0`): consume them.
    Skip(usize),
    /// Not a whole command yet.
    Incomplete,
    /// Unrecoverable framing: reply with this error and close.
    Error(String),
}

/// The parser's state for one connection: the command being read.
#[derive(Debug, Default)]
pub struct Parser {
    args: Vec<Range<usize>>,
    /// Arguments the current array announced (0: between commands).
    expected: usize,
    /// Where the next bulk header starts.
    pos: usize,
}

enum Number {
    Incomplete,
    Invalid,
    TooLong,
    /// The number and where its line ends (after `\r\n`).
    Ok(i64, usize),
}

/// Reads a `<number>\r\n` starting at `from`.
fn number(buf: &[u8], from: usize) -> Number {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_NUMBER + 1)];
    let Some(i) = window.iter().position(|&b| b == b'\r') else {
        return if window.len() > MAX_NUMBER {
            Number::TooLong
        } else {
            Number::Incomplete
        };
    };
    let cr = from + i;
    match buf.get(cr + 1) {
        None => Number::Incomplete,
        Some(b'\n') => match parse_i64(&buf[from..cr]) {
            Some(n) => Number::Ok(n, cr + 2),
            None => Number::Invalid,
        },
        Some(_) => Number::Invalid,
    }
}

fn protocol_error(what: &str) -> Frame {
    Frame::Error(format!("ERR Protocol error: {what}"))
}

impl Parser {
    /// The arguments of the command last returned by [`parse`](Self::parse).
    pub fn args(&self) -> &[Range<usize>] {
        &self.args
    }

    /// Parses the command at the start of `buf` (the bytes not consumed yet),
    /// continuing where the last call stopped if it returned
    /// [`Frame::Incomplete`]. Inline arguments are unquoted into `scratch`.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits, scratch: &mut Vec<u8>) -> Frame {
        if self.expected == 0 {
            match buf.first() {
                None => return Frame::Incomplete,
                Some(b'*') => {}
                Some(_) => return self.inline(buf, limits, scratch),
            }
            match number(buf, 1) {
                Number::Incomplete => return Frame::Incomplete,
                Number::TooLong => return protocol_error("too big mbulk count string"),
                Number::Invalid => return protocol_error("invalid multibulk length"),
                Number::Ok(n, end) if n <= 0 => return Frame::Skip(end),
                Number::Ok(n, _) if n as u64 > limits.max_args as u64 => {
                    return protocol_error("invalid multibulk length")
                }
                Number::Ok(n, end) => {
                    self.expected = n as usize;
                    self.pos = end;
                    self.args.clear();
                }
            }
        }
        while self.args.len() < self.expected {
            let at = self.pos;
            match buf.get(at) {
                None => return self.incomplete(buf, limits),
                Some(b'$') => {}
                Some(&c) => {
                    let shown = if c.is_ascii_graphic() || c == b' ' {
                        (c as char).to_string()
                    } else {
                        format!("\\x{c:02x}")
                    };
                    return protocol_error(&format!("expected '$', got '{shown}'"));
                }
            }
            let (len, start) = match number(buf, at + 1) {
                Number::Incomplete => return self.incomplete(buf, limits),
                Number::TooLong => return protocol_error("too big bulk count string"),
                Number::Invalid => return protocol_error("invalid bulk length"),
                Number::Ok(n, _) if n < 0 || n as u64 > limits.max_bulk as u64 => {
                    // Refused on the header alone: nothing of it is buffered.
                    return protocol_error("invalid bulk length");
                }
                Number::Ok(n, end) => (n as usize, end),
            };
            let end = start + len;
            if buf.len() < end + 2 {
                return self.incomplete(buf, limits);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return protocol_error("expected CRLF after bulk data");
            }
            self.args.push(start..end);
            self.pos = end + 2;
        }
        self.expected = 0;
        Frame::Command {
            len: self.pos,
            inline: false,
        }
    }

    fn incomplete(&self, buf: &[u8], limits: &Limits) -> Frame {
        if buf.len() > limits.max_command {
            protocol_error("command exceeds the query buffer limit")
        } else {
            Frame::Incomplete
        }
    }

    /// An inline command: one line of space-separated, optionally quoted
    /// arguments.
    fn inline(&mut self, buf: &[u8], limits: &Limits, scratch: &mut Vec<u8>) -> Frame {
        let window = &buf[..buf.len().min(limits.max_inline)];
        let Some(newline) = window.iter().position(|&b| b == b'\n') else {
            return if buf.len() >= limits.max_inline {
                protocol_error("too big inline request")
            } else {
                Frame::Incomplete
            };
        };
        let line = &buf[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        scratch.clear();
        self.args.clear();
        if split_inline(line, scratch, &mut self.args).is_err() {
            return protocol_error("unbalanced quotes in request");
        }
        if self.args.is_empty() {
            return Frame::Skip(newline + 1);
        }
        Frame::Command {
            len: newline + 1,
            inline: true,
        }
    }
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline command line as `redis-cli` quotes it: arguments are
/// separated by whitespace; `"..."` understands `\n \r \t \b \a \xHH` and
/// `\<char>`, `'...'` only `\'`; a closing quote must end the argument.
/// Appends each argument to `out` and its range to `args`.
pub fn split_inline(
    line: &[u8],
    out: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), ()> {
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&first) = line.get(i) else {
            return Ok(());
        };
        let start = out.len();
        match first {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        None | Some([]) => return Err(()),
                        Some([b'\\', b'x', h, l, ..])
                            if hex_value(*h).is_some() && hex_value(*l).is_some() =>
                        {
                            out.push(hex_value(*h).unwrap_or(0) * 16 + hex_value(*l).unwrap_or(0));
                            i += 4;
                        }
                        Some([b'\\', c, ..]) => {
                            out.push(match c {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => *other,
                            });
                            i += 2;
                        }
                        Some([b'"', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        None | Some([]) => return Err(()),
                        Some([b'\\', b'\'', ..]) => {
                            out.push(b'\'');
                            i += 2;
                        }
                        Some([b'\'', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while let Some(&c) = line.get(i).filter(|c| !c.is_ascii_whitespace()) {
                    out.push(c);
                    i += 1;
                }
            }
        }
        // A closing quote must be followed by a space or the end.
        if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
            return Err(());
        }
        args.push(start..out.len());
    }
}

// ----- replies -----

/// `+OK`-style status reply.
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-ERR ...` reply; any CR or LF in `msg` becomes a space.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `:<n>` reply.
pub fn int(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    super::store::push_i64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `$<len>` bulk reply.
pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    super::store::push_i64(out, data.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The nil bulk reply.
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// A bulk reply or nil.
pub fn bulk_or_nil(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(d) => bulk(out, d),
        None => nil(out),
    }
}

/// `*<n>` array header.
pub fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    super::store::push_i64(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod unit {
    use super::*;

    fn args_of(buf: &[u8], base: &[u8], p: &Parser) -> Vec<Vec<u8>> {
        let _ = buf;
        p.args().iter().map(|r| base[r.clone()].to_vec()).collect()
    }

    #[test]
    fn resp_resumes_at_every_split() {
        let cmd = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let limits = Limits::default();
        for cut in 0..cmd.len() {
            let mut p = Parser::default();
            let mut scratch = Vec::new();
            assert_eq!(
                p.parse(&cmd[..cut], &limits, &mut scratch),
                Frame::Incomplete,
                "cut {cut}"
            );
            assert_eq!(
                p.parse(cmd, &limits, &mut scratch),
                Frame::Command {
                    len: cmd.len(),
                    inline: false
                }
            );
            assert_eq!(
                args_of(cmd, cmd, &p),
                [b"SET".to_vec(), b"key".to_vec(), b"value".to_vec()]
            );
        }
    }

    #[test]
    fn limits_are_checked_on_headers() {
        let limits = Limits {
            max_bulk: 10,
            max_args: 4,
            ..Limits::default()
        };
        let mut s = Vec::new();
        let err = |f: Frame| match f {
            Frame::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert!(
            err(Parser::default().parse(b"*2\r\n$11\r\n", &limits, &mut s))
                .contains("invalid bulk length")
        );
        assert!(err(Parser::default().parse(b"*5\r\n", &limits, &mut s))
            .contains("invalid multibulk length"));
        assert!(
            err(Parser::default().parse(b"*1\r\n$-1\r\n", &limits, &mut s))
                .contains("invalid bulk length")
        );
        assert!(
            err(Parser::default().parse(b"*1\r\n+x\r\n", &limits, &mut s))
                .contains("expected '$', got '+'")
        );
        assert!(err(Parser::default().parse(b"*x\r\n", &limits, &mut s))
            .contains("invalid multibulk length"));
        assert!(
            err(Parser::default().parse(b"*1111111111111111111111111", &limits, &mut s))
                .contains("too big mbulk count")
        );
        assert!(
            err(Parser::default().parse(b"*1\r\n$1\r\nabc", &limits, &mut s))
                .contains("expected CRLF")
        );
        assert_eq!(
            Parser::default().parse(b"*0\r\n*-1\r\n", &limits, &mut s),
            Frame::Skip(4)
        );
    }

    #[test]
    fn inline_quoting() {
        let mut out = Vec::new();
        let mut args = Vec::new();
        split_inline(br#"set  "a b\x41\n" 'it\'s' plain"#, &mut out, &mut args).unwrap();
        let got: Vec<&[u8]> = args.iter().map(|r| &out[r.clone()]).collect();
        assert_eq!(got, [&b"set"[..], b"a bA\n", b"it's", b"plain"]);
        for bad in [&br#"get "abc"#[..], b"get 'abc", br#"get "a"b"#] {
            assert!(split_inline(bad, &mut out, &mut args).is_err());
        }
    }
}
