//! A TLS-terminating proxy for the stores' HTTPS tests: it accepts TLS on 127.0.0.1 with a
//! certificate of a throwaway CA (made by `rcgen`) and forwards the plain bytes to a real
//! server (ClickHouse, InfluxDB), so the stores' `https://` code runs against the real thing.
//! With `require_client_cert`, the handshake demands a client certificate signed by the CA.

use std::net::SocketAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA with a server certificate for `localhost` and `127.0.0.1` and a client certificate.
pub struct Pki {
    /// The CA certificate (PEM): what a client trusts.
    pub ca_pem: String,
    /// The client certificate (PEM) and its key (PEM), signed by the CA.
    pub client_cert_pem: String,
    pub client_key_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    ca_der: CertificateDer<'static>,
}

impl Pki {
    /// Makes a new CA and its certificates.
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test ca"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["bridge".to_string()]).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "kubecost-bridge");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            ca_der: ca.der().clone(),
        }
    }
}

/// A TLS proxy in front of `upstream`, on its own thread and runtime; stops when dropped.
pub struct TlsProxy {
    /// `https://localhost:<port>`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Starts a proxy that presents `pki`'s server certificate and forwards to `upstream`.
    pub fn start(pki: &Pki, upstream: SocketAddr, require_client_cert: bool) -> TlsProxy {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(vec![pki.server_cert.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A failed handshake (wrong CA on the client, no client certificate)
                        // just closes this connection.
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::io::copy_bidirectional(&mut tls, &mut up).await.ok();
                    });
                }
            });
        });
        TlsProxy {
            url: format!("https://localhost:{port}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// The `host:port` of an `http://host:port...` URL, resolved.
pub fn upstream_of(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    rest.to_socket_addrs().unwrap().next().unwrap()
}
