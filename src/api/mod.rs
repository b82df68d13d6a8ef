//! The HTTP server on :9464: `/metrics`, `/healthz`, `/readyz`, the
//! KPI API (`/api/v1/kpis`, `/api/v1/top`, `/api/v1/requests`) and the price lookup
//! (`/api/v1/prices`); `grpc` serves the same KPIs as
//! `chainpulse.kpi.v1.KpiService` on the OTLP/gRPC port; the live page
//! (`/`, `page`) with the JSON it draws from (`/api/v1/history`,
//! `/api/v1/health`).

pub mod grpc;
pub mod health;
pub mod history;
pub mod page;
pub mod query;

use crate::pipeline::Pipeline;
use crate::telemetry;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use axum::Router;
use query::{KpiQuery, RequestsQuery, TopQuery};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared by the handlers.
pub struct ApiState {
    pub pipeline: Arc<Pipeline>,
    /// Set once every listener is bound; cleared when shutdown begins.
    pub accepting: AtomicBool,
}

/// Paths of this port that never need the bearer token when `[auth]` is on:
/// the kubelet probes (they carry no token) and the live page's static
/// shell — a browser cannot attach a header when it loads a page or its
/// script, and the shell holds no data: every figure comes from `/api/*`,
/// which the page calls with the token given as `/#token=…`.
pub const OPEN_PATHS: [&str; 5] = [
    "/healthz",
    "/readyz",
    page::INDEX_PATH,
    page::JS_PATH,
    page::CSS_PATH,
];

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/kpis", get(kpis))
        .route("/api/v1/top", get(top))
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/prices", get(prices))
        .route("/api/v1/history", get(history))
        .route("/api/v1/health", get(health))
        .route(page::INDEX_PATH, get(page::index))
        .route(page::JS_PATH, get(page::script))
        .route(page::CSS_PATH, get(page::style))
        .with_state(state)
}

/// `/metrics`: OpenMetrics (with exemplars) when the scraper asks for it
/// in `Accept`, else the Prometheus text format 0.0.4.
async fn metrics(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    use crate::export::prometheus::{
        wants_openmetrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE,
    };
    let registry = state.pipeline.registry();
    telemetry::update_process_metrics(registry);
    registry.run_upkeep();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(wants_openmetrics);
    if openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            registry.render_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            registry.render(),
        )
            .into_response()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    if !state.accepting.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not accepting (starting or shutting down)\n",
        )
            .into_response();
    }
    if state.pipeline.overloaded() {
        let msg = format!(
            "not ready: overloaded ({} export requests in flight)\n",
            state.pipeline.inflight()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    }
    let memory = state.pipeline.memory();
    if memory.nearly_full() {
        let msg = format!(
            "not ready: in-flight memory budget nearly used up ({} of {} bytes, limits.max_inflight_bytes)\n",
            memory.used(),
            memory.max()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// `GET /api/v1/kpis?window=5m&service=…&chain=…`
async fn kpis(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match KpiQuery::parse(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let chains = q.run(&state.pipeline).await;
    Json(serde_json::json!({ "window": q.window.to_string(), "chains": chains })).into_response()
}

/// `GET /api/v1/requests?by=slowest|costliest|failed&window=5m&service=…&chain=…`
async fn requests(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match RequestsQuery::parse(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    Json(serde_json::json!({ "requests": q.run(&state.pipeline).await })).into_response()
}

/// `GET /api/v1/top?by=user|session|chain|model&metric=cost|requests|tokens&n=10`
async fn top(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match TopQuery::parse(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    Json(q.run(&state.pipeline).await).into_response()
}

/// `GET /api/v1/prices?model=…&provider=…&at=YYYY-MM-DD`: the entry a model
/// name resolves to with every rate in force at `at` (default: now), or why
/// it is unpriced. Without `model`: every entry (`chainpulse prices --list`).
async fn prices(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    use crate::pricing::{view, At};
    let at = match params.get("at").map(String::as_str) {
        None | Some("") => At::now(),
        Some(s) => match At::parse_date(s) {
            Some(at) => at,
            None => return bad_request(format!("at: expected YYYY-MM-DD, got {s:?}")),
        },
    };
    let provider = params
        .get("provider")
        .map(String::as_str)
        .filter(|p| !p.is_empty());
    let body = state
        .pipeline
        .with_aggregator(|a| match params.get("model") {
            Some(model) => view::lookup_json(a.prices(), provider, model, at),
            None => view::list_json(a.prices(), at),
        });
    Json(body).into_response()
}

/// `GET /api/v1/history?window=1h&service=…&chain=…`
async fn history(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match history::HistoryQuery::parse(&params) {
        Ok(q) => Json(q.run(&state.pipeline).await).into_response(),
        Err(e) => bad_request(e),
    }
}

/// `GET /api/v1/health`
async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let accepting = state.accepting.load(Ordering::Acquire);
    Json(health::health(&state.pipeline, accepting)).into_response()
}
