//! `chainpulse.kpi.v1.KpiService`, the gRPC form of the KPI API.

use super::query::{KpiQuery, TopQuery};
use crate::aggregate::kpi::{ChainKpis, RecentRequestView};
use crate::pipeline::Pipeline;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/chainpulse.kpi.v1.rs"));
}

pub use v1::kpi_service_server::{KpiService, KpiServiceServer};

pub struct KpiGrpc {
    pipeline: Arc<Pipeline>,
}

impl KpiGrpc {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        KpiGrpc { pipeline }
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl From<ChainKpis> for v1::ChainKpis {
    fn from(c: ChainKpis) -> Self {
        v1::ChainKpis {
            service: c.service,
            chain: c.chain,
            window: c.window,
            covered_seconds: c.covered_seconds,
            requests: c.requests,
            errors: c.errors,
            throughput_rps: c.throughput_rps,
            latency_p50_seconds: c.latency_seconds.p50,
            latency_p95_seconds: c.latency_seconds.p95,
            latency_p99_seconds: c.latency_seconds.p99,
            error_rate: c.error_rate,
            availability: c.availability,
            tokens_input: c.tokens_input,
            tokens_output: c.tokens_output,
            cost_usd: c.cost_usd,
            cost_per_request_usd: c.cost_per_request_usd,
            unpriced_requests: c.unpriced_requests,
            cache_hit_rate: c.cache_hit_rate,
            kpis: c
                .kpis
                .into_iter()
                .map(|k| v1::KpiCheck {
                    kpi: k.kpi.to_owned(),
                    value: k.value,
                    target: k.target,
                    comparison: k.comparison.to_owned(),
                    status: k.status.to_owned(),
                })
                .collect(),
            targets_met: c.targets_met,
            recent: Some(v1::RecentLists {
                slowest: c.recent.slowest.into_iter().map(Into::into).collect(),
                costliest: c.recent.costliest.into_iter().map(Into::into).collect(),
                failed: c.recent.failed.into_iter().map(Into::into).collect(),
            }),
        }
    }
}

impl From<RecentRequestView> for v1::RecentRequest {
    fn from(r: RecentRequestView) -> Self {
        v1::RecentRequest {
            trace_id: r.trace_id,
            span_id: r.span_id,
            service: r.service,
            chain: r.chain,
            ended_at_unix_ms: r.ended_at_unix_ms,
            duration_seconds: r.duration_seconds,
            cost_usd: r.cost_usd,
            error_type: r.error_type,
            trace_url: r.trace_url,
        }
    }
}

#[tonic::async_trait]
impl KpiService for KpiGrpc {
    async fn get_kpis(
        &self,
        request: Request<v1::GetKpisRequest>,
    ) -> Result<Response<v1::GetKpisResponse>, Status> {
        let r = request.into_inner();
        let q = KpiQuery::parse(&params(&[
            ("window", &r.window),
            ("service", &r.service),
            ("chain", &r.chain),
        ]))
        .map_err(Status::invalid_argument)?;
        let chains = q
            .run(&self.pipeline)
            .await
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(v1::GetKpisResponse { chains }))
    }

    async fn get_top(
        &self,
        request: Request<v1::GetTopRequest>,
    ) -> Result<Response<v1::GetTopResponse>, Status> {
        let r = request.into_inner();
        let n = if r.n == 0 {
            String::new()
        } else {
            r.n.to_string()
        };
        let q = TopQuery::parse(&params(&[("by", &r.by), ("metric", &r.metric), ("n", &n)]))
            .map_err(Status::invalid_argument)?;
        let top = q.run(&self.pipeline).await;
        Ok(Response::new(v1::GetTopResponse {
            total: top.total,
            capacity: top.capacity as u64,
            tracked: top.tracked as u64,
            max_error: top.max_error,
            entries: top
                .entries
                .into_iter()
                .map(|h| v1::HeavyHitter {
                    key: h.key,
                    estimate: h.estimate,
                    error_bound: h.error_bound,
                })
                .collect(),
        }))
    }
}
