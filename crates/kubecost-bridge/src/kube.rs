//! Kubernetes API metadata (the seed's third data source, `kubernetes.enabled`): namespaces'
//! labels and annotations and pods' owner and team labels, read the way in-cluster clients do
//! (the service account's bearer token and CA), kept in memory and merged into allocation rows
//! before they are stored, so the aggregator's mapping rules (`namespace_label:KEY`,
//! `label:KEY`) see them even where Kubecost did not report them.
//!
//! - `GET /api/v1/namespaces` and `GET /api/v1/pods`, paged (`limit`, `continue`), each request
//!   with a timeout; read-only, so the RBAC is `get`/`list` on namespaces and pods.
//! - Keys are sanitised as Kubecost sanitises label names (every character outside
//!   `[A-Za-z0-9_]` becomes `_`, so `cost-center` is `cost_center`).
//! - A row keeps every label Kubecost sent; the API only fills keys it lacks: all namespace
//!   labels into `namespace_labels`, the configured namespace annotations into
//!   `namespace_labels` as `annotation_<key>`, and the configured pod labels (`owner`, `team`)
//!   into the pod's `labels`, matched by namespace and pod name.
//! - Refreshed every `kubernetes.refresh_interval`; a failed refresh keeps the last snapshot
//!   and logs a warning, so an API outage never stops extraction. At most [`MAX_OBJECTS`]
//!   namespaces and pods are kept.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use kb_core::Allocation;
use kb_pipeline::secret::Secret;
use kb_pipeline::shutdown::Shutdown;
use serde::Deserialize;

use crate::config::KubernetesConfig;

/// The most namespaces plus pods held; objects beyond it are skipped with a warning.
pub(crate) const MAX_OBJECTS: usize = 200_000;

/// Objects per page.
const PAGE: usize = 500;

/// Largest page body read (bytes).
const MAX_PAGE_BYTES: usize = 64 << 20;

#[derive(Debug, Deserialize)]
struct List {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Object>,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Object {
    metadata: ObjectMeta,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Kubecost's label-name sanitising: every character outside `[A-Za-z0-9_]` becomes `_`.
pub(crate) fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What the API said, ready to merge: sanitised keys, sorted.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// Namespace name to the labels it adds to `namespace_labels`.
    pub namespaces: BTreeMap<String, Vec<(String, String)>>,
    /// Namespace, then pod, to the pod labels it adds to `labels`.
    pub pods: BTreeMap<String, BTreeMap<String, Vec<(String, String)>>>,
}

/// Adds the `(key, value)` pairs of `add` whose key `to` lacks; keeps `to` sorted by key.
fn merge(to: &mut Vec<(String, String)>, add: &[(String, String)]) {
    let before = to.len();
    for (k, v) in add {
        if !to[..before].iter().any(|(x, _)| x == k) {
            to.push((k.clone(), v.clone()));
        }
    }
    if to.len() != before {
        to.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

impl Snapshot {
    /// Fills what `row` lacks from the snapshot.
    pub(crate) fn enrich(&self, row: &mut Allocation) {
        if let Some(add) = self.namespaces.get(&row.namespace) {
            merge(&mut row.namespace_labels, add);
        }
        if row.pod.is_empty() {
            return;
        }
        if let Some(add) = self
            .pods
            .get(row.namespace.as_str())
            .and_then(|pods| pods.get(row.pod.as_str()))
        {
            merge(&mut row.labels, add);
        }
    }
}

/// The live metadata: the newest snapshot, shared with the extractor's writer threads.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    current: RwLock<Arc<Snapshot>>,
}

impl Metadata {
    /// The newest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn replace(&self, s: Snapshot) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(s);
    }
}

/// A read-only client of the Kubernetes API.
pub(crate) struct KubeClient {
    http: reqwest::Client,
    base: url::Url,
    token: Secret,
    cfg: KubernetesConfig,
}

impl KubeClient {
    /// Builds the client: reads the token and the CA file now (a missing file is an error).
    pub(crate) fn new(cfg: &KubernetesConfig) -> anyhow::Result<KubeClient> {
        let token = std::fs::read_to_string(&cfg.token_file).with_context(|| {
            format!(
                "cannot read kubernetes.token_file {}",
                cfg.token_file.display()
            )
        })?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5))
            .timeout(cfg.request_timeout);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read kubernetes.ca_file {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("no PEM certificate in {}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(KubeClient {
            http: b.build().context("cannot build the kubernetes client")?,
            base: cfg.api_server.clone(),
            token: Secret::new(token.trim().to_string()),
            cfg: cfg.clone(),
        })
    }

    /// Lists every object at `path` (`/api/v1/namespaces`), page by page.
    async fn list(&self, path: &str, budget: &mut usize) -> anyhow::Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut url = self
                .base
                .join(path.trim_start_matches('/'))
                .with_context(|| format!("bad kubernetes path {path}"))?;
            url.query_pairs_mut()
                .append_pair("limit", &PAGE.to_string());
            if let Some(c) = &cont {
                url.query_pairs_mut().append_pair("continue", c);
            }
            let resp = self
                .http
                .get(url)
                .bearer_auth(self.token.expose())
                .header("Accept", "application/json")
                .send()
                .await
                .with_context(|| format!("kubernetes {path}"))?;
            let status = resp.status();
            if !status.is_success() {
                anyhow::bail!("kubernetes {path}: http status {}", status.as_u16());
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
            {
                anyhow::bail!("kubernetes {path}: page above {MAX_PAGE_BYTES} bytes");
            }
            // Read chunk by chunk: the limit holds whatever size the server declared.
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .with_context(|| format!("kubernetes {path}: reading the body"))?
            {
                if body.len() + chunk.len() > MAX_PAGE_BYTES {
                    anyhow::bail!("kubernetes {path}: page above {MAX_PAGE_BYTES} bytes");
                }
                body.extend_from_slice(&chunk);
            }
            let page: List = serde_json::from_slice(&body)
                .with_context(|| format!("kubernetes {path}: not a list"))?;
            for o in page.items {
                if *budget == 0 {
                    tracing::warn!(
                        path,
                        max = MAX_OBJECTS,
                        "too many kubernetes objects; the rest is skipped"
                    );
                    return Ok(out);
                }
                *budget -= 1;
                out.push(o.metadata);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Reads namespaces and pods into a snapshot.
    pub(crate) async fn read(&self) -> anyhow::Result<Snapshot> {
        let mut budget = MAX_OBJECTS;
        let mut snap = Snapshot::default();
        for ns in self.list("/api/v1/namespaces", &mut budget).await? {
            let mut add: Vec<(String, String)> = ns
                .labels
                .iter()
                .map(|(k, v)| (sanitize(k), v.clone()))
                .collect();
            for key in &self.cfg.namespace_annotations {
                if let Some(v) = ns.annotations.get(key) {
                    add.push((format!("annotation_{}", sanitize(key)), v.clone()));
                }
            }
            add.sort_by(|a, b| a.0.cmp(&b.0));
            add.dedup_by(|a, b| a.0 == b.0);
            snap.namespaces.insert(ns.name, add);
        }
        if !self.cfg.pod_labels.is_empty() {
            for pod in self.list("/api/v1/pods", &mut budget).await? {
                let mut add: Vec<(String, String)> = self
                    .cfg
                    .pod_labels
                    .iter()
                    .filter_map(|k| pod.labels.get(k).map(|v| (sanitize(k), v.clone())))
                    .collect();
                if add.is_empty() {
                    continue;
                }
                add.sort_by(|a, b| a.0.cmp(&b.0));
                let ns = pod.namespace.unwrap_or_default();
                snap.pods.entry(ns).or_default().insert(pod.name, add);
            }
        }
        Ok(snap)
    }
}

/// Starts the metadata source: one read now (a failure is a warning: extraction goes on without
/// enrichment until a refresh succeeds), then a refresh every `refresh_interval` until shutdown.
pub(crate) async fn start(
    cfg: &KubernetesConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Arc<Metadata>> {
    let client = KubeClient::new(cfg)?;
    let meta = Arc::new(Metadata::default());
    match client.read().await {
        Ok(s) => {
            tracing::info!(
                namespaces = s.namespaces.len(),
                pods = s.pods.len(),
                "kubernetes metadata read"
            );
            meta.replace(s);
        }
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "kubernetes metadata not read; rows are stored without it"
        ),
    }
    let (m, every) = (meta.clone(), cfg.refresh_interval);
    tokio::spawn(async move {
        while shutdown.sleep(every).await.is_ok() {
            match client.read().await {
                Ok(s) => m.replace(s),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "kubernetes metadata refresh failed; keeping the last one"
                ),
            }
        }
    });
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_fills_missing_keys_only_and_keeps_order() {
        let mut to = vec![("b".to_string(), "kubecost".to_string())];
        merge(
            &mut to,
            &[
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "api".to_string()),
                ("c".to_string(), "3".to_string()),
            ],
        );
        let keys: Vec<&str> = to.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(to[1].1, "kubecost", "what Kubecost sent wins");
        assert_eq!(
            sanitize("app.kubernetes.io/cost-center"),
            "app_kubernetes_io_cost_center"
        );
    }
}
