//! Kubernetes API metadata enrichment (`kubernetes.enabled`) against recorded API responses
//! (`testdata/kubernetes/`: a paged namespace list and a pod list in the API's shapes) served
//! over TLS on 127.0.0.1 by a fake API server that checks the service-account token: the
//! stored rows gain the namespace labels and annotations and the pods' owner labels Kubecost did
//! not report (Kubecost's own values win), and the aggregator's mapping rules use them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kb_analytics::{Dimension, Granularity};
use kb_core::Window;
use kb_pipeline::insights::{InsightReader, SummaryQuery};

use crate::tls::TestTlsListener;
use crate::{Sim, bin, run_ok, sim_config, write_config};

const TOKEN: &str = "sa-token-4f1c9e";

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kubernetes")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The requests the fake API server saw: `path?query` and whether the token was right.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// The fake API server over TLS; returns its URL and the requests it saw.
fn fake_api(cert_pem: &str, key_pem: &str) -> (String, Seen) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let (ns1, ns2, pods) = (
        fixture("namespaces-1.json"),
        fixture("namespaces-2.json"),
        fixture("pods.json"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(tcp.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(
                move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                    let (keep, ns1, ns2, pods) =
                        (keep.clone(), ns1.clone(), ns2.clone(), pods.clone());
                    async move {
                        use axum::http::StatusCode;
                        let authorised = headers
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                        keep.lock().unwrap().push((uri.to_string(), authorised));
                        if !authorised {
                            return (StatusCode::UNAUTHORIZED, String::new());
                        }
                        let q = uri.query().unwrap_or("");
                        match uri.path() {
                            "/api/v1/namespaces" if q.contains("continue=") => {
                                (StatusCode::OK, ns2)
                            }
                            "/api/v1/namespaces" => (StatusCode::OK, ns1),
                            "/api/v1/pods" => (StatusCode::OK, pods),
                            _ => (StatusCode::NOT_FOUND, String::new()),
                        }
                    }
                },
            );
            let listener = TestTlsListener {
                tcp,
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            };
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("https://{}", rx.recv().unwrap()), seen)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn get<'a>(labels: &'a [(String, String)], k: &str) -> Option<&'a str> {
    labels.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

#[test]
fn kubernetes_metadata_fills_labels_kubecost_lacks_and_feeds_the_mapping_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca = write(dir.path(), "ca.crt", &cert.cert.pem());
    let token = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let (api, seen) = fake_api(&cert.cert.pem(), &cert.signing_key.serialize_pem());
    // The recorded pod exists in this hour of the seeded simulator.
    let window = Window {
        start: 1_794_787_200, // 2026-11-16T00:00:00Z
        end: 1_794_787_200 + 3600,
    };
    let sim = Sim::start(sim_config(1, 10));
    let extra = format!(
        "{}kubernetes:\n  enabled: true\n  api_server: \"{api}\"\n  token_file: \"{}\"\n  ca_file: \"{}\"\n  namespace_annotations: [owner]\n  pod_labels: [owner, team]\naggregation:\n  rules:\n    mappings:\n      - {{ target: cost_center, from: \"namespace_label:cost_center\" }}\n      - {{ target: owner, from: \"label:owner\" }}\n",
        crate::FAST,
        token.display(),
        ca.display()
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let w = format!("{},{}", crate::rfc(window.start), crate::rfc(window.end));
    run_ok(
        bin()
            .args(["extract", "--config"])
            .arg(&cfg)
            .args(["--window", &w]),
    );

    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().all(|(_, ok)| *ok), "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|(u, _)| u.contains("/api/v1/namespaces") && u.contains("continue=")),
        "the second page was read: {requests:?}"
    );
    assert!(
        requests.iter().any(|(u, _)| u.starts_with("/api/v1/pods")),
        "{requests:?}"
    );

    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut rows = Vec::new();
    store
        .allocations("cluster-1", window, &mut |a| {
            rows.push(a);
            Ok(())
        })
        .unwrap();
    let ks: Vec<_> = rows
        .iter()
        .filter(|a| a.namespace == "kube-system")
        .collect();
    assert!(!ks.is_empty(), "{rows:?}");
    for a in &ks {
        let nl = &a.namespace_labels;
        assert_eq!(get(nl, "cost_center"), Some("cc-100"), "{nl:?}");
        assert_eq!(
            get(nl, "annotation_owner"),
            Some("sre@example.com"),
            "{nl:?}"
        );
        assert_eq!(
            get(nl, "team"),
            Some("core"),
            "Kubecost's value wins: {nl:?}"
        );
        assert!(nl.windows(2).all(|p| p[0].0 < p[1].0), "sorted: {nl:?}");
    }
    let pod = rows
        .iter()
        .find(|a| a.pod == "indexer-0-xpgvk897hh-4dt1")
        .unwrap_or_else(|| panic!("the recorded pod is not in the window: {rows:?}"));
    assert_eq!(get(&pod.labels, "owner"), Some("alice"), "{:?}", pod.labels);
    assert_eq!(
        get(&pod.labels, "team"),
        Some("platform"),
        "{:?}",
        pod.labels
    );
    let other = rows
        .iter()
        .find(|a| a.namespace == "kube-system" && a.pod != pod.pod && !a.pod.is_empty())
        .unwrap();
    assert_eq!(
        get(&other.labels, "owner"),
        None,
        "only the recorded pod: {:?}",
        other.labels
    );
    assert!(
        rows.iter()
            .filter(|a| a.namespace == "monitoring")
            .all(|a| get(&a.namespace_labels, "cost_center") == Some("cc-200"))
    );

    // The mapping rules see them.
    run_ok(bin().args(["aggregate", "--config"]).arg(&cfg).args([
        "--from",
        "2026-11-16",
        "--to",
        "2026-11-17",
    ]));
    let names = |d: Dimension| -> Vec<(String, f64)> {
        store
            .summaries(&SummaryQuery {
                cluster: Some("cluster-1".into()),
                dimension: d,
                granularity: Granularity::Hour,
                range: window,
                namespace: None,
                name: None,
            })
            .unwrap()
            .into_iter()
            .map(|s| (s.summary.name, s.summary.totals.total_cost))
            .collect()
    };
    let cc = names(Dimension::CostCenter);
    assert!(cc.iter().any(|(n, c)| n == "cc-100" && *c > 0.0), "{cc:?}");
    assert!(cc.iter().any(|(n, c)| n == "cc-200" && *c > 0.0), "{cc:?}");
    let owners = names(Dimension::Owner);
    assert!(
        owners.iter().any(|(n, c)| n == "alice" && *c > 0.0),
        "{owners:?}"
    );
}
