//! Bearer-token authentication on the listeners.
//!
//! Once chainpulse is a node or cluster service, anyone who can reach it
//! could feed it spans (and cost) or read every KPI, so `auth.bearer_token`
//! makes each listener require `Authorization: Bearer <token>` — the header
//! every OTel SDK sends from `OTEL_EXPORTER_OTLP_HEADERS`, and Prometheus
//! from `authorization: { credentials_file: … }`.
//!
//! - The token is a secret reference (`${env:NAME}`, `${file:PATH}`,
//!   [`crate::secret`]) so it stays out of the config file. `${file:…}`
//!   tokens are re-read every `auth.reload_interval_ms`: rotating the
//!   Kubernetes Secret rotates the token without a restart (a file that
//!   cannot be read keeps the old token, logged and counted).
//! - The check runs before anything else on the request (before its body
//!   is read or reserved), compares in constant time, and refuses with
//!   the protocol's own answer: HTTP 401 with `WWW-Authenticate: Bearer`
//!   and a body saying what is wrong (OTLP/HTTP: a `google.rpc.Status` in
//!   the request's encoding; the API: JSON), gRPC `UNAUTHENTICATED`.
//!   Refusals are counted in `chainpulse_auth_refused_total{listener,reason}`.
//! - `/healthz` and `/readyz` stay open: kubelet probes carry no token; so
//!   does the live page's static shell (`/`, `/assets/*`), which holds no
//!   data (the list is `api::OPEN_PATHS`). Everything else on the metrics
//!   port (`/metrics`, `/api/*`, and any route added later) needs the token — `auth.metrics_bearer_token` when
//!   Prometheus should hold a different one.

use crate::export::names::{AUTH_REFUSED, AUTH_TOKEN_RELOADS};
use crate::export::Registry;
use crate::secret::{self, Secret};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use metrics::Counter;
use parking_lot::RwLock;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Resolves a token template; the error says what is wrong (never the
/// value).
pub fn resolve_token(template: &str) -> Result<Secret, String> {
    let token = secret::resolve(template, |k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let value = token.expose();
    if value.is_empty() {
        return Err("resolves to an empty token".into());
    }
    // RFC 6750 b64token, loosely: what a client can put in a header.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token may hold visible ASCII characters only (no spaces or line breaks inside)"
                .into(),
        );
    }
    Ok(token)
}

/// One configured token, re-resolved when its file changes.
pub struct Token {
    key: &'static str,
    template: String,
    value: RwLock<Secret>,
    reloads_ok: Counter,
    reloads_failed: Counter,
}

impl Token {
    /// Resolves the template now (the error names the config key).
    pub fn new(
        key: &'static str,
        template: &str,
        registry: &Registry,
    ) -> Result<Arc<Token>, String> {
        let value = resolve_token(template).map_err(|m| format!("{key}: {m}"))?;
        Ok(Arc::new(Token {
            key,
            template: template.to_owned(),
            value: RwLock::new(value),
            reloads_ok: registry.counter(AUTH_TOKEN_RELOADS, &[("result", "ok")]),
            reloads_failed: registry.counter(AUTH_TOKEN_RELOADS, &[("result", "error")]),
        }))
    }

    /// Constant-time comparison with the token in force.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.value
            .read()
            .expose()
            .as_bytes()
            .ct_eq(presented)
            .into()
    }

    /// Re-resolves the template; keeps the old token if that fails.
    pub fn reload(&self) {
        match resolve_token(&self.template) {
            Ok(v) => {
                let mut current = self.value.write();
                if *current != v {
                    *current = v;
                    self.reloads_ok.increment(1);
                    tracing::info!(key = self.key, "bearer token changed");
                }
            }
            Err(m) => {
                self.reloads_failed.increment(1);
                tracing::warn!(key = self.key, error = %m, "bearer token cannot be re-read; keeping the previous one");
            }
        }
    }

    /// Re-reads `${file:…}` tokens every `every` (environment variables do
    /// not change under a running process). Runs until aborted.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        if every.is_zero() || !self.template.contains("${file:") {
            return;
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reload();
        }
    }
}

/// Why a request was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Wrong,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Missing, Refusal::Malformed, Refusal::Wrong];

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Wrong => "wrong",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "authentication required: send the header \"Authorization: Bearer <token>\""
            }
            Refusal::Malformed => {
                "the Authorization header must be \"Bearer <token>\" (one space, no other scheme)"
            }
            Refusal::Wrong => "the bearer token is not valid",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 section 3).
    pub fn challenge(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Refusal::Missing => "Bearer realm=\"chainpulse\"",
            Refusal::Malformed => "Bearer realm=\"chainpulse\", error=\"invalid_request\"",
            Refusal::Wrong => "Bearer realm=\"chainpulse\", error=\"invalid_token\"",
        })
    }
}

/// The check, for one listener.
#[derive(Clone)]
pub struct Guard {
    token: Arc<Token>,
    open_paths: &'static [&'static str],
    refused: [Counter; 3],
}

impl Guard {
    pub fn new(
        token: Arc<Token>,
        registry: &Registry,
        listener: &'static str,
        open_paths: &'static [&'static str],
    ) -> Guard {
        let refused = Refusal::ALL.map(|r| {
            registry.counter(
                AUTH_REFUSED,
                &[("listener", listener), ("reason", r.reason())],
            )
        });
        Guard {
            token,
            open_paths,
            refused,
        }
    }

    /// Ok when the request may go on; the refusal is counted.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.open_paths.contains(&path) {
            return Ok(());
        }
        let result = match headers.get(header::AUTHORIZATION) {
            None => Err(Refusal::Missing),
            Some(v) => {
                let v = v.as_bytes();
                match (v.get(..7), v.get(7..)) {
                    (Some(scheme), Some(token))
                        if scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty() =>
                    {
                        if self.token.matches(token) {
                            Ok(())
                        } else {
                            Err(Refusal::Wrong)
                        }
                    }
                    _ => Err(Refusal::Malformed),
                }
            }
        };
        if let Err(r) = result {
            self.refused[r as usize].increment(1);
        }
        result
    }
}

/// Builds the refusal in the listener's protocol.
pub type Refuse<B> = fn(Refusal, &HeaderMap) -> Response<B>;

/// A tower layer running [`Guard::check`] in front of a service.
pub struct AuthLayer<B> {
    guard: Guard,
    refuse: Refuse<B>,
}

impl<B> Clone for AuthLayer<B> {
    fn clone(&self) -> Self {
        AuthLayer {
            guard: self.guard.clone(),
            refuse: self.refuse,
        }
    }
}

impl<B> AuthLayer<B> {
    pub fn new(guard: Guard, refuse: Refuse<B>) -> Self {
        AuthLayer { guard, refuse }
    }
}

impl<S, B> tower::Layer<S> for AuthLayer<B> {
    type Service = Auth<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            guard: self.guard.clone(),
            refuse: self.refuse,
        }
    }
}

pub struct Auth<S, B> {
    inner: S,
    guard: Guard,
    refuse: Refuse<B>,
}

impl<S: Clone, B> Clone for Auth<S, B> {
    fn clone(&self) -> Self {
        Auth {
            inner: self.inner.clone(),
            guard: self.guard.clone(),
            refuse: self.refuse,
        }
    }
}

impl<S, ReqBody, B> tower::Service<Request<ReqBody>> for Auth<S, B>
where
    S: tower::Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.guard.check(req.uri().path(), req.headers()) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(r) => {
                let response = (self.refuse)(r, req.headers());
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// gRPC: `UNAUTHENTICATED` with the message.
pub fn refuse_grpc<B: Default>(r: Refusal, _: &HeaderMap) -> Response<B> {
    tonic::Status::unauthenticated(r.message()).into_http()
}

/// The metrics port: 401, JSON `{"error": …}`.
pub fn refuse_api(r: Refusal, _: &HeaderMap) -> Response<axum::body::Body> {
    let body = serde_json::json!({ "error": r.message() }).to_string();
    unauthorized(r, "application/json", body.into_bytes())
}

/// OTLP/HTTP: 401 with a `google.rpc.Status` (code 16) in the request's
/// encoding, protobuf unless the request is JSON.
pub fn refuse_otlp_http(r: Refusal, headers: &HeaderMap) -> Response<axum::body::Body> {
    use prost::Message;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let code = tonic::Code::Unauthenticated as i32;
    if json {
        let body = serde_json::json!({ "code": code, "message": r.message() }).to_string();
        unauthorized(r, "application/json", body.into_bytes())
    } else {
        let body = crate::otlp::status::RpcStatus {
            code,
            message: r.message().to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec();
        unauthorized(r, "application/x-protobuf", body)
    }
}

fn unauthorized(
    r: Refusal,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let h = response.headers_mut();
    h.insert(header::WWW_AUTHENTICATE, r.challenge());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(value: &str) -> Guard {
        let registry = Registry::new();
        let token = Arc::new(Token {
            key: "auth.bearer_token",
            template: value.to_owned(),
            value: RwLock::new(Secret::new(value)),
            reloads_ok: registry.counter(AUTH_TOKEN_RELOADS, &[("result", "ok")]),
            reloads_failed: registry.counter(AUTH_TOKEN_RELOADS, &[("result", "error")]),
        });
        Guard::new(token, &registry, "metrics", &["/healthz", "/readyz"])
    }

    fn with_auth(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn bearer_header_is_checked() {
        let g = guard("s3cret");
        assert_eq!(g.check("/metrics", &with_auth("Bearer s3cret")), Ok(()));
        assert_eq!(g.check("/metrics", &with_auth("bearer s3cret")), Ok(()));
        assert_eq!(
            g.check("/metrics", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        assert_eq!(
            g.check("/metrics", &with_auth("Bearer s3cre")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            g.check("/metrics", &with_auth("Bearer s3cret ")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            g.check("/metrics", &with_auth("Basic s3cret")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            g.check("/metrics", &with_auth("Bearer ")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            g.check("/metrics", &with_auth("s3cret")),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn probes_stay_open() {
        let g = guard("s3cret");
        assert_eq!(g.check("/healthz", &HeaderMap::new()), Ok(()));
        assert_eq!(g.check("/readyz", &HeaderMap::new()), Ok(()));
        assert_eq!(
            g.check("/healthz/", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        assert_eq!(
            g.check("/api/v1/kpis", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn tokens_are_resolved_and_checked() {
        assert!(resolve_token("plain-token").is_ok());
        assert!(resolve_token("two words")
            .unwrap_err()
            .contains("visible ASCII"));
        let e = resolve_token("${env:CHAINPULSE_TEST_SURELY_UNSET_VAR}").unwrap_err();
        assert!(e.contains("CHAINPULSE_TEST_SURELY_UNSET_VAR"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let e = resolve_token(&format!("${{file:{}}}", path.display())).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn file_token_rotates_and_a_bad_file_keeps_the_old_one() {
        let registry = Registry::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let token = Token::new(
            "auth.bearer_token",
            &format!("${{file:{}}}", path.display()),
            &registry,
        )
        .unwrap();
        assert!(token.matches(b"first"));
        std::fs::write(&path, "second\n").unwrap();
        token.reload();
        assert!(token.matches(b"second") && !token.matches(b"first"));
        std::fs::remove_file(&path).unwrap();
        token.reload();
        assert!(token.matches(b"second"));
    }
}
