//! Simulator data for the stores' tests: Kubecost allocation responses from `kb-sim`, served
//! in-process (the router called directly, no socket) and parsed by `kb-kubecost`, as the
//! extractor would see them.

use std::sync::Arc;

use kb_core::{Allocation, Window};
use tower::ServiceExt;

/// The simulator's "now" of the week tests: 2024-06-03T13:30:00Z.
pub const SIM_NOW: i64 = 1_717_421_400;
/// 2024-05-27T00:00:00Z, a Monday: the week the tests write is the 7 days from here.
pub const SIM_WEEK: i64 = 1_716_768_000;

/// Fetches each cluster's days of the week from [`SIM_WEEK`] at pod-hour grain (step 1h, idle
/// rows included), with the simulator's clock at [`SIM_NOW`].
pub fn sim_week(
    cfg: &kb_sim::SimConfig,
    clusters: &[String],
) -> Vec<(String, Window, Vec<Allocation>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock: kb_sim::Clock = Arc::new(|| SIM_NOW);
    let router = kb_sim::router_with_clock(cfg.clone(), clock);
    rt.block_on(async move {
        let mut out = Vec::new();
        for cluster in clusters {
            for d in 0..7 {
                let day = Window::new(SIM_WEEK + d * crate::DAY, SIM_WEEK + (d + 1) * crate::DAY)
                    .unwrap();
                let uri = format!(
                    "/model/allocation?window={}&aggregate=cluster,node,namespace,\
                     controllerKind,controller,pod&step=1h&idle=true&shareIdle=false\
                     &filterClusters={cluster}",
                    day.to_kubecost_param()
                );
                let req = axum::http::Request::builder()
                    .uri(&uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let resp = router.clone().oneshot(req).await.unwrap();
                assert_eq!(resp.status(), 200, "{uri}");
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let (rows, _) = kb_kubecost::parse_allocation_document(&body, day).unwrap();
                assert!(!rows.is_empty(), "{uri}");
                out.push((cluster.clone(), day, rows));
            }
        }
        out
    })
}
