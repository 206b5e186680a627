//! TLS end to end, with certificates generated here (rcgen):
//!
//! - `run` serves HTTPS on `api.listen` from `api.tls.cert_file` and `api.tls.key_file`: a
//!   client trusting the certificate gets `/healthz` and `/metrics`; a client that does not
//!   trust it, and a plain-HTTP client, get nothing.
//! - the Kubecost client presents a client certificate (`kubecost.tls.cert_file`, `key_file`)
//!   and trusts a custom CA (`ca_file`): a simulator behind TLS that requires client
//!   certificates signed by that CA serves `extract`, and refuses it without the certificate.
//!
//! And at rest: the embedded store's files are created 0600 (an older, looser file is
//! tightened).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::free_port;
use crate::{assert_exact, bin, past_range, rfc, sim_config, write_config_for};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A client for `https://127.0.0.1` that trusts `ca_pem` (and nothing else).
fn https_client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn get(client: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    })
}

#[test]
fn run_serves_https_from_the_configured_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let cert_file = write(dir.path(), "tls.crt", &cert_pem);
    let key_file = write(dir.path(), "tls.key", &cert.signing_key.serialize_pem());
    let port = free_port();
    let extra = format!(
        "extract:\n  lookback: 1h\n  settle: 0s\naggregation:\n  enabled: false\napi:\n  listen: \"127.0.0.1:{port}\"\n  audit_log: \"off\"\n  tls:\n    cert_file: \"{}\"\n    key_file: \"{}\"\n",
        cert_file.display(),
        key_file.display()
    );
    // No Kubecost is needed to serve: extraction failures are only logged.
    let cfg = write_config_for(
        dir.path(),
        &format!("http://127.0.0.1:{}", free_port()),
        &["cluster-1"],
        &extra,
    );
    let mut child = crate::Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let trusted = https_client(Some(&cert_pem));
    let base = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        match get(&trusted, &format!("{base}/healthz")) {
            Ok(r) => break r,
            Err(e) if Instant::now() > deadline || child.try_wait().unwrap().is_some() => {
                let _ = child.kill();
                panic!("no https answer: {e}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(health, (200, "ok\n".to_string()));
    let (code, page) = get(&trusted, &format!("{base}/metrics")).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("kubecost_bridge_build_info{"), "{page}");
    // A client that does not trust the certificate is refused by its own TLS check.
    let untrusted = get(&https_client(None), &format!("{base}/healthz"));
    assert!(untrusted.is_err(), "{untrusted:?}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = get(
        &https_client(None),
        &format!("http://127.0.0.1:{port}/healthz"),
    );
    assert!(plain.is_err(), "{plain:?}");
    // The listener still serves after those failed handshakes.
    assert_eq!(get(&trusted, &format!("{base}/healthz")).unwrap().0, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "run did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_tls_key_is_a_configuration_error_that_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_file = write(dir.path(), "tls.crt", &cert.cert.pem());
    let key_file = write(dir.path(), "tls.key", "not a key\n");
    let extra = format!(
        "api:\n  listen: \"127.0.0.1:{}\"\n  audit_log: \"off\"\n  tls:\n    cert_file: \"{}\"\n    key_file: \"{}\"\n",
        free_port(),
        cert_file.display(),
        key_file.display()
    );
    let cfg = write_config_for(dir.path(), "http://127.0.0.1:1", &["cluster-1"], &extra);
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tls.key"), "{err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecost-bridge test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["kubecost-bridge".to_string()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A listener that completes a TLS handshake (whatever its server config asks, client
/// certificates included) before handing the connection to axum.
pub(crate) struct TestTlsListener {
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TestTlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The simulator behind TLS that requires a client certificate signed by the test CA.
fn mtls_sim(p: &Pki, cfg: kb_sim::SimConfig) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(p.server_cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(p.server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(tcp.local_addr().unwrap()).unwrap();
            let listener = TestTlsListener {
                tcp,
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            };
            axum::serve(listener, kb_sim::router(cfg)).await.unwrap();
        });
    });
    format!("https://{}", rx.recv().unwrap())
}

#[test]
fn the_kubecost_client_presents_its_certificate_and_trusts_the_custom_ca() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &p.ca);
    let cert = write(dir.path(), "client.pem", &p.client_cert);
    let key = write(dir.path(), "client-key.pem", &p.client_key);
    let sim_cfg = sim_config(1, 10);
    let fleet = kb_sim::Fleet::new(&sim_cfg);
    let url = mtls_sim(&p, sim_cfg);
    let range = past_range(2);
    let window = format!("{},{}", rfc(range.start), rfc(range.end));
    let fast = "extract:\n  hourly_retention: 100000h\n  settle: 0s\n  request_timeout: 5s\n  retry:\n    max_attempts: 2\n    base_delay: 10ms\n    max_delay: 20ms\n";

    // Without a client certificate the handshake fails: nothing is stored.
    let no_cert = dir.path().join("no-cert");
    std::fs::create_dir(&no_cert).unwrap();
    let cfg = write_config_for(&no_cert, &url, &["cluster-1"], fast);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "kubecost:\n",
        &format!("kubecost:\n  tls:\n    ca_file: \"{}\"\n", ca.display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["extract", "--config"])
        .arg(&cfg)
        .args(["--window", &window])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With it, the windows are extracted exactly.
    let cfg = write_config_for(dir.path(), &url, &["cluster-1"], fast);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "kubecost:\n",
        &format!(
            "kubecost:\n  tls:\n    ca_file: \"{}\"\n    cert_file: \"{}\"\n    key_file: \"{}\"\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["extract", "--config"])
        .arg(&cfg)
        .args(["--window", &window])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("PRIVATE KEY"),
        "the key never reaches a log: {err}"
    );
    let sim = crate::Sim {
        url,
        fleet,
        stop: None,
        thread: None,
    };
    assert_exact(&dir.path().join("bridge.db"), &sim, &["cluster-1"], range);
}

#[test]
fn the_store_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let sim = crate::Sim::start(sim_config(1, 5));
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::write_config(dir.path(), &sim, &["cluster-1"], crate::FAST);
    let range = past_range(1);
    let window = format!("{},{}", rfc(range.start), rfc(range.end));
    crate::run_ok(
        bin()
            .args(["extract", "--config"])
            .arg(&cfg)
            .args(["--window", &window]),
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let db = dir.path().join("bridge.db");
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    // A store file left readable by others is tightened at the next start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    crate::run_ok(
        bin()
            .args(["extract", "--config"])
            .arg(&cfg)
            .args(["--window", &window]),
    );
    assert_eq!(mode(&db), 0o600);
}
