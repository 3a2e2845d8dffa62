//! Certificates made per test (rcgen): a CA and the leaves it signs, and a TLS client
//! that trusts only that CA. No private key is ever checked in.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::client::TlsStream;

use super::PATIENCE;

/// A certificate authority for one test.
pub struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    /// Its certificate, PEM.
    pub pem: String,
}

/// A certificate the CA signed, and its key.
pub struct Leaf {
    /// The certificate, DER (what a server presents).
    pub der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The private key, DER.
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    /// A fresh CA.
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Tessera test CA");
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { key, cert, pem }
    }

    /// A leaf for `names` (DNS names or IP addresses), with a key of its own.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        self.client_with(rustls::DEFAULT_VERSIONS, alpn)
    }

    /// [`Ca::client`] offering only the TLS `versions` given.
    pub fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// A TLS connection to `addr` with `sni`, verified by `config`.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: rustls::ClientConfig,
) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds")
}

/// The leaf certificate the server presented.
pub fn presented(stream: &TlsStream<tokio::net::TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}
