//! [`ToAddr`]: what listen and dial accept as an address — a URL string, a
//! `std::net::SocketAddr` (TCP), or an already parsed [`ListenAddr`].
//!
//! Owns only the conversions; the syntax and its checks stay in `addr.rs`.

use std::borrow::Cow;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::addr::ListenAddr;
use crate::error::Result;

/// An address for [`EngineBuilder::listen`](crate::EngineBuilder::listen),
/// [`EngineHandle::dial`](crate::EngineHandle::dial) and [`Conn::dial`](crate::Conn::dial):
///
/// - a URL (`&str`, `String`): `tcp://127.0.0.1:9000`, `udp://…`,
///   `unix:///path`, `tls://…` (see [`ListenAddr`] for the syntax), checked
///   where it is used;
/// - a [`SocketAddr`] (or `SocketAddrV4`/`V6`): that TCP address;
/// - a [`ListenAddr`], as parsed before.
///
/// ```
/// use ringloop::{ListenAddr, ToAddr};
/// use std::net::SocketAddr;
///
/// let ip: SocketAddr = "127.0.0.1:9000".parse().unwrap();
/// assert_eq!(ip.to_listen_addr()?, ListenAddr::parse("tcp://127.0.0.1:9000")?);
/// assert_eq!("udp://[::1]:53".to_listen_addr()?.to_string(), "udp://[::1]:53");
/// assert!("127.0.0.1:9000".to_listen_addr().is_err()); // a string needs its scheme
/// # Ok::<(), ringloop::Error>(())
/// ```
pub trait ToAddr {
    /// The address in URL form.
    fn to_url(&self) -> Cow<'_, str>;

    /// The address parsed (see [`ListenAddr::parse`]).
    fn to_listen_addr(&self) -> Result<ListenAddr> {
        ListenAddr::parse(&self.to_url())
    }
}

impl ToAddr for str {
    fn to_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl ToAddr for String {
    fn to_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl ToAddr for SocketAddr {
    fn to_url(&self) -> Cow<'_, str> {
        // `Display` brackets IPv6 hosts, as the URL form wants.
        Cow::Owned(format!("tcp://{self}"))
    }
}

impl ToAddr for SocketAddrV4 {
    fn to_url(&self) -> Cow<'_, str> {
        Cow::Owned(format!("tcp://{self}"))
    }
}

impl ToAddr for SocketAddrV6 {
    fn to_url(&self) -> Cow<'_, str> {
        Cow::Owned(format!("tcp://{self}"))
    }
}

impl ToAddr for ListenAddr {
    fn to_url(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }

    fn to_listen_addr(&self) -> Result<ListenAddr> {
        Ok(self.clone())
    }
}

impl<T: ToAddr + ?Sized> ToAddr for &T {
    fn to_url(&self) -> Cow<'_, str> {
        (**self).to_url()
    }

    fn to_listen_addr(&self) -> Result<ListenAddr> {
        (**self).to_listen_addr()
    }
}
