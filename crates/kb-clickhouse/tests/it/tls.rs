//! `https://` to ClickHouse through a TLS proxy in front of the real server: the store works
//! with the proxy's CA (and with a client certificate where the proxy demands one), and a
//! wrong CA or a missing client certificate fails with an error that says so.

use kb_clickhouse::{ClickHouseStore, ClientTls, Secret};
use kb_conformance::tls::{Pki, TlsProxy, upstream_of};
use kb_pipeline::ports::{CostReader, CostStore, Endpoint};

use crate::server;

fn tls_config(name: &str, url: &str, tls: ClientTls) -> kb_clickhouse::ClickHouseConfig {
    let mut cfg = server::config(name);
    cfg.url = url.to_string();
    cfg.tls = tls;
    cfg.connect_timeout = std::time::Duration::from_secs(5);
    cfg.request_timeout = std::time::Duration::from_secs(30);
    cfg
}

#[test]
fn https_with_the_servers_ca_works_and_a_wrong_ca_is_named() {
    let pki = Pki::new("clickhouse");
    let proxy = TlsProxy::start(&pki, upstream_of(server::url()), false);
    let good = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: None,
    };
    let store = ClickHouseStore::open(&tls_config("tls", &proxy.url, good)).unwrap();
    kb_conformance::window_roundtrip(&store, &crate::conformance::ChInspect(&store)).unwrap();
    assert!(!store.clusters().unwrap().is_empty());

    let other = Pki::new("other");
    let wrong = ClientTls {
        ca_pem: Some(other.ca_pem.into_bytes()),
        client: None,
    };
    let err = ClickHouseStore::open(&tls_config("tls-wrong", &proxy.url, wrong)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("check clickhouse.ca_file"), "{msg}");
    // Without the CA the built-in roots do not know the server either.
    let err = ClickHouseStore::open(&tls_config("tls-none", &proxy.url, ClientTls::default()))
        .unwrap_err();
    assert!(err.to_string().contains("clickhouse.ca_file"), "{err}");
}

#[test]
fn https_with_a_client_certificate() {
    let pki = Pki::new("clickhouse-mtls");
    let proxy = TlsProxy::start(&pki, upstream_of(server::url()), true);
    let with_cert = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: Some((
            pki.client_cert_pem.clone().into_bytes(),
            Secret::new(pki.client_key_pem.clone()),
        )),
    };
    let store = ClickHouseStore::open(&tls_config("mtls", &proxy.url, with_cert)).unwrap();
    assert!(
        store
            .synced_windows("nobody", Endpoint::Allocation, 0)
            .unwrap()
            .is_empty()
    );
    let without = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: None,
    };
    let err = ClickHouseStore::open(&tls_config("mtls-none", &proxy.url, without)).unwrap_err();
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
    // A key that is not a key is refused before any connection, without showing it.
    let bad = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: Some((
            pki.client_cert_pem.clone().into_bytes(),
            Secret::new("not-a-key-hunter2"),
        )),
    };
    let err = ClickHouseStore::open(&tls_config("mtls-bad", &proxy.url, bad)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no PEM private key") && !msg.contains("hunter2"),
        "{msg}"
    );
}
