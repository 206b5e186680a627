//! `https://` to InfluxDB through a TLS proxy in front of the real `influxd`: the store works
//! with the proxy's CA and a client certificate where the proxy demands one, and a wrong CA
//! fails with an error that says what to check.

use kb_conformance::tls::{Pki, TlsProxy, upstream_of};
use kb_core::Resolution;
use kb_influx::{ClientTls, InfluxStore, Secret};

use crate::server;

fn tls_config(name: &str, url: &str, tls: ClientTls) -> kb_influx::InfluxConfig {
    let mut cfg = server::config(name);
    cfg.url = url.to_string();
    cfg.tls = tls;
    cfg.timeout = std::time::Duration::from_secs(30);
    cfg
}

#[test]
fn https_with_the_ca_and_a_client_certificate_works_and_a_wrong_ca_is_named() {
    let pki = Pki::new("influxdb");
    let proxy = TlsProxy::start(&pki, upstream_of(server::url()), true);
    let good = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: Some((
            pki.client_cert_pem.clone().into_bytes(),
            Secret::new(pki.client_key_pem.clone()),
        )),
    };
    let store = InfluxStore::open(&tls_config("tls", &proxy.url, good)).unwrap();
    let c = "tls-cluster";
    let w = kb_conformance::hour_at(kb_conformance::DAY0, 0);
    let rows = kb_conformance::window_rows(c, w, 1.0);
    kb_conformance::put_window(&store, c, w, Resolution::Hour, &rows).unwrap();
    let got = store.window_total(c, w).unwrap();
    assert_eq!(got.rows, rows.len() as u64);
    assert!(kb_conformance::close(
        got.total_cost,
        kb_conformance::sum_total(&rows)
    ));

    let other = Pki::new("other");
    let wrong = ClientTls {
        ca_pem: Some(other.ca_pem.into_bytes()),
        client: None,
    };
    let err = InfluxStore::open(&tls_config("tls-wrong", &proxy.url, wrong)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("certificate") && msg.contains("check influxdb.ca_file"),
        "{msg}"
    );
    let no_client = ClientTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        client: None,
    };
    let err = InfluxStore::open(&tls_config("tls-nocert", &proxy.url, no_client)).unwrap_err();
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
}
