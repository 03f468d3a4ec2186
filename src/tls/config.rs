//! TLS configuration helpers: PEM loading, [`ServerTls`] (a server config
//! with SNI-based certificate choice, ALPN and optional client-certificate
//! authentication) and [`client_config`].
//!
//! Owns only the making of rustls configs from PEM; it never touches a
//! connection. Every failure is a typed [`Error`]: a file that cannot be
//! read is [`Error::Io`], PEM that holds no certificate or key, or a key that
//! does not match its certificate, is [`Error::InvalidConfig`] or
//! [`Error::Tls`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::provider;
use crate::error::{Error, Result};

fn pem_error(what: &str, e: rustls::pki_types::pem::Error) -> Error {
    match e {
        rustls::pki_types::pem::Error::Io(io) => Error::io("read a PEM file", io),
        other => Error::InvalidConfig(format!("{what}: {other:?}")),
    }
}

/// Parses every certificate in PEM text (a chain: leaf first).
fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e))?;
    if certs.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "{what}: no CERTIFICATE block found"
        )));
    }
    Ok(certs)
}

/// Parses the first private key in PEM text: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(what, e))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::io(
            "read a PEM file",
            std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
        )
    })
}

/// Loads a certificate chain (leaf first) from a PEM file.
///
/// ```
/// let err = ringloop::tls::load_certs("/nonexistent/cert.pem").unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/cert.pem"));
/// ```
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    certs_from_pem(&read_file(path)?, &path.display().to_string())
}

/// Loads the private key from a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
///
/// ```
/// assert!(ringloop::tls::load_private_key("/nonexistent/key.pem").is_err());
/// ```
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    key_from_pem(&read_file(path)?, &path.display().to_string())
}

/// Loads trust anchors (CA certificates) from a PEM file.
///
/// ```
/// assert!(ringloop::tls::load_roots("/nonexistent/ca.pem").is_err());
/// ```
pub fn load_roots(path: impl AsRef<Path>) -> Result<RootCertStore> {
    let path = path.as_ref();
    roots_from_pem(&read_file(path)?, &path.display().to_string())
}

fn roots_from_pem(pem: &[u8], what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, what)? {
        roots.add(cert).map_err(Error::Tls)?;
    }
    Ok(roots)
}

/// A client config that trusts the CA certificates in `ca_pem` (PEM text),
/// TLS 1.2 and 1.3, no client certificate. For a client certificate or other
/// settings, build a [`rustls::ClientConfig`] directly.
///
/// ```
/// # fn ca() -> String {
/// #     let key = rcgen::KeyPair::generate().unwrap();
/// #     let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
/// #     params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
/// #     params.self_signed(&key).unwrap().pem()
/// # }
/// let config = ringloop::tls::client_config(ca().as_bytes())?;
/// let engine_builder = ringloop::Engine::builder(|_| Quiet).tls_client(config);
/// # struct Quiet;
/// # impl ringloop::EventHandler for Quiet { type State = (); }
/// # Ok::<(), ringloop::Error>(())
/// ```
pub fn client_config(ca_pem: &[u8]) -> Result<ClientConfig> {
    let roots = roots_from_pem(ca_pem, "CA certificates")?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Lets an open TLS 1.3 session's record layer be handed to the loop
    // (see `TlsOptions::own_record_layer`); nothing else reads the secrets.
    config.enable_secret_extraction = true;
    Ok(config)
}

/// Builds a [`rustls::ServerConfig`] from PEM: a default certificate, more
/// certificates chosen by the client's SNI name, ALPN protocols, and
/// optional client-certificate authentication. TLS 1.2 and 1.3 with the ring
/// provider.
///
/// ```
/// use ringloop::tls::ServerTls;
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
/// # struct Quiet;
/// # impl ringloop::EventHandler for Quiet { type State = (); }
///
/// let config = ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?
///     .alpn(&[b"h2", b"http/1.1"])
///     .build()?;
/// let server = ringloop::Engine::builder(|_| Quiet)
///     .listen("tls://127.0.0.1:0")
///     .tls_server(config)
///     .build()?;
/// assert!(server.handle().local_addrs()[0].is_tls());
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Debug)]
pub struct ServerTls {
    certs: SniCerts,
    alpn: Vec<Vec<u8>>,
    client_auth: Option<(RootCertStore, bool)>,
}

/// Certificates by SNI name, with a default for clients that send no name
/// (or a name not listed).
#[derive(Debug, Default)]
struct SniCerts {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>> {
    let certs = certs_from_pem(cert_pem, "certificate chain")?;
    let key = key_from_pem(key_pem, "private key")?;
    CertifiedKey::from_der(certs, key, &provider())
        .map(Arc::new)
        .map_err(Error::Tls)
}

impl ServerTls {
    /// Starts with a default certificate chain and its key (PEM text).
    ///
    /// ```
    /// # let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// let tls = ringloop::tls::ServerTls::from_pem(c.cert.pem().as_bytes(), c.key_pair.serialize_pem().as_bytes())?;
    /// // A key that is not PEM is refused with a clear error.
    /// assert!(ringloop::tls::ServerTls::from_pem(c.cert.pem().as_bytes(), b"nonsense").is_err());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        Ok(Self {
            certs: SniCerts {
                by_name: HashMap::new(),
                default: Some(certified_key(cert_pem, key_pem)?),
            },
            alpn: Vec::new(),
            client_auth: None,
        })
    }

    /// [`from_pem`](Self::from_pem) with the PEM read from files.
    ///
    /// ```
    /// assert!(ringloop::tls::ServerTls::from_pem_files("/nonexistent/c.pem", "/nonexistent/k.pem").is_err());
    /// ```
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        Self::from_pem(&read_file(cert.as_ref())?, &read_file(key.as_ref())?)
    }

    /// Serves `cert_pem` to clients that ask for `name` (SNI); others get
    /// the default certificate.
    ///
    /// ```
    /// # let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    /// # let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
    /// let tls = ringloop::tls::ServerTls::from_pem(a.cert.pem().as_bytes(), a.key_pair.serialize_pem().as_bytes())?
    ///     .sni("b.test", b.cert.pem().as_bytes(), b.key_pair.serialize_pem().as_bytes())?
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn sni(mut self, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let key = certified_key(cert_pem, key_pem)?;
        self.certs.by_name.insert(name.to_ascii_lowercase(), key);
        Ok(self)
    }

    /// The ALPN protocols offered, most preferred first (`b"h2"`,
    /// `b"http/1.1"`); the one chosen is [`TlsInfo::alpn_protocol`](super::TlsInfo::alpn_protocol).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Asks clients for a certificate signed by one of the CAs in `ca_pem`;
    /// `required` refuses clients without one (otherwise they are let in
    /// anonymously). The certificate is [`TlsInfo::peer_certificates`](super::TlsInfo::peer_certificates).
    ///
    /// ```
    /// # let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let ca_pem = c.cert.pem();
    /// let tls = ringloop::tls::ServerTls::from_pem(c.cert.pem().as_bytes(), c.key_pair.serialize_pem().as_bytes())?
    ///     .client_auth(ca_pem.as_bytes(), true)?
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn client_auth(mut self, ca_pem: &[u8], required: bool) -> Result<Self> {
        self.client_auth = Some((roots_from_pem(ca_pem, "client CA certificates")?, required));
        Ok(self)
    }

    /// The finished config, for [`EngineBuilder::tls_server`](crate::EngineBuilder::tls_server).
    pub fn build(self) -> Result<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?;
        let builder = match self.client_auth {
            None => builder.with_no_client_auth(),
            Some((roots, required)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| {
                    Error::InvalidConfig(format!("client certificate verifier: {e}"))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(self.certs));
        config.alpn_protocols = self.alpn;
        // See `client_config`.
        config.enable_secret_extraction = true;
        Ok(config)
    }
}
