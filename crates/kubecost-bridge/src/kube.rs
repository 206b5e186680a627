//! Kubernetes API metadata for the aggregator (`kubernetes:`).
//!
//! One snapshot per configured cluster (namespaces, pods, nodes; see `kb_kube`) is kept in
//! process memory and replaced every `kubernetes.refresh` by [`refresh_loop`]; a failed refresh
//! keeps the previous snapshot and logs a warning. The aggregator calls [`enrich`] on every
//! allocation row it reads, so label-to-team mappings see the labels Kubecost left out.
//!
//! The snapshot is what the cluster looks like now: aggregating an old day again applies
//! today's labels to the pods and namespaces that still exist, and Kubecost's own labels win
//! wherever it reported them. It lives in a process-wide table because the aggregator runs on
//! blocking threads from several commands (`run`, `aggregate`, `backfill`, `demo`); nothing
//! else reads it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use kb_core::Allocation;
use kb_kube::{KubeClient, KubeConfig, Metadata};
use kb_pipeline::secret::Secret;
use kb_pipeline::shutdown::Shutdown;

use crate::config::{KubeClusterConfig, KubernetesConfig};

static SNAPSHOTS: RwLock<BTreeMap<String, Arc<Metadata>>> = RwLock::new(BTreeMap::new());

/// Fills `a`'s missing labels from its cluster's snapshot, if there is one; returns how many
/// entries were added.
pub(crate) fn enrich(cluster: &str, a: &mut Allocation) -> usize {
    let snap = {
        let g = match SNAPSHOTS.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.get(cluster).cloned()
    };
    snap.map_or(0, |m| m.enrich(a))
}

/// Whether a snapshot of `cluster` is loaded.
pub(crate) fn has_snapshot(cluster: &str) -> bool {
    let g = match SNAPSHOTS.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.contains_key(cluster)
}

fn client(c: &KubeClusterConfig, timeout: Duration) -> anyhow::Result<KubeClient> {
    let mut k = KubeConfig::new(c.api_server.clone());
    k.timeout = timeout;
    if let Some(ca) = &c.ca_file {
        k.ca_pem = Some(
            std::fs::read(ca)
                .with_context(|| format!("cannot read the Kubernetes CA {}", ca.display()))?,
        );
    }
    Ok(KubeClient::new(k)?)
}

fn token(c: &KubeClusterConfig) -> anyhow::Result<Option<Secret>> {
    match &c.token_file {
        None => Ok(None),
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the Kubernetes token {}", p.display()))?;
            Ok(Some(Secret::new(t.trim())))
        }
    }
}

/// Reads one snapshot of every configured cluster now; returns the clusters that failed.
pub(crate) async fn refresh_once(cfg: &KubernetesConfig) -> Vec<String> {
    let mut failed = Vec::new();
    for c in &cfg.clusters {
        let got = async {
            let client = client(c, cfg.timeout)?;
            let token = token(c)?;
            let snap = client.snapshot(token.as_ref()).await?;
            anyhow::Ok(snap)
        }
        .await;
        match got {
            Ok(m) => {
                tracing::info!(
                    cluster = c.cluster,
                    namespaces = m.namespaces.len(),
                    pods = m.pods.len(),
                    nodes = m.nodes.len(),
                    "kubernetes metadata refreshed"
                );
                let mut g = match SNAPSHOTS.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                g.insert(c.cluster.clone(), Arc::new(m));
            }
            Err(e) => {
                tracing::warn!(cluster = c.cluster, error = %format!("{e:#}"), "kubernetes metadata not refreshed; the previous snapshot is kept");
                failed.push(c.cluster.clone());
            }
        }
    }
    failed
}

/// Refreshes every `cfg.refresh` until shutdown (the first refresh at once).
pub(crate) async fn refresh_loop(cfg: KubernetesConfig, shutdown: Shutdown) {
    loop {
        refresh_once(&cfg).await;
        if shutdown.sleep(cfg.refresh).await.is_err() {
            return;
        }
    }
}
