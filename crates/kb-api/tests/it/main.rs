//! Integration tests of the API against simulator data in a real `SqliteStore`.
//!
//! One fixture for the whole binary: `kb-sim` (fixed clock) serves 2 clusters on loopback; its
//! hourly pod allocations for 2024-05-31T00:00Z .. 2024-06-03T13:00Z are written through
//! `CostStore`, its budgets and savings too; the allocations go through `kb-analytics` rules and
//! summaries into `InsightStore` for the closed days only (up to 2024-06-03T00:00Z), so the
//! last 13 hours are served from the allocations (the fallback). The bridge's recommendations
//! come from `kb_analytics::recommend` over the stored rows and the simulator's node assets,
//! and one Kubecost spec-cost prediction is stored for `payments`. Each test starts API servers on
//! that store with the auth settings it needs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod advice;
mod endpoints;
mod jwt;
mod security;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::rules::{MappingRule, Source as RuleSource, Target};
use kb_analytics::summary::{Dimension, Granularity, SummaryBuilder};
use kb_analytics::{Rules, SeriesKey, apply_rules};
use kb_api::{
    ApiKeyConfig, ApiState, AuditSink, AuthConfig, KeySecret, Limits, RateLimit, Scope, Secret,
};
use kb_core::window::{DAY, HOUR};
use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::insights::{ForecastRow, InsightStore, RecommendationSet, Source};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint};
use kb_store::SqliteStore;

/// 2024-06-03T13:30:00Z, the simulator's and the API's "now".
pub const NOW: i64 = 1_717_421_400;
/// 2024-06-03T00:00:00Z: summaries exist before this.
pub const SUMMARY_END: i64 = NOW - NOW % DAY;
/// 2024-05-31T00:00:00Z: first stored hour.
pub const START: i64 = SUMMARY_END - 3 * DAY;
/// 2024-06-03T13:00:00Z: end of the last stored hour.
pub const END: i64 = NOW - NOW % HOUR;

pub const ADMIN: &str = "admin-token-0123456789";
pub const READER_ALL: &str = "reader-all-token-abcdef";
pub const READER_ONE: &str = "reader-one-token-ghijkl";
pub const LIMITED: &str = "limited-token-mnopqr";

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub struct Fixture {
    pub store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn fetch(base: &str, path: &str) -> Vec<u8> {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

fn rules() -> Rules {
    let mut r = Rules::new(1);
    r.mappings = vec![MappingRule::copy(
        Target::Team,
        RuleSource::Label("team".to_string()),
    )];
    r
}

async fn populate(store: &SqliteStore) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = kb_sim::SimConfig {
        clusters: 2,
        pods: 40,
        seed: 7,
        ..kb_sim::SimConfig::default()
    };
    let clock: kb_sim::Clock = Arc::new(|| NOW);
    let task = tokio::spawn(kb_sim::serve_with_clock(listener, cfg, clock, async move {
        rx.await.ok();
    }));
    // As the extractor asks: one cluster at a time, at pod grain.
    let mut all: Vec<Allocation> = Vec::new();
    for cluster in ["cluster-1", "cluster-2"] {
        let mut t = START;
        while t < END {
            let w = Window {
                start: t,
                end: (t + DAY).min(END),
            };
            let body = fetch(
                &base,
                &format!(
                    "/model/allocation?window={},{}&step=1h&filterClusters={cluster}&aggregate=cluster,node,namespace,controllerKind,controller,pod",
                    w.start, w.end
                ),
            )
            .await;
            let (mut rows, _) = kb_kubecost::parse_allocation_document(&body, w).unwrap();
            for r in &mut rows {
                if r.cluster.is_empty() {
                    r.cluster = cluster.to_string();
                }
            }
            all.extend(rows);
            t = w.end;
        }
    }
    // Node assets, one day at a time as the extractor asks.
    let mut nodes = Vec::new();
    for cluster in ["cluster-1", "cluster-2"] {
        let mut t = START;
        while t < SUMMARY_END {
            let w = Window {
                start: t,
                end: t + DAY,
            };
            let body = fetch(
                &base,
                &format!(
                    "/model/assets?window={},{}&filterClusters={cluster}&filterTypes=Node",
                    w.start, w.end
                ),
            )
            .await;
            for mut a in kb_kubecost::parse_assets_document(&body, w).unwrap() {
                a.cluster = cluster.to_string();
                nodes.push(a);
            }
            t = w.end;
        }
    }
    assert!(!nodes.is_empty());
    let budgets =
        kb_kubecost::parse_budgets_document(&fetch(&base, "/model/budgets").await).unwrap();
    let mut savings = kb_kubecost::parse_request_sizing_document(
        &fetch(&base, "/model/savings/requestSizingV2?window=48h").await,
    )
    .unwrap();
    savings.extend(
        kb_kubecost::parse_abandoned_document(
            &fetch(&base, "/model/savings/abandonedWorkloads?days=2").await,
        )
        .unwrap(),
    );
    tx.send(()).ok();
    task.await.unwrap().unwrap();

    for cluster in ["cluster-1", "cluster-2"] {
        let mine: Vec<&Allocation> = all.iter().filter(|a| a.cluster == cluster).collect();
        assert!(!mine.is_empty());
        let mut h = START;
        while h < END {
            let w = Window {
                start: h,
                end: h + HOUR,
            };
            let rows: Vec<Allocation> = mine
                .iter()
                .filter(|a| a.window == w)
                .map(|a| (*a).clone())
                .collect();
            let mut wr = store
                .begin_allocations(cluster, w, Resolution::Hour)
                .unwrap();
            wr.write(&rows).unwrap();
            wr.commit(&Checkpoint {
                cluster: cluster.to_string(),
                endpoint: Endpoint::Allocation,
                window: w,
                resolution: Resolution::Hour,
                synced_at: NOW,
                rows: rows.len() as u64,
                response_total_cost: rows.iter().map(|a| a.total_cost).sum(),
                null_fields: 0,
            })
            .unwrap();
            h += HOUR;
        }
        store.put_budgets(cluster, &budgets, NOW).unwrap();
        let recs: Vec<_> = savings
            .iter()
            .filter(|r| r.cluster == cluster || r.cluster.is_empty())
            .cloned()
            .collect();
        store.put_savings(cluster, &recs, NOW).unwrap();

        // The bridge's recommendations over the closed days, as the aggregator makes them.
        let observed = Window {
            start: START,
            end: SUMMARY_END,
        };
        let rows: Vec<Allocation> = mine
            .iter()
            .filter(|a| observed.contains(&a.window))
            .map(|a| (*a).clone())
            .collect();
        let my_nodes: Vec<_> = nodes
            .iter()
            .filter(|n| n.cluster == cluster)
            .cloned()
            .collect();
        let rec = kb_analytics::recommend::recommend(
            &rows,
            &my_nodes,
            &kb_analytics::recommend::RecommendConfig::default(),
        );
        store
            .put_recommendations(&RecommendationSet {
                cluster: cluster.to_string(),
                made_at: SUMMARY_END,
                observed,
                monthly_cost: rec.monthly_cost[cluster],
                items: rec.items,
            })
            .unwrap();
        store
            .put_predictions(
                cluster,
                &[kb_core::SpecCostPrediction {
                    namespace: "payments".into(),
                    controller_kind: "deployment".into(),
                    controller_name: "api".into(),
                    cost_before: kb_core::MonthlyCost {
                        total_monthly_rate: 30.0,
                        ..kb_core::MonthlyCost::default()
                    },
                    cost_after: kb_core::MonthlyCost {
                        total_monthly_rate: 51.9,
                        ..kb_core::MonthlyCost::default()
                    },
                    cost_change: kb_core::MonthlyCost {
                        total_monthly_rate: 21.9,
                        ..kb_core::MonthlyCost::default()
                    },
                }],
                NOW,
            )
            .unwrap();

        // The aggregator, for the closed days only.
        let closed: Vec<Allocation> = mine
            .iter()
            .filter(|a| a.window.start < SUMMARY_END)
            .map(|a| (*a).clone())
            .collect();
        let out = apply_rules(&closed, &rules()).unwrap();
        let mut b = SummaryBuilder::new(&Dimension::ALL, &[Granularity::Hour, Granularity::Day]);
        b.add(&out.rows);
        let sums = b.finish();
        for g in [Granularity::Hour, Granularity::Day] {
            let rows: Vec<_> = sums
                .iter()
                .filter(|s| s.granularity == g)
                .cloned()
                .collect();
            store
                .put_summaries(
                    cluster,
                    g,
                    Window {
                        start: START,
                        end: SUMMARY_END,
                    },
                    Source::Api,
                    1,
                    &rows,
                )
                .unwrap();
        }
        let key = SeriesKey {
            dimension: Dimension::Namespace,
            cluster: cluster.to_string(),
            namespace: "ns-1".to_string(),
            name: "ns-1".to_string(),
        };
        store
            .put_anomalies(
                cluster,
                Window {
                    start: START,
                    end: END,
                },
                &[Anomaly {
                    key: key.clone(),
                    detector: DetectorKind::Seasonal,
                    start: START + 30 * HOUR,
                    end: START + 32 * HOUR,
                    expected: 1.5,
                    actual: 4.25,
                    score: 6.5,
                    severity: Severity::Warning,
                }],
            )
            .unwrap();
        store
            .put_forecasts(
                cluster,
                &[ForecastRow {
                    cluster: cluster.to_string(),
                    dimension: Dimension::Cluster,
                    namespace: String::new(),
                    name: cluster.to_string(),
                    made_at: SUMMARY_END,
                    horizon_days: 7,
                    total: 700.0,
                    lower: 650.0,
                    upper: 760.0,
                    kubecost: None,
                }]
                .into_iter()
                .chain(["checkout", "payments"].map(|ns| ForecastRow {
                    cluster: cluster.to_string(),
                    dimension: Dimension::Namespace,
                    namespace: ns.to_string(),
                    name: ns.to_string(),
                    made_at: SUMMARY_END,
                    horizon_days: 30,
                    total: 300.0,
                    lower: 280.0,
                    upper: 320.0,
                    kubecost: None,
                }))
                .collect::<Vec<_>>(),
            )
            .unwrap();
    }
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("kb.db")).unwrap());
        rt().block_on(populate(&store));
        Fixture { store, _dir: dir }
    })
}

/// An audit sink writing into memory.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits (up to 5 s) until `n` lines were written and returns them parsed.
    pub fn lines(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..500 {
            let t = self.text();
            if t.lines().count() >= n {
                return t
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("expected {n} audit lines, got:\n{}", self.text());
    }
}

pub fn key(id: &str, token: &str, scopes: &[Scope], clusters: Option<&[&str]>) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.to_string(),
        name: format!("{id} key"),
        secret: KeySecret::Plain(Secret::new(token)),
        scopes: scopes.to_vec(),
        clusters: clusters.map(|c| c.iter().map(|s| s.to_string()).collect()),
        rate_limit: None,
    }
}

pub fn auth() -> AuthConfig {
    let mut limited = key("limited", LIMITED, &[Scope::Read], None);
    limited.rate_limit = Some(RateLimit {
        per_second: 0.01,
        burst: 3,
    });
    let mut hashed = key("reader-all", "unused", &[Scope::Read], None);
    hashed.secret = KeySecret::Sha256Hex(kb_api::auth::token_digest_hex(READER_ALL));
    AuthConfig {
        keys: vec![
            hashed,
            key(
                "reader-one",
                READER_ONE,
                &[Scope::Read],
                Some(&["cluster-1"]),
            ),
            limited,
        ],
        bootstrap_admin: Some(Secret::new(ADMIN)),
        ..AuthConfig::default()
    }
}

/// An API server on loopback over the fixture's store.
pub struct Server {
    pub url: String,
    pub audit: Captured,
    pub state: ApiState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub fn start_with(cfg: AuthConfig, limits: Limits) -> Server {
        let f = fixture();
        Server::start_over(f.store.clone(), f.store.clone(), cfg, limits)
    }

    pub fn start_over(
        costs: Arc<dyn kb_pipeline::ports::CostReader>,
        insights: Arc<dyn kb_pipeline::insights::InsightReader>,
        cfg: AuthConfig,
        limits: Limits,
    ) -> Server {
        Server::start_full(costs, insights, cfg, limits, Vec::new())
    }

    /// [`Server::start`] with budgets from config.
    pub fn start_with_budgets(budgets: Vec<kb_analytics::budget::BudgetSpec>) -> Server {
        let f = fixture();
        Server::start_full(
            f.store.clone(),
            f.store.clone(),
            auth(),
            Limits::default(),
            budgets,
        )
    }

    fn start_full(
        costs: Arc<dyn kb_pipeline::ports::CostReader>,
        insights: Arc<dyn kb_pipeline::insights::InsightReader>,
        cfg: AuthConfig,
        limits: Limits,
        budgets: Vec<kb_analytics::budget::BudgetSpec>,
    ) -> Server {
        let audit = Captured::default();
        let state = ApiState::new(
            costs,
            insights,
            &cfg,
            AuditSink::new(Box::new(audit.clone()), 1000).unwrap(),
            Arc::new(|| NOW),
        )
        .unwrap()
        .with_limits(limits)
        .with_rules(rules())
        .with_budgets(budgets);
        let app = kb_api::router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let url = rt().block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            tokio::spawn(async move {
                axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        rx.await.ok();
                    })
                    .await
                    .unwrap();
            });
            url
        });
        Server {
            url,
            audit,
            state,
            stop: Some(tx),
        }
    }

    pub fn start() -> Server {
        Server::start_with(auth(), Limits::default())
    }

    /// GET with a bearer token; returns status, headers and body.
    pub fn get(
        &self,
        token: Option<&str>,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let url = format!("{}{path}", self.url);
        let token = token.map(str::to_string);
        rt().block_on(async move {
            let mut r = reqwest::Client::new().get(&url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.text().await.unwrap())
        })
    }

    /// GET as the admin, expecting 200 JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (s, _, body) = self.get(Some(ADMIN), path);
        assert_eq!(s, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
    }
}

/// Relative closeness at 1e-9.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// A small RFC 4180 parser (quoted fields, doubled quotes, CRLF).
pub fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quote");
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}
