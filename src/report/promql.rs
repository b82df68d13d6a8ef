//! A small client for the Prometheus HTTP query API (`/api/v1/query`), the
//! one API Prometheus, Thanos Query and Mimir all serve, so the fleet report
//! works against any of them. Instant queries only: every figure of a report
//! is evaluated at one pinned time, so the numbers of one report agree with
//! each other even while Prometheus keeps scraping.

use crate::forward::send::secret::{self, Secret};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::time::Duration;

/// How the client authenticates (resolved `${env:…}` / `${file:…}`
/// references; never printed).
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Bearer(Secret),
    Basic(Secret, Secret),
}

impl Auth {
    /// `bearer` is a token template, `basic` a `user:password` template;
    /// both may hold `${env:NAME}` / `${file:PATH}` references.
    pub fn from_args(bearer: Option<&str>, basic: Option<&str>) -> anyhow::Result<Auth> {
        let env = |k: &str| std::env::var(k).ok();
        match (bearer, basic) {
            (Some(_), Some(_)) => bail!("--bearer-token and --basic-auth exclude each other"),
            (Some(t), None) => Ok(Auth::Bearer(secret::resolve(t, env)?)),
            (None, Some(b)) => {
                let Some((user, pass)) = split_credentials(b) else {
                    bail!("--basic-auth must be USER:PASSWORD (each may be a ${{env:NAME}} reference)")
                };
                Ok(Auth::Basic(
                    secret::resolve(user, env)?,
                    secret::resolve(pass, env)?,
                ))
            }
            (None, None) => Ok(Auth::None),
        }
    }
}

/// Splits `USER:PASSWORD` at the first `:` outside a `${…}` reference
/// (`${env:USER}:${env:PASSWORD}` has three colons; the separator is the
/// middle one). `$${` is a literal, not a reference.
fn split_credentials(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut in_ref = false;
    while i < b.len() {
        match b[i] {
            b'$' if !in_ref && b.get(i + 1) == Some(&b'$') && b.get(i + 2) == Some(&b'{') => i += 2,
            b'$' if !in_ref && b.get(i + 1) == Some(&b'{') => {
                in_ref = true;
                i += 1;
            }
            b'}' if in_ref => in_ref = false,
            b':' if !in_ref => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    None
}

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// Evaluation time (Unix seconds) of every query.
    pub time: f64,
}

/// Largest answer read (a fleet's KPI series are a few thousand samples; a
/// wrong URL serving a huge page must not exhaust memory).
const MAX_ANSWER_BYTES: usize = 64 << 20;

impl Client {
    pub fn new(base: &str, auth: Auth, time: f64) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            auth,
            time,
        })
    }

    /// Runs an instant query at [`Client::time`]; the answer must be a vector.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Sample>> {
        let url = format!("{}/api/v1/query", self.base);
        let time = format!("{:.3}", self.time);
        let mut req = self
            .http
            .post(&url)
            .form(&[("query", promql), ("time", time.as_str())]);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::Basic(u, p) => req.basic_auth(u.expose(), Some(p.expose())),
        };
        let mut resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach Prometheus at {}", self.base))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.context("reading Prometheus' answer")? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                bail!("{url}: answer larger than {MAX_ANSWER_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        parse_answer(&body)
            .map_err(|e| anyhow::anyhow!("{url}: HTTP {status}: {e:#}\n  query: {promql}"))
    }
}

/// Parses a `/api/v1/query` answer (`{"status": "success", "data":
/// {"resultType": "vector", "result": [...]}}`), or returns its error.
pub fn parse_answer(body: &[u8]) -> anyhow::Result<Vec<Sample>> {
    let v: serde_json::Value = serde_json::from_slice(body).with_context(|| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("not a Prometheus API answer: {head:?}")
    })?;
    if v["status"] != "success" {
        bail!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or("no error message")
        );
    }
    let data = &v["data"];
    if data["resultType"] != "vector" {
        bail!("expected a vector, got {}", data["resultType"]);
    }
    let mut out = Vec::new();
    for r in data["result"].as_array().into_iter().flatten() {
        let labels = r["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        let value = r["value"][1].as_str().context("sample without a value")?;
        let value = parse_value(value)?;
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// Prometheus writes sample values as strings, `NaN` and `±Inf` included.
fn parse_value(s: &str) -> anyhow::Result<f64> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().with_context(|| format!("bad sample value {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vectors_and_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"service":"a","le":"+Inf"},"value":[1.5,"12"]},
            {"metric":{},"value":[1.5,"NaN"]}]}}"#;
        let s = parse_answer(ok).expect("vector");
        assert_eq!(
            (s[0].label("service"), s[0].label("le"), s[0].value),
            ("a", "+Inf", 12.0)
        );
        assert!(s[1].value.is_nan());
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse_answer(err).unwrap_err().to_string();
        assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
        assert!(parse_answer(b"<html>").is_err());
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert!(parse_answer(scalar)
            .unwrap_err()
            .to_string()
            .contains("vector"));
    }

    #[test]
    fn credentials_split_outside_references() {
        assert_eq!(split_credentials("u:p"), Some(("u", "p")));
        assert_eq!(split_credentials("u:p:q"), Some(("u", "p:q")));
        assert_eq!(
            split_credentials("${env:U}:${env:P}"),
            Some(("${env:U}", "${env:P}"))
        );
        assert_eq!(
            split_credentials("$${x:y}"),
            Some(("$${x", "y}")),
            "a doubled dollar sign is a literal, not a reference"
        );
        assert_eq!(split_credentials("${env:U}"), None);
        assert_eq!(split_credentials("user"), None);
    }

    #[test]
    fn auth_from_templates() {
        assert!(matches!(Auth::from_args(None, None), Ok(Auth::None)));
        assert!(Auth::from_args(Some("t"), Some("u:p")).is_err());
        assert!(Auth::from_args(None, Some("no-colon")).is_err());
        let e = Auth::from_args(Some("${env:CHAINPULSE_TEST_SURELY_UNSET_VAR}"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CHAINPULSE_TEST_SURELY_UNSET_VAR"), "{e}");
    }
}
