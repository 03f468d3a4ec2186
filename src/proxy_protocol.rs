//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
//! balancer sends first on each connection to say who the client really is.
//!
//! Owns only the wire format, sans-I/O: [`parse`] looks at the bytes a
//! connection has sent so far and says "need more", "here is the header and
//! its length", or why the bytes are not a valid header. It never reads a
//! socket, never allocates beyond the header it returns and never panics on
//! any input (it is fuzzed: `fuzz/fuzz_targets/proxy_header.rs`). The engine
//! uses it on listeners added with
//! [`EngineBuilder::listen_proxied`](crate::EngineBuilder::listen_proxied).
//!
//! Supported: v1 (`TCP4`, `TCP6`, `UNKNOWN`), v2 (`LOCAL` and `PROXY`
//! commands; `UNSPEC`, `INET`, `INET6` and `UNIX` families, stream or
//! datagram), with v2's TLVs kept and readable ([`ProxyHeader::tlvs`]). A
//! `CRC32C` TLV is kept, not verified.
//!
//! ```
//! use ringloop::proxy_protocol::{parse, ProxyAddresses};
//!
//! let bytes = b"PROXY TCP4 192.0.2.1 198.51.100.7 51000 443\r\nGET / HTTP/1.1\r\n";
//! let (header, used) = parse(bytes)?.expect("a whole header");
//! assert_eq!(header.source().unwrap().to_string(), "192.0.2.1:51000");
//! assert_eq!(&bytes[used..], b"GET / HTTP/1.1\r\n"); // the client's own bytes
//! assert!(parse(b"PROXY TCP4 192.0")?.is_none()); // not all there yet
//! assert!(parse(b"GET / HTTP/1.1\r\n").is_err()); // not a PROXY header
//! # Ok::<(), ringloop::proxy_protocol::ProxyHeaderError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::SockAddr;

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, `\r\n` included (from the specification).
pub const V1_MAX_LEN: usize = 107;
/// The longest v2 header [`parse`] accepts (16 fixed bytes plus addresses
/// and TLVs); a longer one is [`ProxyHeaderError::TooLong`].
pub const V2_MAX_LEN: usize = 8192;

const V1_PREFIX: &[u8] = b"PROXY ";

/// Well-known v2 TLV types (see [`ProxyHeader::tlv`]).
pub mod tlv {
    /// Application-Layer Protocol Negotiation (the client's ALPN).
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (SNI).
    pub const AUTHORITY: u8 = 0x02;
    /// A CRC32c of the header (kept, not verified).
    pub const CRC32C: u8 = 0x03;
    /// Padding, to be ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection id the balancer generated.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS details (client certificate, version, cipher, …).
    pub const SSL: u8 = 0x20;
    /// The network namespace.
    pub const NETNS: u8 = 0x30;
}

/// What the balancer asks of the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyCommand {
    /// The connection was made by the balancer itself (a health check): use
    /// the socket's own addresses.
    Local,
    /// The connection is relayed on behalf of the client the header names.
    Proxy,
}

/// The addresses a header carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyAddresses {
    /// None: v1 `UNKNOWN`, v2 `UNSPEC`, or a `LOCAL` command.
    Unknown,
    /// IPv4 or IPv6: the client (`source`) and the address it connected to.
    Inet {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the balancer's frontend).
        destination: SocketAddr,
    },
    /// Unix-domain socket paths (v2 only), NUL padding removed.
    Unix {
        /// The client's path (often empty).
        source: Vec<u8>,
        /// The path the client connected to.
        destination: Vec<u8>,
    },
}

/// The transport the relayed connection used (v2; v1 is always a stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyTransport {
    /// Not said (`UNSPEC`, `LOCAL` or v1 `UNKNOWN`).
    Unspecified,
    /// A stream (TCP, or a Unix stream socket).
    Stream,
    /// Datagrams (UDP, or a Unix datagram socket).
    Datagram,
}

/// A parsed PROXY protocol header.
///
/// ```
/// use ringloop::proxy_protocol::{parse, tlv, ProxyCommand, V2_SIGNATURE};
///
/// let mut bytes = V2_SIGNATURE.to_vec();
/// bytes.extend_from_slice(&[0x21, 0x11, 0, 12 + 7]); // v2 PROXY, TCP over IPv4
/// bytes.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x01, 0xbb]);
/// bytes.extend_from_slice(&[tlv::AUTHORITY, 0, 4]);
/// bytes.extend_from_slice(b"host");
/// let (header, used) = parse(&bytes)?.unwrap();
/// assert_eq!(used, bytes.len());
/// assert_eq!(header.version, 2);
/// assert_eq!(header.command, ProxyCommand::Proxy);
/// assert_eq!(header.source().unwrap().to_string(), "10.0.0.1:8080");
/// assert_eq!(header.tlv(tlv::AUTHORITY), Some(&b"host"[..]));
/// # Ok::<(), ringloop::proxy_protocol::ProxyHeaderError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProxyHeader {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// `LOCAL` or `PROXY` (v1 is always `PROXY`).
    pub command: ProxyCommand,
    /// Stream or datagram, when the header says.
    pub transport: ProxyTransport,
    /// The client's and the frontend's addresses.
    pub addresses: ProxyAddresses,
    /// The TLV area, validated (every TLV fits exactly).
    tlv_bytes: Vec<u8>,
}

impl ProxyHeader {
    /// The client's address, if the header carries an IP one.
    pub fn source(&self) -> Option<SocketAddr> {
        match &self.addresses {
            ProxyAddresses::Inet { source, .. } => Some(*source),
            _ => None,
        }
    }

    /// The address the client connected to, if the header carries an IP one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match &self.addresses {
            ProxyAddresses::Inet { destination, .. } => Some(*destination),
            _ => None,
        }
    }

    /// The TLVs, in order (v2 only; empty for v1).
    pub fn tlvs(&self) -> Tlvs<'_> {
        Tlvs {
            rest: &self.tlv_bytes,
        }
    }

    /// The value of the first TLV of type `kind` (see [`tlv`]).
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs().find(|t| t.kind == kind).map(|t| t.value)
    }
}

/// One type-length-value entry of a v2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Its type (see [`tlv`]).
    pub kind: u8,
    /// Its value.
    pub value: &'a [u8],
}

/// The TLVs of a header ([`ProxyHeader::tlvs`]).
#[derive(Clone, Debug)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Tlv<'a>;
    fn next(&mut self) -> Option<Tlv<'a>> {
        let (tlv, rest) = split_tlv(self.rest).ok()??;
        self.rest = rest;
        Some(tlv)
    }
}

/// Splits the first TLV off `bytes`: `Ok(None)` when empty, an error when
/// it does not fit.
fn split_tlv(bytes: &[u8]) -> Result<Option<(Tlv<'_>, &[u8])>, ProxyHeaderError> {
    let [kind, hi, lo, rest @ ..] = bytes else {
        return if bytes.is_empty() {
            Ok(None)
        } else {
            Err(ProxyHeaderError::Malformed("a truncated TLV"))
        };
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if rest.len() < len {
        return Err(ProxyHeaderError::Malformed("a TLV longer than the header"));
    }
    let (value, rest) = rest.split_at(len);
    Ok(Some((Tlv { kind: *kind, value }, rest)))
}

/// Why bytes are not a valid PROXY header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection did not start with a PROXY header at all.
    Missing,
    /// The header is malformed; says what is wrong.
    Malformed(&'static str),
    /// A v2 header of an unknown version.
    UnsupportedVersion(u8),
    /// The header is longer than its limit ([`V1_MAX_LEN`], [`V2_MAX_LEN`]).
    TooLong {
        /// The limit it passed.
        limit: usize,
    },
    /// The peer closed the connection after this many bytes of a header.
    Truncated {
        /// Bytes received.
        received: usize,
    },
    /// No complete header arrived within the timeout.
    Timeout,
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => {
                f.write_str("no PROXY protocol header (the connection starts with something else)")
            }
            Self::Malformed(what) => write!(f, "malformed PROXY protocol header: {what}"),
            Self::UnsupportedVersion(v) => write!(f, "PROXY protocol version {v} is not supported"),
            Self::TooLong { limit } => {
                write!(f, "PROXY protocol header longer than {limit} bytes")
            }
            Self::Truncated { received } => write!(
                f,
                "the peer closed the connection after {received} bytes of a PROXY protocol header"
            ),
            Self::Timeout => f.write_str("no complete PROXY protocol header within the timeout"),
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Parses the header at the start of `buf` (everything the connection has
/// sent so far).
///
/// Returns `Ok(None)` while the bytes so far are a valid beginning of a
/// header, `Ok(Some((header, n)))` once it is whole (`buf[n..]` is the
/// client's own data), or the reason the bytes can never become one. Gives
/// the same answer however the bytes were split across reads.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyHeaderError::Missing),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyHeaderError::Missing);
    }
    // Checked in an order that gives the same answer for every prefix: bad
    // bytes first, then the length, then the line's end.
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let lf = window.iter().position(|&b| b == b'\n');
    let scanned = &window[..lf.unwrap_or(window.len())];
    if scanned
        .iter()
        .any(|&b| !(b == b'\r' || (b' '..=b'~').contains(&b)))
    {
        return Err(ProxyHeaderError::Malformed(
            "a non-printable byte in a v1 header",
        ));
    }
    let Some(lf) = lf else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyHeaderError::TooLong { limit: V1_MAX_LEN });
        }
        return Ok(None);
    };
    if lf < V1_PREFIX.len() || buf[lf - 1] != b'\r' {
        return Err(ProxyHeaderError::Malformed(
            "a v1 header must end with \\r\\n",
        ));
    }
    let line = &buf[V1_PREFIX.len()..lf - 1];
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.bytes().all(|b| (b' '..=b'~').contains(&b)))
        .ok_or(ProxyHeaderError::Malformed(
            "a non-printable byte in a v1 header",
        ))?;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or("");
    let v1 = |addresses, transport| ProxyHeader {
        version: 1,
        command: ProxyCommand::Proxy,
        transport,
        addresses,
        tlv_bytes: Vec::new(),
    };
    if family == "UNKNOWN" {
        // Anything may follow UNKNOWN; it is ignored.
        return Ok(Some((
            v1(ProxyAddresses::Unknown, ProxyTransport::Unspecified),
            lf + 1,
        )));
    }
    let want_v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "a v1 protocol other than TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyHeaderError::Malformed(
            "a v1 header needs exactly: source, destination, source port, destination port",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        let ip = if want_v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| ProxyHeaderError::Malformed("a v1 address that does not match its protocol"))
    };
    let source = SocketAddr::new(ip(src)?, v1_port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, v1_port(dport)?);
    Ok(Some((
        v1(
            ProxyAddresses::Inet {
                source,
                destination,
            },
            ProxyTransport::Stream,
        ),
        lf + 1,
    )))
}

/// A v1 port: 1 to 5 decimal digits, no leading zero, at most 65535.
fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u16>().ok())
        .flatten()
        .ok_or(ProxyHeaderError::Malformed(
            "a v1 port that is not a number from 0 to 65535",
        ))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyHeaderError::Missing);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::UnsupportedVersion(ver_cmd >> 4));
    }
    let command = match ver_cmd & 0x0f {
        0 => ProxyCommand::Local,
        1 => ProxyCommand::Proxy,
        _ => return Err(ProxyHeaderError::Malformed("an unknown v2 command")),
    };
    let Some(&fam) = buf.get(13) else {
        return Ok(None);
    };
    let (family, protocol) = (fam >> 4, fam & 0x0f);
    if family > 3 || protocol > 2 {
        return Err(ProxyHeaderError::Malformed(
            "an unknown v2 address family or protocol",
        ));
    }
    let [Some(&hi), Some(&lo)] = [buf.get(14), buf.get(15)] else {
        return Ok(None);
    };
    let total = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if total > V2_MAX_LEN {
        return Err(ProxyHeaderError::TooLong { limit: V2_MAX_LEN });
    }
    let Some(payload) = buf.get(16..total) else {
        return Ok(None);
    };
    let transport = match (command, protocol) {
        (ProxyCommand::Local, _) | (_, 0) => ProxyTransport::Unspecified,
        (_, 1) => ProxyTransport::Stream,
        _ => ProxyTransport::Datagram,
    };
    let mut header = ProxyHeader {
        version: 2,
        command,
        transport,
        addresses: ProxyAddresses::Unknown,
        tlv_bytes: Vec::new(),
    };
    if command == ProxyCommand::Local || family == 0 {
        // The receiver uses the socket's own addresses and discards the rest.
        return Ok(Some((header, total)));
    }
    let address_len = [0, 12, 36, 216][usize::from(family)];
    if payload.len() < address_len {
        return Err(ProxyHeaderError::Malformed(
            "a v2 address block shorter than its family needs",
        ));
    }
    let (addrs, tlvs) = payload.split_at(address_len);
    header.addresses = match family {
        1 => {
            let ip = |i: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    addrs[i],
                    addrs[i + 1],
                    addrs[i + 2],
                    addrs[i + 3],
                ))
            };
            let port = |i: usize| u16::from_be_bytes([addrs[i], addrs[i + 1]]);
            ProxyAddresses::Inet {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        2 => {
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addrs[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |i: usize| u16::from_be_bytes([addrs[i], addrs[i + 1]]);
            ProxyAddresses::Inet {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        _ => {
            let path = |p: &[u8]| p[..p.iter().position(|&b| b == 0).unwrap_or(p.len())].to_vec();
            ProxyAddresses::Unix {
                source: path(&addrs[..108]),
                destination: path(&addrs[108..]),
            }
        }
    };
    let mut rest = tlvs;
    while let Some((_, after)) = split_tlv(rest)? {
        rest = after;
    }
    header.tlv_bytes = tlvs.to_vec();
    Ok(Some((header, total)))
}

/// A proxied connection's PROXY protocol state.
pub(crate) enum ProxyState {
    /// Accepted; the header is not whole yet. Not opened.
    Awaiting {
        /// The bytes received so far.
        received: Vec<u8>,
        /// When the header is due (loop clock, ms).
        deadline_ms: u64,
    },
    /// The header arrived; the connection is open.
    Received {
        header: ProxyHeader,
        /// The socket's own peer: the balancer.
        balancer: SockAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in two pieces split at every point: each prefix must be
    /// "need more" or the final answer, and the whole must give `want`.
    fn at_every_split(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
        let whole = parse(bytes);
        for cut in 0..bytes.len() {
            match parse(&bytes[..cut]) {
                Ok(None) => {}
                Ok(Some(done)) => assert_eq!(Ok(Some(done)), whole, "cut at {cut}"),
                Err(e) => assert_eq!(Err(e), whole, "cut at {cut} fails differently"),
            }
        }
        whole
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6_with_data_after() {
        let bytes = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nhello";
        let (h, n) = at_every_split(bytes).unwrap().unwrap();
        assert_eq!(&bytes[n..], b"hello");
        assert_eq!(h.version, 1);
        assert_eq!(h.source(), Some("192.168.0.1:56324".parse().unwrap()));
        assert_eq!(h.destination(), Some("192.168.0.11:443".parse().unwrap()));
        let bytes = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
        let (h, n) = at_every_split(bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(h.source(), Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(h.tlvs().count(), 0);
    }

    #[test]
    fn v1_unknown() {
        for bytes in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nx",
        ] {
            let (h, n) = at_every_split(bytes).unwrap().unwrap();
            assert_eq!(h.addresses, ProxyAddresses::Unknown);
            assert_eq!(bytes[n..].len(), usize::from(bytes.ends_with(b"x")));
        }
    }

    #[test]
    fn v1_bad_headers() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n",
            b"PROXY\r\n",
            b"PROXX TCP4",
            b"PROXY \x01\n", // found by the fuzzer: prefixes must agree
            b"GET / HTTP/1.1\r\n",
        ];
        for b in bad {
            assert!(
                at_every_split(b).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 200]].concat();
        assert_eq!(
            at_every_split(&long),
            Err(ProxyHeaderError::TooLong { limit: V1_MAX_LEN })
        );
        assert_eq!(parse(b"GET /"), Err(ProxyHeaderError::Missing));
    }

    #[test]
    fn v2_inet_inet6_unix_local_with_tlvs() {
        let mut body = vec![127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0, 80];
        body.extend_from_slice(&[tlv::ALPN, 0, 2, b'h', b'2', tlv::NOOP, 0, 0]);
        let mut bytes = v2(0x21, 0x11, &body);
        bytes.extend_from_slice(b"after");
        let (h, n) = at_every_split(&bytes).unwrap().unwrap();
        assert_eq!(&bytes[n..], b"after");
        assert_eq!(h.source(), Some("127.0.0.1:12345".parse().unwrap()));
        assert_eq!(h.transport, ProxyTransport::Stream);
        let tlvs: Vec<_> = h.tlvs().collect();
        assert_eq!(tlvs.len(), 2);
        assert_eq!(h.tlv(tlv::ALPN), Some(&b"h2"[..]));
        assert_eq!(h.tlv(tlv::NOOP), Some(&b""[..]));

        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0xff, 0xff, 0, 1]);
        let (h, _) = at_every_split(&v2(0x21, 0x22, &body)).unwrap().unwrap();
        assert_eq!(h.source(), Some("[2001:db8::7]:65535".parse().unwrap()));
        assert_eq!(h.transport, ProxyTransport::Datagram);

        let mut body = vec![0u8; 216];
        body[..4].copy_from_slice(b"/src");
        body[108..112].copy_from_slice(b"/dst");
        let (h, _) = at_every_split(&v2(0x21, 0x31, &body)).unwrap().unwrap();
        assert_eq!(
            h.addresses,
            ProxyAddresses::Unix {
                source: b"/src".to_vec(),
                destination: b"/dst".to_vec()
            }
        );

        // LOCAL: whatever follows is discarded, addresses are unknown.
        let (h, n) = at_every_split(&v2(0x20, 0x11, &[1, 2, 3]))
            .unwrap()
            .unwrap();
        assert_eq!((h.command, n), (ProxyCommand::Local, 19));
        assert_eq!(h.addresses, ProxyAddresses::Unknown);
        let (h, _) = at_every_split(&v2(0x20, 0x00, &[])).unwrap().unwrap();
        assert_eq!(h.command, ProxyCommand::Local);
    }

    #[test]
    fn v2_bad_headers() {
        let mut sig = V2_SIGNATURE.to_vec();
        sig[11] = b'X';
        assert_eq!(at_every_split(&sig), Err(ProxyHeaderError::Missing));
        assert_eq!(
            at_every_split(&v2(0x11, 0x11, &[0; 12])),
            Err(ProxyHeaderError::UnsupportedVersion(1))
        );
        for (vc, fam, body) in [
            (0x22, 0x11, vec![0; 12]),                              // unknown command
            (0x21, 0x41, vec![0; 12]),                              // unknown family
            (0x21, 0x13, vec![0; 12]),                              // unknown protocol
            (0x21, 0x11, vec![0; 11]),                              // short IPv4 block
            (0x21, 0x21, vec![0; 35]),                              // short IPv6 block
            (0x21, 0x31, vec![0; 215]),                             // short Unix block
            (0x21, 0x11, [vec![0; 12], vec![1, 0]].concat()),       // truncated TLV
            (0x21, 0x11, [vec![0; 12], vec![1, 0, 5, 1]].concat()), // TLV overrun
        ] {
            assert!(
                matches!(
                    at_every_split(&v2(vc, fam, &body)),
                    Err(ProxyHeaderError::Malformed(_))
                ),
                "{vc:#x} {fam:#x} {}",
                body.len()
            );
        }
        assert_eq!(
            at_every_split(&v2(0x21, 0x11, &vec![0; V2_MAX_LEN])),
            Err(ProxyHeaderError::TooLong { limit: V2_MAX_LEN })
        );
    }
}
