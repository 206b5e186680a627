//! The API's `/alerts` from the alert states `kb-ops` keeps in the store.
//!
//! A cluster's alerts are the states whose `cluster` label names it, plus those without a
//! cluster label (storage usage, which concerns every cluster the bridge serves). Pending
//! states (a condition not yet held for its `for` duration) are not alerts yet and are left
//! out. Firing alerts come first, then resolved ones, newest first within each.

use std::sync::Arc;

use kb_core::window::format_rfc3339;
use kb_ops::alerts::AlertStatus;
use kb_ops::{AlertState, AlertStateStore};
use kb_pipeline::ports::StoreError;

/// Reads alerts for `/api/v1/costs/kubernetes/{cluster}/alerts`.
pub(crate) struct StoredAlerts(pub Arc<dyn AlertStateStore>);

fn to_api(s: &AlertState) -> Option<kb_api::Alert> {
    let state = match s.status {
        AlertStatus::Pending => return None,
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    Some(kb_api::Alert {
        id: s.fingerprint.clone(),
        kind: s.name.clone(),
        severity: s
            .labels
            .get("severity")
            .cloned()
            .unwrap_or_else(|| "warning".to_string()),
        state: state.to_string(),
        message: s.summary.clone(),
        started_at: format_rfc3339(s.fired_at.unwrap_or(s.active_since)),
        resolved_at: s.resolved_at.map(format_rfc3339),
    })
}

impl kb_api::AlertReader for StoredAlerts {
    fn alerts(&self, cluster: &str) -> Result<Vec<kb_api::Alert>, StoreError> {
        let mut states: Vec<AlertState> = self
            .0
            .load()?
            .into_iter()
            .filter(|s| s.labels.get("cluster").is_none_or(|c| c == cluster))
            .collect();
        states.sort_by(|a, b| {
            let firing = |s: &AlertState| s.status == AlertStatus::Firing;
            firing(b).cmp(&firing(a)).then_with(|| {
                b.fired_at
                    .unwrap_or(b.active_since)
                    .cmp(&a.fired_at.unwrap_or(a.active_since))
            })
        });
        Ok(states.iter().filter_map(to_api).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use kb_api::AlertReader;

    use super::*;

    struct Mem(Mutex<Vec<AlertState>>);

    impl AlertStateStore for Mem {
        fn load(&self) -> Result<Vec<AlertState>, StoreError> {
            Ok(self.0.lock().map(|g| g.clone()).unwrap_or_default())
        }
        fn save(&self, states: &[AlertState]) -> Result<(), StoreError> {
            if let Ok(mut g) = self.0.lock() {
                *g = states.to_vec();
            }
            Ok(())
        }
    }

    fn state(name: &str, cluster: Option<&str>, status: AlertStatus, fired: i64) -> AlertState {
        let mut labels = BTreeMap::new();
        if let Some(c) = cluster {
            labels.insert("cluster".to_string(), c.to_string());
        }
        labels.insert("severity".to_string(), "critical".to_string());
        AlertState {
            fingerprint: format!("{name}-{cluster:?}-{fired}"),
            name: name.to_string(),
            labels,
            status,
            active_since: fired - 60,
            fired_at: (status != AlertStatus::Pending).then_some(fired),
            resolved_at: (status == AlertStatus::Resolved).then_some(fired + 600),
            last_notified: None,
            last_seen: fired,
            value: 0.2,
            threshold: 0.05,
            summary: format!("{name} on {cluster:?}"),
            description: String::new(),
        }
    }

    #[test]
    fn a_cluster_sees_its_own_and_global_alerts_firing_first_without_pending_ones() {
        let store = Mem(Mutex::new(vec![
            state(
                "KubecostBridgeStaleData",
                Some("a"),
                AlertStatus::Resolved,
                2_000,
            ),
            state(
                "KubecostBridgeExtractionFailureRate",
                Some("a"),
                AlertStatus::Firing,
                1_000,
            ),
            state(
                "KubecostBridgeCostSpike",
                Some("b"),
                AlertStatus::Firing,
                3_000,
            ),
            state(
                "KubecostBridgeStorageFull",
                None,
                AlertStatus::Firing,
                1_500,
            ),
            state(
                "KubecostBridgeCostSpike",
                Some("a"),
                AlertStatus::Pending,
                4_000,
            ),
        ]));
        let r = StoredAlerts(Arc::new(store));
        let a = r.alerts("a").unwrap();
        let kinds: Vec<(&str, &str)> = a
            .iter()
            .map(|x| (x.kind.as_str(), x.state.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("KubecostBridgeStorageFull", "firing"),
                ("KubecostBridgeExtractionFailureRate", "firing"),
                ("KubecostBridgeStaleData", "resolved"),
            ]
        );
        assert_eq!(a[0].severity, "critical");
        assert_eq!(a[1].started_at, "1970-01-01T00:16:40Z");
        assert_eq!(a[2].resolved_at.as_deref(), Some("1970-01-01T00:43:20Z"));
        assert!(a[1].resolved_at.is_none());
        assert_eq!(r.alerts("b").unwrap().len(), 2);
        assert_eq!(r.alerts("c").unwrap().len(), 1);
    }
}
