//! The OpenAPI 3.1 document, generated from the handlers' and types' annotations.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the bridge's config (api.auth.keys) or the bootstrap admin token",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kubecost-bridge cost API",
        description = "Kubernetes costs copied from Kubecost: clusters, namespaces, workloads, teams, optimisation, budgets, anomalies, forecasts and a FinOps FOCUS export. Every error has the shape {\"error\":{\"code\":...,\"message\":...}}."
    ),
    paths(
        handlers::clusters,
        handlers::cluster,
        handlers::namespaces,
        handlers::workloads,
        handlers::optimization,
        handlers::budgets,
        handlers::anomalies,
        handlers::forecast,
        handlers::alerts,
        handlers::teams,
        handlers::focus,
        handlers::admin_keys,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "costs", description = "cost totals and breakdowns"),
        (name = "insights", description = "what the aggregator and Kubecost derive"),
        (name = "export", description = "bulk export"),
        (name = "admin", description = "administration (admin scope)")
    )
)]
struct ApiDoc;

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as JSON (built once).
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_string())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_every_route_and_the_window_pattern() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 12);
        let params =
            doc["paths"]["/api/v1/costs/kubernetes/{cluster}/namespaces"]["get"]["parameters"]
                .as_array()
                .unwrap();
        let window = params.iter().find(|p| p["name"] == "window").unwrap();
        assert_eq!(window["schema"]["pattern"], crate::params::WINDOW_PATTERN);
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
