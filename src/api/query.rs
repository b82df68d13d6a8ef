//! The KPI API's queries, validated once for both transports (HTTP JSON and
//! gRPC), so a bad parameter gets the same explanation on either.

use crate::aggregate::kpi::{ChainKpis, RecentRequestView, TopBy, TopList, TopMetric};
use crate::aggregate::recent::RecentBy;
use crate::aggregate::window::{parse_window, Window};
use crate::pipeline::Pipeline;
use std::collections::HashMap;

pub const DEFAULT_WINDOW: &str = "5m";
pub const MAX_TOP: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct KpiQuery {
    pub window: Window,
    pub service: Option<String>,
    pub chain: Option<String>,
}

/// `GET /api/v1/requests`: one recent list.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestsQuery {
    pub by: RecentBy,
    pub window: Window,
    pub service: Option<String>,
    pub chain: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopQuery {
    pub by: TopBy,
    pub metric: TopMetric,
    pub n: usize,
}

fn reject_unknown(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), String> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        Some(k) => Err(format!(
            "unknown parameter {k:?}; accepted: {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.filter(|s| !s.is_empty()).cloned()
}

impl KpiQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<KpiQuery, String> {
        reject_unknown(params, &["window", "service", "chain"])?;
        let window = params
            .get("window")
            .filter(|w| !w.is_empty())
            .map_or(DEFAULT_WINDOW, String::as_str);
        Ok(KpiQuery {
            window: parse_window(window).map_err(|e| e.to_string())?,
            service: non_empty(params.get("service")),
            chain: non_empty(params.get("chain")),
        })
    }

    /// The window aggregates are taken under the aggregator lock (paced,
    /// see `Pipeline::read_aggregator`); the KPIs are built outside it.
    pub async fn run(&self, pipeline: &Pipeline) -> Vec<ChainKpis> {
        pipeline
            .read_aggregator(|a| {
                a.kpi()
                    .snapshots(self.window, self.service.as_deref(), self.chain.as_deref())
            })
            .await
            .build()
    }
}

impl RequestsQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<RequestsQuery, String> {
        reject_unknown(params, &["by", "window", "service", "chain"])?;
        let by = match params.get("by").filter(|b| !b.is_empty()) {
            Some(b) => RecentBy::parse(b)?,
            None => return Err("missing parameter \"by\" (slowest, costliest or failed)".into()),
        };
        let window = params
            .get("window")
            .filter(|w| !w.is_empty())
            .map_or(DEFAULT_WINDOW, String::as_str);
        Ok(RequestsQuery {
            by,
            window: parse_window(window).map_err(|e| e.to_string())?,
            service: non_empty(params.get("service")),
            chain: non_empty(params.get("chain")),
        })
    }

    pub async fn run(&self, pipeline: &Pipeline) -> Vec<RecentRequestView> {
        pipeline
            .read_aggregator(|a| {
                a.kpi().recent(
                    self.by,
                    self.window,
                    self.service.as_deref(),
                    self.chain.as_deref(),
                )
            })
            .await
    }
}

impl TopQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<TopQuery, String> {
        reject_unknown(params, &["by", "metric", "n"])?;
        let by = match params.get("by") {
            Some(b) => TopBy::parse(b)?,
            None => return Err("missing parameter \"by\" (user, session, chain or model)".into()),
        };
        let metric = match params.get("metric").filter(|m| !m.is_empty()) {
            Some(m) => TopMetric::parse(m)?,
            None => TopMetric::Cost,
        };
        let n = match params.get("n").filter(|n| !n.is_empty()) {
            None => 10,
            Some(n) => match n.parse::<usize>() {
                Ok(v) if (1..=MAX_TOP).contains(&v) => v,
                _ => return Err(format!("n={n:?} must be an integer from 1 to {MAX_TOP}")),
            },
        };
        Ok(TopQuery { by, metric, n })
    }

    pub async fn run(&self, pipeline: &Pipeline) -> TopList {
        pipeline
            .read_aggregator(|a| a.kpi().top(self.by, self.metric, self.n))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_parameters_say_why() {
        let e = KpiQuery::parse(&params(&[("window", "2m")])).unwrap_err();
        assert!(e.contains("accepted windows: 1m, 5m, 15m, 1h, all"), "{e}");
        let e = KpiQuery::parse(&params(&[("chian", "x")])).unwrap_err();
        assert_eq!(
            e,
            "unknown parameter \"chian\"; accepted: window, service, chain"
        );
        let e = RequestsQuery::parse(&params(&[("by", "fastest")])).unwrap_err();
        assert!(e.contains("not one of slowest, costliest, failed"), "{e}");
        let e = RequestsQuery::parse(&params(&[])).unwrap_err();
        assert!(e.contains("missing parameter \"by\""), "{e}");
        let q = RequestsQuery::parse(&params(&[("by", "failed"), ("window", "1h")])).expect("ok");
        assert_eq!(
            (q.by, q.window.to_string()),
            (RecentBy::Failed, "1h".to_owned())
        );
        let e = TopQuery::parse(&params(&[("by", "tenant")])).unwrap_err();
        assert!(e.contains("not one of user, session, chain, model"));
        let e = TopQuery::parse(&params(&[("by", "user"), ("n", "0")])).unwrap_err();
        assert!(e.contains("from 1 to 1000"));
        assert!(TopQuery::parse(&params(&[]))
            .unwrap_err()
            .contains("missing parameter"));
        let q = TopQuery::parse(&params(&[
            ("by", "model"),
            ("metric", "tokens"),
            ("n", "3"),
        ]))
        .expect("ok");
        assert_eq!((q.by, q.metric, q.n), (TopBy::Model, TopMetric::Tokens, 3));
    }
}
