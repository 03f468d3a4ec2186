//! Test certificates made at run time (rcgen): a CA, server certificates it
//! signs for given names, client certificates, and rustls configs and
//! blocking rustls clients built on them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// A certificate authority that signs test certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP literals).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// One CA with a server certificate for `localhost` and 127.0.0.1.
pub struct TestPki {
    pub ca: Ca,
    pub server: Issued,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca = Ca::new("ringloop test CA");
        let server = ca.server(&["localhost", "127.0.0.1"]);
        TestPki { ca, server }
    }

    /// A server config with the `localhost` certificate.
    pub fn server_tls(&self) -> ringloop::tls::ServerTls {
        ringloop::tls::ServerTls::from_pem(
            self.server.cert_pem.as_bytes(),
            self.server.key_pem.as_bytes(),
        )
        .expect("server config")
    }

    /// A client config trusting this CA.
    pub fn client_config(&self) -> ClientConfig {
        ringloop::tls::client_config(self.ca.pem().as_bytes()).expect("client config")
    }
}

pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// A blocking rustls client connected to `addr`, handshake done.
pub fn tls_client(config: ClientConfig, addr: SocketAddr, name: &str) -> TlsClient {
    let conn = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .expect("client session");
    let sock = super::tcp_client(addr);
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// Writes `data` and reads back exactly as many bytes.
pub fn tls_round_trip(stream: &mut TlsClient, data: &[u8]) {
    stream.write_all(data).expect("write");
    stream.flush().expect("flush");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read echo");
    assert!(back == data, "echo of {} bytes differs", data.len());
}
