//! `kb-kube`: metadata from the Kubernetes API, the seed's third data source.
//!
//! Kubecost reports each allocation's pod labels and annotations and its namespace's labels,
//! but not always all of them (OpenCost reports fewer, and Kubecost drops labels it was not
//! configured to keep), and never the labels of the nodes. This crate reads, with the
//! read-only access an in-cluster client has (a service-account token and the cluster's CA):
//!
//! - `GET /api/v1/namespaces`: labels and annotations of every namespace;
//! - `GET /api/v1/pods`: labels and annotations of every pod;
//! - `GET /api/v1/nodes`: node labels (instance type, zone, capacity type).
//!
//! Lists are paged (`limit`, `continue`), every request has a timeout, and bodies are capped.
//! The token file is read again on every refresh, because Kubernetes rotates projected
//! service-account tokens.
//!
//! [`Metadata::enrich`] fills what Kubecost left out; **Kubecost's values win** where both
//! have a key, so history already stored does not change meaning when a label is edited
//! later. Pod labels and annotations are matched by namespace and pod name; namespace
//! annotations, which the allocation model has no field for, are added to the pod annotations
//! where the pod has no such key, so `annotation:` mapping rules see them too.
//! [`Metadata::node`] tells, for the optimisation advice, a node's instance type, zone and
//! whether it is spot or preemptible capacity.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kb_core::Allocation;
use kb_core::model::Labels;
use kb_pipeline::secret::Secret;
use serde::Deserialize;

/// Largest list page body read (a page of 500 pods is well under 5 MiB).
pub const MAX_PAGE_BYTES: usize = 64 << 20;

/// An error talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api config: {0}")]
    Config(String),
    #[error("kubernetes api {path}: {message}")]
    Request { path: String, message: String },
    #[error("kubernetes api {path}: http {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("kubernetes api {path}: malformed list: {message}")]
    Decode { path: String, message: String },
}

/// How to reach one cluster's API server.
#[derive(Clone)]
pub struct KubeConfig {
    /// `https://kubernetes.default.svc` in a cluster.
    pub api_server: url::Url,
    /// The bearer token (a service-account token); `None` for an API server that needs none.
    pub token: Option<Secret>,
    /// PEM of the CA that signed the API server's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// Per request.
    pub timeout: Duration,
    /// Items asked per page.
    pub page_size: u32,
}

impl std::fmt::Debug for KubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConfig")
            .field("api_server", &self.api_server.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("timeout", &self.timeout)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl KubeConfig {
    /// Defaults: 30 s per request, pages of 500.
    pub fn new(api_server: url::Url) -> KubeConfig {
        KubeConfig {
            api_server,
            token: None,
            ca_pem: None,
            timeout: Duration::from_secs(30),
            page_size: 500,
        }
    }
}

/// Labels and annotations of one object, each sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    pub labels: Labels,
    pub annotations: Labels,
}

/// What the advice needs to know about a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub labels: Labels,
    /// `node.kubernetes.io/instance-type` (or the beta label).
    pub instance_type: Option<String>,
    /// `topology.kubernetes.io/zone` (or the beta label).
    pub zone: Option<String>,
    /// Spot or preemptible capacity, from the labels the main providers and Karpenter set.
    pub spot: bool,
}

/// A snapshot of one cluster's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub namespaces: HashMap<String, ObjectMeta>,
    /// Keyed by (namespace, pod name).
    pub pods: HashMap<(String, String), ObjectMeta>,
    pub nodes: HashMap<String, NodeInfo>,
}

/// Label keys that mark spot or preemptible nodes, with the value that means spot (`None`:
/// any value).
const SPOT_LABELS: [(&str, Option<&str>); 6] = [
    ("karpenter.sh/capacity-type", Some("spot")),
    ("eks.amazonaws.com/capacityType", Some("SPOT")),
    ("cloud.google.com/gke-spot", Some("true")),
    ("cloud.google.com/gke-preemptible", Some("true")),
    ("kubernetes.azure.com/scalesetpriority", Some("spot")),
    ("node.kubernetes.io/lifecycle", Some("spot")),
];

fn get<'a>(labels: &'a Labels, key: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .and_then(|i| labels.get(i))
        .map(|(_, v)| v.as_str())
}

/// Adds the entries of `from` whose keys `to` lacks; `to` stays sorted.
fn merge_missing(to: &mut Labels, from: &Labels) -> usize {
    let mut added = 0;
    for (k, v) in from {
        if let Err(i) = to.binary_search_by(|(tk, _)| tk.as_str().cmp(k)) {
            to.insert(i, (k.clone(), v.clone()));
            added += 1;
        }
    }
    added
}

impl NodeInfo {
    fn from_labels(labels: Labels) -> NodeInfo {
        let pick = |a: &str, b: &str| {
            get(&labels, a)
                .or_else(|| get(&labels, b))
                .map(str::to_string)
        };
        let instance_type = pick(
            "node.kubernetes.io/instance-type",
            "beta.kubernetes.io/instance-type",
        );
        let zone = pick(
            "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/zone",
        );
        let spot = SPOT_LABELS
            .iter()
            .any(|(k, want)| match (get(&labels, k), want) {
                (Some(v), Some(w)) => v.eq_ignore_ascii_case(w),
                (Some(_), None) => true,
                (None, _) => false,
            });
        NodeInfo {
            labels,
            instance_type,
            zone,
            spot,
        }
    }
}

impl Metadata {
    /// Fills the allocation's missing pod labels and annotations and namespace labels from
    /// the snapshot (Kubecost's values win); returns how many entries were added.
    pub fn enrich(&self, a: &mut Allocation) -> usize {
        let mut added = 0;
        if let Some(ns) = self.namespaces.get(&a.namespace) {
            added += merge_missing(&mut a.namespace_labels, &ns.labels);
        }
        if !a.pod.is_empty() {
            if let Some(p) = self.pods.get(&(a.namespace.clone(), a.pod.clone())) {
                added += merge_missing(&mut a.labels, &p.labels);
                added += merge_missing(&mut a.annotations, &p.annotations);
            }
        }
        if let Some(ns) = self.namespaces.get(&a.namespace) {
            added += merge_missing(&mut a.annotations, &ns.annotations);
        }
        added
    }

    /// What the snapshot knows about a node.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }
}

// --- The API's list shapes (only the fields read). ---

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    metadata: ItemMeta,
}

#[derive(Deserialize)]
struct ItemMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn sorted(m: Option<BTreeMap<String, String>>) -> Labels {
    m.map(|m| m.into_iter().collect()).unwrap_or_default()
}

/// Annotations Kubernetes tools write that are large and never a cost attribute.
fn keep_annotation(k: &str) -> bool {
    k != "kubectl.kubernetes.io/last-applied-configuration"
}

/// A client of one API server.
#[derive(Debug, Clone)]
pub struct KubeClient {
    http: reqwest::Client,
    cfg: KubeConfig,
}

impl KubeClient {
    /// Builds the client; errors on a bad CA or an API server URL with credentials.
    pub fn new(cfg: KubeConfig) -> Result<KubeClient, Error> {
        if !cfg.api_server.username().is_empty() || cfg.api_server.password().is_some() {
            return Err(Error::Config(
                "credentials in api_server are refused: use a token file".to_string(),
            ));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
            .timeout(cfg.timeout)
            .user_agent(concat!("kubecost-bridge/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("ca certificate: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config(
                    "ca certificate: no certificate found in the pem data".to_string(),
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(KubeClient { http, cfg })
    }

    /// Reads namespaces, pods and nodes; the token is the one given (the caller re-reads a
    /// rotating token file before each snapshot).
    pub async fn snapshot(&self, token: Option<&Secret>) -> Result<Metadata, Error> {
        let token = token.or(self.cfg.token.as_ref());
        let mut m = Metadata::default();
        for it in self.list("/api/v1/namespaces", token).await? {
            let md = it.metadata;
            m.namespaces.insert(
                md.name,
                ObjectMeta {
                    labels: sorted(md.labels),
                    annotations: sorted(md.annotations)
                        .into_iter()
                        .filter(|(k, _)| keep_annotation(k))
                        .collect(),
                },
            );
        }
        for it in self.list("/api/v1/pods", token).await? {
            let md = it.metadata;
            let Some(ns) = md.namespace else { continue };
            m.pods.insert(
                (ns, md.name),
                ObjectMeta {
                    labels: sorted(md.labels),
                    annotations: sorted(md.annotations)
                        .into_iter()
                        .filter(|(k, _)| keep_annotation(k))
                        .collect(),
                },
            );
        }
        for it in self.list("/api/v1/nodes", token).await? {
            let md = it.metadata;
            m.nodes
                .insert(md.name, NodeInfo::from_labels(sorted(md.labels)));
        }
        Ok(m)
    }

    /// Every item of a list, page by page.
    async fn list(&self, path: &str, token: Option<&Secret>) -> Result<Vec<Item>, Error> {
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        // A continue token that never ends would loop forever: a cluster with more than this
        // many pages of one kind is far outside what one bridge serves.
        for _ in 0..10_000 {
            let mut url = self.cfg.api_server.clone();
            url.set_path(path);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &self.cfg.page_size.max(1).to_string());
                if let Some(c) = &cont {
                    q.append_pair("continue", c);
                }
            }
            let mut req = self.http.get(url).header("Accept", "application/json");
            if let Some(t) = token {
                req = req.bearer_auth(t.expose());
            }
            let err = |message: String| Error::Request {
                path: path.to_string(),
                message,
            };
            let resp = req.send().await.map_err(|e| err(without_url(&e)))?;
            let status = resp.status();
            let body = read_capped(resp, MAX_PAGE_BYTES).await.map_err(err)?;
            if !status.is_success() {
                return Err(Error::Status {
                    path: path.to_string(),
                    status: status.as_u16(),
                    message: status_message(&body),
                });
            }
            let page: List = serde_json::from_slice(&body).map_err(|e| Error::Decode {
                path: path.to_string(),
                message: e.to_string(),
            })?;
            out.extend(page.items);
            match page.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => return Ok(out),
            }
        }
        Err(Error::Decode {
            path: path.to_string(),
            message: "the list never ended (10,000 pages)".to_string(),
        })
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Reads a body up to `limit` bytes.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {}", without_url(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `message` of a Kubernetes `Status` body, else the start of the body.
fn status_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Status {
        message: Option<String>,
    }
    serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn kubecost_values_win_and_missing_keys_are_added_in_order() {
        let mut m = Metadata::default();
        m.namespaces.insert(
            "shop".into(),
            ObjectMeta {
                labels: l(&[("team", "payments"), ("env", "prod")]),
                annotations: l(&[("finance/cost-center", "cc-42")]),
            },
        );
        m.pods.insert(
            ("shop".into(), "web-1".into()),
            ObjectMeta {
                labels: l(&[("app", "web"), ("owner", "ana")]),
                annotations: l(&[("finance/cost-center", "cc-7")]),
            },
        );
        let mut a = Allocation {
            namespace: "shop".into(),
            pod: "web-1".into(),
            labels: l(&[("app", "web-v2")]),
            namespace_labels: l(&[("team", "checkout")]),
            ..Allocation::default()
        };
        assert_eq!(m.enrich(&mut a), 3);
        assert_eq!(a.labels, l(&[("app", "web-v2"), ("owner", "ana")]));
        assert_eq!(
            a.namespace_labels,
            l(&[("env", "prod"), ("team", "checkout")])
        );
        // The pod's own annotation comes before the namespace's.
        assert_eq!(a.annotations, l(&[("finance/cost-center", "cc-7")]));
        // Enriching again adds nothing.
        assert_eq!(m.enrich(&mut a), 0);
        // Unknown namespace and pod: untouched.
        let mut b = Allocation {
            namespace: "other".into(),
            pod: "x".into(),
            ..Allocation::default()
        };
        assert_eq!(m.enrich(&mut b), 0);
        assert!(b.labels.is_empty() && b.namespace_labels.is_empty());
    }

    #[test]
    fn spot_nodes_are_recognised_by_provider_labels() {
        let spot = NodeInfo::from_labels(l(&[
            ("eks.amazonaws.com/capacityType", "SPOT"),
            ("node.kubernetes.io/instance-type", "m5.large"),
            ("topology.kubernetes.io/zone", "eu-west-1a"),
        ]));
        assert!(spot.spot);
        assert_eq!(spot.instance_type.as_deref(), Some("m5.large"));
        assert_eq!(spot.zone.as_deref(), Some("eu-west-1a"));
        let on_demand = NodeInfo::from_labels(l(&[
            ("eks.amazonaws.com/capacityType", "ON_DEMAND"),
            ("beta.kubernetes.io/instance-type", "m5.xlarge"),
        ]));
        assert!(!on_demand.spot);
        assert_eq!(on_demand.instance_type.as_deref(), Some("m5.xlarge"));
        assert!(NodeInfo::from_labels(l(&[("cloud.google.com/gke-spot", "true")])).spot);
        assert!(NodeInfo::from_labels(l(&[("karpenter.sh/capacity-type", "spot")])).spot);
    }

    #[test]
    fn credentials_in_the_url_and_bad_cas_are_refused() {
        let mut c = KubeConfig::new(url::Url::parse("https://u:p@127.0.0.1:6443").unwrap());
        assert!(matches!(KubeClient::new(c.clone()), Err(Error::Config(_))));
        c.api_server = url::Url::parse("https://127.0.0.1:6443").unwrap();
        c.ca_pem = Some(b"not a certificate".to_vec());
        let e = KubeClient::new(c).unwrap_err().to_string();
        assert!(e.contains("ca certificate"), "{e}");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let mut c = KubeConfig::new(url::Url::parse("https://127.0.0.1:6443").unwrap());
        c.token = Some(Secret::new("eyJhbGciOiJSUzI1NiJ9.secret"));
        let s = format!("{c:?} {:?}", KubeClient::new(c.clone()).unwrap());
        assert!(!s.contains("secret"), "{s}");
    }
}
