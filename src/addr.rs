//! Addresses: [`SockAddr`] (an IP or Unix-domain socket address),
//! [`Transport`], and [`ListenAddr`], the URL form users write
//! (`tcp://127.0.0.1:9000`, `unix:///run/app.sock`).
//!
//! Owns the URL syntax and its validation: every malformed address becomes a
//! typed [`Error`] that names the address and says what is wrong. It must
//! never touch the network or the file system: no DNS (only IP literals and
//! `localhost` are accepted), no socket calls (those live in `sys`), and no
//! checks that a path exists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Result};

/// The longest Unix socket path the kernel takes: `sun_path` is 108 bytes,
/// one of which is the terminating NUL.
const UNIX_PATH_MAX: usize = 107;

/// A socket address, IP or Unix-domain.
///
/// ```
/// use ringloop::SockAddr;
///
/// let ip = SockAddr::Inet("127.0.0.1:9000".parse().unwrap());
/// assert_eq!(ip.to_string(), "127.0.0.1:9000");
///
/// let unix = SockAddr::Unix(Some("/tmp/x.sock".into()));
/// assert_eq!(unix.to_string(), "/tmp/x.sock");
///
/// // A connecting Unix socket usually has no name.
/// assert_eq!(SockAddr::Unix(None).to_string(), "(unnamed)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockAddr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain socket: its path, or `None` for an unnamed socket.
    Unix(Option<PathBuf>),
}

impl SockAddr {
    /// The IP address and port, if this is an IP address.
    ///
    /// ```
    /// use ringloop::SockAddr;
    ///
    /// let addr = SockAddr::Inet("[::1]:80".parse().unwrap());
    /// assert_eq!(addr.as_inet().map(|a| a.port()), Some(80));
    /// assert_eq!(SockAddr::Unix(None).as_inet(), None);
    /// ```
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SockAddr::Inet(addr) => Some(*addr),
            SockAddr::Unix(_) => None,
        }
    }

    /// The path, if this is a named Unix-domain socket.
    ///
    /// ```
    /// use ringloop::SockAddr;
    /// use std::path::Path;
    ///
    /// let addr = SockAddr::Unix(Some("/tmp/x.sock".into()));
    /// assert_eq!(addr.as_unix_path(), Some(Path::new("/tmp/x.sock")));
    /// assert_eq!(SockAddr::Unix(None).as_unix_path(), None);
    /// ```
    pub fn as_unix_path(&self) -> Option<&Path> {
        match self {
            SockAddr::Unix(path) => path.as_deref(),
            SockAddr::Inet(_) => None,
        }
    }
}

/// Formats as `127.0.0.1:9000`, `[::1]:9000`, `/tmp/x.sock` or `(unnamed)`.
///
/// ```
/// use ringloop::SockAddr;
///
/// let addr = SockAddr::Inet("[::1]:9000".parse().unwrap());
/// assert_eq!(format!("{addr}"), "[::1]:9000");
/// ```
impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Inet(addr) => addr.fmt(f),
            SockAddr::Unix(Some(path)) => path.display().fmt(f),
            SockAddr::Unix(None) => f.write_str("(unnamed)"),
        }
    }
}

/// Wraps an IP socket address.
///
/// ```
/// use ringloop::SockAddr;
/// use std::net::SocketAddr;
///
/// let ip: SocketAddr = "127.0.0.1:9000".parse().unwrap();
/// assert_eq!(SockAddr::from(ip), SockAddr::Inet(ip));
/// ```
impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        SockAddr::Inet(addr)
    }
}

/// The kind of socket an address is served on.
///
/// ```
/// use ringloop::{ListenAddr, Transport};
///
/// let addr: ListenAddr = "udp://127.0.0.1:5353".parse().unwrap();
/// assert_eq!(addr.transport(), Transport::Udp);
/// assert_eq!(Transport::Udp.to_string(), "udp");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// TCP streams (`tcp`, `tcp4`, `tcp6`).
    Tcp,
    /// UDP datagrams (`udp`, `udp4`, `udp6`).
    Udp,
    /// Unix-domain streams (`unix`).
    Unix,
}

/// Formats as the URL scheme: `tcp`, `udp` or `unix`.
///
/// ```
/// use ringloop::Transport;
///
/// assert_eq!(format!("{}", Transport::Tcp), "tcp");
/// ```
impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Unix => "unix",
        })
    }
}

/// An address in URL form: what a server listens on or a client dials.
///
/// Accepted forms:
///
/// * `tcp://127.0.0.1:9000`, `tcp://[::1]:9000`, `tcp://localhost:9000`, and
///   the same with `udp`. `tcp4`/`udp4` insist on IPv4, `tcp6`/`udp6` on
///   IPv6. Port 0 asks the system for a free port.
/// * `unix:///abs/path.sock` (absolute) or `unix://relative.sock` (relative
///   to the working directory), at most 107 bytes.
/// * `tls://127.0.0.1:8443` (and `tls4`, `tls6`): TCP with TLS on top, served
///   with the builder's [`tls_server`](crate::EngineBuilder::tls_server)
///   config or dialled with a client config. The transport is
///   [`Transport::Tcp`]; [`is_tls`](ListenAddr::is_tls) tells them apart.
///
/// Hosts must be IP literals (IPv6 in brackets) or `localhost`, which means
/// 127.0.0.1 (`::1` under `tcp6`/`udp6`); names are never looked up. Nothing
/// may follow `host:port`, and no address may contain whitespace or control
/// characters. Everything after `unix://` is the path, taken literally.
///
/// The parsed form is normalised: `tcp4://127.0.0.1:80` and
/// `tcp://127.0.0.1:80` are the same address and both display as the latter.
///
/// ```
/// use ringloop::{ListenAddr, SockAddr, Transport};
///
/// let addr = ListenAddr::parse("tcp6://[::1]:9000")?;
/// assert_eq!(addr.transport(), Transport::Tcp);
/// assert_eq!(addr.sock_addr(), &SockAddr::Inet("[::1]:9000".parse().unwrap()));
/// assert_eq!(addr.to_string(), "tcp://[::1]:9000");
///
/// assert!(ListenAddr::parse("127.0.0.1:9000").is_err()); // no scheme
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    transport: Transport,
    addr: SockAddr,
    /// For a `tls://` address: the host as written (an IP literal or
    /// `localhost`), the server name a dial presents by default.
    tls_host: Option<Box<str>>,
}

/// Which IP family a scheme insists on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

impl ListenAddr {
    /// Parses an address in URL form; see [`ListenAddr`] for the syntax.
    ///
    /// A string without `scheme://` or with a malformed host, port or path is
    /// [`Error::InvalidAddress`]; a scheme other than `tcp`, `tcp4`, `tcp6`,
    /// `udp`, `udp4`, `udp6` or `unix` is [`Error::UnsupportedScheme`].
    ///
    /// ```
    /// use ringloop::{Error, ListenAddr};
    ///
    /// let addr = ListenAddr::parse("unix:///tmp/app.sock")?;
    /// assert_eq!(addr.to_string(), "unix:///tmp/app.sock");
    ///
    /// assert!(matches!(
    ///     ListenAddr::parse("tulip://127.0.0.1:9000"),
    ///     Err(Error::UnsupportedScheme { .. })
    /// ));
    /// assert!(matches!(
    ///     ListenAddr::parse("tcp://127.0.0.1"),
    ///     Err(Error::InvalidAddress { .. })
    /// ));
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<ListenAddr> {
        let invalid = |reason: &str| Error::invalid_address(s, reason);

        if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(&format!(
                "contains a whitespace or control character ({c:?})"
            )));
        }
        let Some((scheme, rest)) = s.split_once("://").filter(|(scheme, _)| is_scheme(scheme))
        else {
            return Err(invalid(
                "missing scheme, expected e.g. tcp://127.0.0.1:9000",
            ));
        };
        let (transport, family) = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => (Transport::Tcp, Family::Any),
            "tcp4" => (Transport::Tcp, Family::V4),
            "tcp6" => (Transport::Tcp, Family::V6),
            "udp" => (Transport::Udp, Family::Any),
            "udp4" => (Transport::Udp, Family::V4),
            "udp6" => (Transport::Udp, Family::V6),
            "tls" => (Transport::Tcp, Family::Any),
            "tls4" => (Transport::Tcp, Family::V4),
            "tls6" => (Transport::Tcp, Family::V6),
            "unix" => {
                return Ok(ListenAddr {
                    transport: Transport::Unix,
                    addr: SockAddr::Unix(Some(parse_unix_path(rest).map_err(invalid)?)),
                    tls_host: None,
                })
            }
            _ => {
                return Err(Error::UnsupportedScheme {
                    addr: s.to_string(),
                    scheme: scheme.to_string(),
                })
            }
        };
        let inet = parse_host_port(rest, family, scheme).map_err(|reason| invalid(&reason))?;
        let tls_host = scheme
            .get(..3)
            .is_some_and(|s| s.eq_ignore_ascii_case("tls"))
            .then(|| tls_host(rest));
        Ok(ListenAddr {
            transport,
            addr: SockAddr::Inet(inet),
            tls_host,
        })
    }

    /// The kind of socket this address is for.
    ///
    /// ```
    /// use ringloop::{ListenAddr, Transport};
    ///
    /// let addr = ListenAddr::parse("unix://app.sock")?;
    /// assert_eq!(addr.transport(), Transport::Unix);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The socket address.
    ///
    /// ```
    /// use ringloop::{ListenAddr, SockAddr};
    ///
    /// let addr = ListenAddr::parse("tcp://localhost:8080")?;
    /// assert_eq!(addr.sock_addr(), &SockAddr::Inet("127.0.0.1:8080".parse().unwrap()));
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn sock_addr(&self) -> &SockAddr {
        &self.addr
    }

    /// The same transport at another socket address, typically the real port
    /// after binding port 0. The address is taken as given: pair an IP
    /// address with `tcp`/`udp` and a path with `unix`.
    ///
    /// ```
    /// use ringloop::{ListenAddr, SockAddr};
    ///
    /// let wanted = ListenAddr::parse("tcp://127.0.0.1:0")?;
    /// let bound = wanted.with_sock_addr(SockAddr::Inet("127.0.0.1:41000".parse().unwrap()));
    /// assert_eq!(bound.to_string(), "tcp://127.0.0.1:41000");
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn with_sock_addr(&self, addr: SockAddr) -> ListenAddr {
        ListenAddr {
            transport: self.transport,
            addr,
            tls_host: self.tls_host.clone(),
        }
    }

    /// `true` for a `tls://` address (TCP with TLS on top).
    ///
    /// ```
    /// use ringloop::{ListenAddr, Transport};
    ///
    /// let addr = ListenAddr::parse("tls://127.0.0.1:8443")?;
    /// assert!(addr.is_tls());
    /// assert_eq!(addr.transport(), Transport::Tcp);
    /// assert_eq!(addr.to_string(), "tls://127.0.0.1:8443");
    /// assert!(!ListenAddr::parse("tcp://127.0.0.1:8443")?.is_tls());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls_host.is_some()
    }

    /// For a `tls://` address, the host as written (`localhost` or the IP
    /// literal, without brackets): the server name a dial presents unless
    /// another is given.
    ///
    /// ```
    /// use ringloop::ListenAddr;
    ///
    /// assert_eq!(ListenAddr::parse("tls://localhost:443")?.tls_host(), Some("localhost"));
    /// assert_eq!(ListenAddr::parse("tls://[::1]:443")?.tls_host(), Some("::1"));
    /// assert_eq!(ListenAddr::parse("tcp://localhost:443")?.tls_host(), None);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tls_host(&self) -> Option<&str> {
        self.tls_host.as_deref()
    }
}

/// Same as [`ListenAddr::parse`].
///
/// ```
/// use ringloop::ListenAddr;
///
/// let addr: ListenAddr = "udp4://0.0.0.0:0".parse()?;
/// assert_eq!(addr.to_string(), "udp://0.0.0.0:0");
/// # Ok::<(), ringloop::Error>(())
/// ```
impl FromStr for ListenAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<ListenAddr> {
        ListenAddr::parse(s)
    }
}

/// Formats in URL form, `tcp://127.0.0.1:9000` or `unix:///tmp/x.sock`, which
/// parses back to the same address.
///
/// ```
/// use ringloop::ListenAddr;
///
/// let addr = ListenAddr::parse("TCP://[::1]:9000")?;
/// assert_eq!(addr.to_string(), "tcp://[::1]:9000");
/// assert_eq!(ListenAddr::parse(&addr.to_string())?, addr);
/// # Ok::<(), ringloop::Error>(())
/// ```
impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_tls() {
            return write!(f, "tls://{}", self.addr);
        }
        write!(f, "{}://{}", self.transport, self.addr)
    }
}

/// The host part of an already validated `host:port` (brackets removed,
/// `localhost` lowercased).
fn tls_host(rest: &str) -> Box<str> {
    let host = match rest.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(h, _)| h),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.to_ascii_lowercase().into_boxed_str()
}

/// RFC 3986 scheme syntax: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn parse_unix_path(rest: &str) -> std::result::Result<PathBuf, &'static str> {
    if rest.is_empty() {
        return Err("empty Unix socket path, expected e.g. unix:///tmp/app.sock");
    }
    if rest.len() > UNIX_PATH_MAX {
        return Err("Unix socket path is longer than 107 bytes (the sun_path limit)");
    }
    Ok(PathBuf::from(rest))
}

/// Parses `host:port` for a `tcp`/`udp` scheme; the error is the reason.
fn parse_host_port(
    rest: &str,
    family: Family,
    scheme: &str,
) -> std::result::Result<SocketAddr, String> {
    if rest.is_empty() {
        return Err("missing host and port, expected e.g. tcp://127.0.0.1:9000".into());
    }
    if rest.contains(['/', '?', '#']) {
        return Err("nothing may follow host:port (found a path, query or fragment)".into());
    }
    if rest.contains('@') {
        return Err("user information ('@') is not allowed".into());
    }

    let (ip, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err("unclosed '[' in IPv6 address".into());
        };
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => return Err("missing port, expected e.g. [::1]:9000".into()),
            None => return Err(format!("unexpected {after:?} after ']'")),
        };
        if inside.is_empty() {
            return Err("empty host".into());
        }
        let ip = inside
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
        (IpAddr::V6(ip), port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err("missing port, expected host:port such as 127.0.0.1:9000".into());
        };
        if host.contains(':') {
            if host.parse::<Ipv6Addr>().is_ok() || rest.parse::<Ipv6Addr>().is_ok() {
                return Err("IPv6 addresses must be in brackets, e.g. [::1]:9000".into());
            }
            return Err("expected host:port, found more than one ':'".into());
        }
        if host.is_empty() {
            return Err("empty host".into());
        }
        let ip = if host.eq_ignore_ascii_case("localhost") {
            if family == Family::V6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
        } else {
            match host.parse::<Ipv4Addr>() {
                Ok(ip) => IpAddr::V4(ip),
                Err(_) => {
                    return Err(format!(
                        "host {host:?} is not an IP address; only IP literals and localhost \
                         are accepted (names are not looked up)"
                    ))
                }
            }
        };
        (ip, port)
    };

    let port = parse_port(port)?;
    match (family, ip) {
        (Family::V4, IpAddr::V6(_)) => Err(format!("{scheme} needs an IPv4 address, got {ip}")),
        (Family::V6, IpAddr::V4(_)) => Err(format!("{scheme} needs an IPv6 address, got {ip}")),
        _ => Ok(SocketAddr::new(ip, port)),
    }
}

fn parse_port(port: &str) -> std::result::Result<u16, String> {
    if port.is_empty() {
        return Err("missing port".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port} is out of range (0-65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str) -> SockAddr {
        SockAddr::Inet(s.parse().unwrap())
    }

    fn unix(s: &str) -> SockAddr {
        SockAddr::Unix(Some(PathBuf::from(s)))
    }

    #[test]
    fn good_addresses() {
        use Transport::*;
        let long_ok = format!("/{}", "p".repeat(UNIX_PATH_MAX - 1));
        let long_ok_url = format!("unix://{long_ok}");
        let table: Vec<(&str, Transport, SockAddr, &str)> = vec![
            (
                "tcp://127.0.0.1:9000",
                Tcp,
                inet("127.0.0.1:9000"),
                "tcp://127.0.0.1:9000",
            ),
            ("tcp://0.0.0.0:0", Tcp, inet("0.0.0.0:0"), "tcp://0.0.0.0:0"),
            (
                "tcp://127.0.0.1:65535",
                Tcp,
                inet("127.0.0.1:65535"),
                "tcp://127.0.0.1:65535",
            ),
            (
                "tcp4://10.1.2.3:80",
                Tcp,
                inet("10.1.2.3:80"),
                "tcp://10.1.2.3:80",
            ),
            (
                "tcp6://[::1]:9000",
                Tcp,
                inet("[::1]:9000"),
                "tcp://[::1]:9000",
            ),
            ("tcp://[::]:0", Tcp, inet("[::]:0"), "tcp://[::]:0"),
            (
                "tcp://[fe80::1:2]:443",
                Tcp,
                inet("[fe80::1:2]:443"),
                "tcp://[fe80::1:2]:443",
            ),
            (
                "tcp://[::ffff:127.0.0.1]:1",
                Tcp,
                inet("[::ffff:127.0.0.1]:1"),
                "tcp://[::ffff:127.0.0.1]:1",
            ),
            (
                "tcp://localhost:8080",
                Tcp,
                inet("127.0.0.1:8080"),
                "tcp://127.0.0.1:8080",
            ),
            (
                "tcp://LocalHost:8080",
                Tcp,
                inet("127.0.0.1:8080"),
                "tcp://127.0.0.1:8080",
            ),
            (
                "tcp4://localhost:1",
                Tcp,
                inet("127.0.0.1:1"),
                "tcp://127.0.0.1:1",
            ),
            ("tcp6://localhost:1", Tcp, inet("[::1]:1"), "tcp://[::1]:1"),
            (
                "TCP://127.0.0.1:7",
                Tcp,
                inet("127.0.0.1:7"),
                "tcp://127.0.0.1:7",
            ),
            (
                "tcp://127.0.0.1:0080",
                Tcp,
                inet("127.0.0.1:80"),
                "tcp://127.0.0.1:80",
            ),
            (
                "udp://127.0.0.1:5353",
                Udp,
                inet("127.0.0.1:5353"),
                "udp://127.0.0.1:5353",
            ),
            (
                "udp4://0.0.0.0:0",
                Udp,
                inet("0.0.0.0:0"),
                "udp://0.0.0.0:0",
            ),
            ("udp6://[::1]:53", Udp, inet("[::1]:53"), "udp://[::1]:53"),
            (
                "unix:///tmp/x.sock",
                Unix,
                unix("/tmp/x.sock"),
                "unix:///tmp/x.sock",
            ),
            (
                "unix://relative.sock",
                Unix,
                unix("relative.sock"),
                "unix://relative.sock",
            ),
            (
                "unix://dir/a?b#c.sock",
                Unix,
                unix("dir/a?b#c.sock"),
                "unix://dir/a?b#c.sock",
            ),
            (
                "unix://caf\u{e9}.sock",
                Unix,
                unix("caf\u{e9}.sock"),
                "unix://caf\u{e9}.sock",
            ),
            (&long_ok_url, Unix, unix(&long_ok), &long_ok_url),
        ];
        for (input, transport, addr, shown) in table {
            let parsed = ListenAddr::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.transport(), transport, "{input}");
            assert_eq!(parsed.sock_addr(), &addr, "{input}");
            assert_eq!(parsed.to_string(), shown, "{input}");
            // Display parses back to the same address, and FromStr agrees.
            assert_eq!(ListenAddr::parse(shown).unwrap(), parsed, "{input}");
            assert_eq!(input.parse::<ListenAddr>().unwrap(), parsed, "{input}");
        }
    }

    /// What kind of error an input must give, and a word its reason must
    /// contain.
    enum Want {
        Invalid(&'static str),
        Scheme(&'static str),
    }

    #[test]
    fn bad_addresses() {
        use Want::*;
        let too_long = format!("unix:///{}", "p".repeat(UNIX_PATH_MAX));
        let table: Vec<(&str, Want)> = vec![
            ("", Invalid("missing scheme")),
            ("127.0.0.1:9000", Invalid("missing scheme")),
            ("localhost:9000", Invalid("missing scheme")),
            ("tcp:127.0.0.1:9000", Invalid("missing scheme")),
            ("://127.0.0.1:9000", Invalid("missing scheme")),
            ("1tcp://127.0.0.1:9000", Invalid("missing scheme")),
            ("/tmp/x.sock", Invalid("missing scheme")),
            ("tulip://127.0.0.1:9000", Scheme("tulip")),
            ("http://127.0.0.1:80", Scheme("http")),
            ("tcp+tls://127.0.0.1:80", Scheme("tcp+tls")),
            ("tcp://", Invalid("missing host and port")),
            ("tcp://127.0.0.1", Invalid("missing port")),
            ("tcp://127.0.0.1:", Invalid("missing port")),
            ("tcp://:9000", Invalid("empty host")),
            ("tcp://[]:9000", Invalid("empty host")),
            ("tcp://[::1]", Invalid("missing port")),
            ("tcp://[::1]:", Invalid("missing port")),
            ("tcp://[::1:9000", Invalid("unclosed")),
            ("tcp://[::1]x:9000", Invalid("after ']'")),
            ("tcp://::1:9000", Invalid("brackets")),
            ("tcp://[127.0.0.1]:9000", Invalid("not an IPv6 address")),
            ("tcp://[fe80::1%eth0]:9000", Invalid("not an IPv6 address")),
            ("tcp://127.0.0.1:65536", Invalid("out of range")),
            (
                "tcp://127.0.0.1:99999999999999999999",
                Invalid("out of range"),
            ),
            ("tcp://127.0.0.1:-1", Invalid("not a number")),
            ("tcp://127.0.0.1:+80", Invalid("not a number")),
            ("tcp://127.0.0.1:http", Invalid("not a number")),
            ("tcp://127.0.0.1:80:81", Invalid("more than one ':'")),
            ("tcp://::1", Invalid("brackets")),
            ("tcp://example.com:80", Invalid("not looked up")),
            ("tcp://256.0.0.1:80", Invalid("not an IP address")),
            ("tcp://127.1:80", Invalid("not an IP address")),
            ("tcp://127.0.0.1:9000/", Invalid("path, query or fragment")),
            (
                "tcp://127.0.0.1:9000/path",
                Invalid("path, query or fragment"),
            ),
            (
                "tcp://127.0.0.1:9000?x=1",
                Invalid("path, query or fragment"),
            ),
            (
                "tcp://127.0.0.1:9000#frag",
                Invalid("path, query or fragment"),
            ),
            ("tcp://user@127.0.0.1:9000", Invalid("'@'")),
            ("tcp4://[::1]:9000", Invalid("needs an IPv4")),
            ("udp4://[::]:53", Invalid("needs an IPv4")),
            ("tcp6://127.0.0.1:9000", Invalid("needs an IPv6")),
            ("udp6://0.0.0.0:53", Invalid("needs an IPv6")),
            ("tcp:// 127.0.0.1:9000", Invalid("whitespace")),
            ("tcp://127.0.0.1:9000 ", Invalid("whitespace")),
            ("tcp://127.0.0.1:9000\n", Invalid("control")),
            ("tcp://127.0.0.1:90\t00", Invalid("control")),
            ("unix:///tmp/x\u{0}.sock", Invalid("control")),
            ("unix:///tmp/my app.sock", Invalid("whitespace")),
            ("tcp://127.0.0.1:\u{a0}9000", Invalid("whitespace")),
            ("unix://", Invalid("empty Unix socket path")),
            (&too_long, Invalid("107 bytes")),
        ];
        for (input, want) in table {
            let err = match ListenAddr::parse(input) {
                Ok(addr) => panic!("{input:?} parsed as {addr}"),
                Err(err) => err,
            };
            let shown = err.to_string();
            match (&err, want) {
                (Error::InvalidAddress { addr, reason }, Invalid(word)) => {
                    assert_eq!(addr, input);
                    assert!(
                        reason.contains(word),
                        "{input:?}: reason {reason:?} lacks {word:?}"
                    );
                }
                (Error::UnsupportedScheme { addr, scheme }, Scheme(word)) => {
                    assert_eq!(addr, input);
                    assert_eq!(scheme, word);
                }
                _ => panic!("{input:?}: wrong error kind: {shown}"),
            }
            // The message names the address.
            assert!(shown.contains(&format!("{input:?}")), "{shown}");
        }
    }

    #[test]
    fn tls_addresses() {
        for (input, host, shown) in [
            ("tls://127.0.0.1:8443", "127.0.0.1", "tls://127.0.0.1:8443"),
            ("TLS://localhost:1", "localhost", "tls://127.0.0.1:1"),
            ("tls6://[::1]:443", "::1", "tls://[::1]:443"),
            ("tls4://LOCALHOST:2", "localhost", "tls://127.0.0.1:2"),
        ] {
            let addr = ListenAddr::parse(input).unwrap();
            assert!(addr.is_tls(), "{input}");
            assert_eq!(addr.transport(), Transport::Tcp, "{input}");
            assert_eq!(addr.tls_host(), Some(host), "{input}");
            assert_eq!(addr.to_string(), shown, "{input}");
            assert_eq!(
                ListenAddr::parse(&addr.to_string()).unwrap().to_string(),
                shown
            );
            let bound = addr.with_sock_addr(inet("127.0.0.1:9"));
            assert!(bound.is_tls() && bound.to_string() == "tls://127.0.0.1:9");
        }
        for bad in [
            "tls://example.com:443",
            "tls://127.0.0.1",
            "tls4://[::1]:1",
            "tls://",
        ] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(!ListenAddr::parse("tcp://127.0.0.1:1").unwrap().is_tls());
    }

    #[test]
    fn with_sock_addr_keeps_transport() {
        let wanted = ListenAddr::parse("udp://127.0.0.1:0").unwrap();
        let bound = wanted.with_sock_addr(inet("127.0.0.1:40000"));
        assert_eq!(bound.transport(), Transport::Udp);
        assert_eq!(bound.to_string(), "udp://127.0.0.1:40000");
        assert_eq!(wanted.to_string(), "udp://127.0.0.1:0");
    }

    #[test]
    fn sock_addr_display_and_accessors() {
        assert_eq!(inet("127.0.0.1:9000").to_string(), "127.0.0.1:9000");
        assert_eq!(inet("[::1]:9000").to_string(), "[::1]:9000");
        assert_eq!(unix("/tmp/x.sock").to_string(), "/tmp/x.sock");
        assert_eq!(SockAddr::Unix(None).to_string(), "(unnamed)");
        assert_eq!(unix("/a").as_unix_path(), Some(Path::new("/a")));
        assert_eq!(unix("/a").as_inet(), None);
        assert_eq!(
            inet("1.2.3.4:5").as_inet(),
            Some("1.2.3.4:5".parse().unwrap())
        );
    }
}
