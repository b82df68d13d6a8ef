//! The HTTP server on :9464: `/metrics`, `/healthz`, `/readyz`.

use crate::pipeline::Pipeline;
use crate::telemetry;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared by the handlers.
pub struct ApiState {
    pub pipeline: Arc<Pipeline>,
    /// Set once every listener is bound; cleared when shutdown begins.
    pub accepting: AtomicBool,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let registry = state.pipeline.registry();
    telemetry::update_process_metrics(registry);
    registry.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        registry.render(),
    )
        .into_response()
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
    (StatusCode::OK, "ready\n").into_response()
}
