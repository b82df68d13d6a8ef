//! Trace links: from a number (an exemplar, a slow or costly request in the
//! KPI API or `chainpulse report`) to the trace that caused it, in whatever
//! UI holds the traces.
//!
//! `[links] trace_url` is a template with `{trace_id}`, `{span_id}` and
//! `{service}`; a preset (`langsmith`, `langfuse`, `phoenix`, `jaeger`,
//! `tempo`, the forwarding presets' names) builds it from `base_url` and,
//! where the UI files traces under a project, `project`. The template is
//! checked when the config loads — an unknown placeholder is refused with
//! the key named — so a link is never half-substituted at request time.
//! Values are percent-encoded where they land (a service name may hold
//! anything a client sent).

use crate::config::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// The placeholders a `trace_url` may use.
pub const PLACEHOLDERS: [&str; 3] = ["trace_id", "span_id", "service"];

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LinkPreset {
    Langsmith,
    Langfuse,
    Phoenix,
    Jaeger,
    Tempo,
}

impl LinkPreset {
    fn default_base(self) -> &'static str {
        match self {
            LinkPreset::Langsmith => "https://smith.langchain.com",
            LinkPreset::Langfuse => "https://cloud.langfuse.com",
            LinkPreset::Phoenix => "http://localhost:6006",
            LinkPreset::Jaeger => "http://localhost:16686",
            LinkPreset::Tempo => "http://localhost:3000",
        }
    }

    fn needs_project(self) -> Option<&'static str> {
        match self {
            LinkPreset::Langsmith => {
                Some("the LangSmith project id (the UUID in the project's URL)")
            }
            LinkPreset::Langfuse => Some("the Langfuse project id (Settings → project id)"),
            LinkPreset::Phoenix => Some("the Phoenix project id (the id in the project's URL)"),
            LinkPreset::Tempo => Some("the uid of the Tempo data source in Grafana"),
            LinkPreset::Jaeger => None,
        }
    }

    /// The template, `base` without a trailing slash.
    fn template(self, base: &str, project: &str) -> String {
        match self {
            // LangSmith files OTLP traces as runs: its trace id is the
            // OTel trace id as a UUID, which its project page opens with
            // `peek`. (Needs the 32-hex id; LangSmith accepts it unhyphenated.)
            LinkPreset::Langsmith => format!("{base}/projects/p/{project}?peek={{trace_id}}"),
            LinkPreset::Langfuse => format!("{base}/project/{project}/traces/{{trace_id}}"),
            LinkPreset::Phoenix => format!("{base}/projects/{project}/traces/{{trace_id}}"),
            LinkPreset::Jaeger => format!("{base}/trace/{{trace_id}}"),
            // Grafana Explore, one pane, a TraceQL query for the trace id
            // on the Tempo data source `project` (URL-encoded JSON).
            LinkPreset::Tempo => format!(
                "{base}/explore?schemaVersion=1&panes=%7B%22a%22%3A%7B%22datasource%22%3A%22{project}%22%2C%22queries%22%3A%5B%7B%22refId%22%3A%22A%22%2C%22datasource%22%3A%7B%22type%22%3A%22tempo%22%2C%22uid%22%3A%22{project}%22%7D%2C%22queryType%22%3A%22traceql%22%2C%22query%22%3A%22{{trace_id}}%22%7D%5D%2C%22range%22%3A%7B%22from%22%3A%22now-1h%22%2C%22to%22%3A%22now%22%7D%7D%7D&orgId=1"
            ),
        }
    }
}

/// `[links]`: where a trace id leads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// A URL template with `{trace_id}`, `{span_id}`, `{service}`. Wins over
    /// a preset.
    pub trace_url: Option<String>,
    /// A UI whose trace URL chainpulse knows.
    pub preset: Option<LinkPreset>,
    /// The UI's address, for a preset (default: the UI's usual local or
    /// cloud address).
    pub base_url: Option<String>,
    /// Project id (LangSmith, Langfuse, Phoenix) or Tempo data source uid
    /// (Grafana), for the presets that need one.
    pub project: Option<String>,
}

impl LinksConfig {
    /// The effective template, checked; `None` when no links are set.
    pub fn template(&self) -> Result<Option<String>, ConfigError> {
        let template = match (&self.trace_url, self.preset) {
            (Some(t), _) => {
                check_template("links.trace_url", t)?;
                t.clone()
            }
            (None, Some(p)) => {
                let base = self
                    .base_url
                    .as_deref()
                    .unwrap_or(p.default_base())
                    .trim_end_matches('/');
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    return Err(invalid(
                        "links.base_url",
                        format!("{base:?} is not an http:// or https:// URL"),
                    ));
                }
                let project = match (p.needs_project(), self.project.as_deref()) {
                    (Some(what), None | Some("")) => {
                        return Err(invalid(
                            "links.project",
                            format!("the {p:?} preset needs {what}"),
                        ))
                    }
                    (_, Some(v)) => encode(v),
                    (None, None) => String::new(),
                };
                let t = p.template(base, &project);
                check_template("links.base_url", &t)?;
                t
            }
            (None, None) => {
                for (key, set) in [
                    ("links.base_url", self.base_url.is_some()),
                    ("links.project", self.project.is_some()),
                ] {
                    if set {
                        return Err(invalid(key, "needs links.preset"));
                    }
                }
                return Ok(None);
            }
        };
        Ok(Some(template))
    }

    /// The checked links, ready to render.
    pub fn build(&self) -> Result<TraceLinks, ConfigError> {
        Ok(TraceLinks {
            template: self.template()?,
        })
    }
}

fn check_template(key: &str, t: &str) -> Result<(), ConfigError> {
    if !(t.starts_with("http://") || t.starts_with("https://")) {
        return Err(invalid(
            key,
            format!("{t:?} is not an http:// or https:// URL"),
        ));
    }
    let mut rest = t;
    let mut any = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(invalid(key, "a `{` without its `}`"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(invalid(
                key,
                format!(
                    "unknown placeholder {{{name}}} (known: {{trace_id}}, {{span_id}}, {{service}})"
                ),
            ));
        }
        any |= name == "trace_id";
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(invalid(key, "a `}` without its `{`"));
    }
    if !any {
        return Err(invalid(key, "must contain {trace_id}"));
    }
    Ok(())
}

/// Renders trace links from the checked template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceLinks {
    template: Option<String>,
}

impl TraceLinks {
    pub fn is_enabled(&self) -> bool {
        self.template.is_some()
    }

    /// The template as configured (for the Grafana data link, which uses its
    /// own `${__value.raw}` syntax).
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// The link to one trace; `None` when no links are configured.
    pub fn url(&self, trace_id: &str, span_id: &str, service: &str) -> Option<String> {
        let t = self.template.as_deref()?;
        let mut out = String::with_capacity(t.len() + 64);
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            match &after[..close] {
                "trace_id" => out.push_str(&encode(trace_id)),
                "span_id" => out.push_str(&encode(span_id)),
                "service" => out.push_str(&encode(service)),
                _ => return None,
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0af7651916cd43dd8448eb211c80319c";
    const S: &str = "b7ad6b7169203331";

    fn links(toml_text: &str) -> Result<TraceLinks, ConfigError> {
        let c: LinksConfig = toml::from_str(toml_text).expect("toml");
        c.build()
    }

    #[test]
    fn template_placeholders_are_substituted_and_encoded() {
        let l =
            links(r#"trace_url = "https://ui.example/t/{trace_id}?span={span_id}&svc={service}""#)
                .expect("valid");
        assert_eq!(
            l.url(T, S, "rag app/é").as_deref(),
            Some(
                "https://ui.example/t/0af7651916cd43dd8448eb211c80319c?span=b7ad6b7169203331&svc=rag%20app%2F%C3%A9"
            )
        );
        assert_eq!(TraceLinks::default().url(T, S, "x"), None);
    }

    #[test]
    fn unknown_placeholders_and_bad_templates_are_refused_with_the_key() {
        for (text, key, needle) in [
            (
                r#"trace_url = "https://x/{traceid}""#,
                "links.trace_url",
                "{traceid}",
            ),
            (
                r##"trace_url = "https://x/{trace_id""##,
                "links.trace_url",
                "without",
            ),
            (
                r#"trace_url = "https://x/{span_id}""#,
                "links.trace_url",
                "{trace_id}",
            ),
            (r#"trace_url = "x/{trace_id}""#, "links.trace_url", "http"),
            (r#"preset = "langfuse""#, "links.project", "project id"),
            (r#"base_url = "http://x""#, "links.base_url", "preset"),
        ] {
            let e = links(text).expect_err(text).to_string();
            assert!(e.starts_with(key) && e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn presets_link_each_ui() {
        let cases = [
            (
                "preset = \"jaeger\"\nbase_url = \"http://jaeger:16686/\"",
                format!("http://jaeger:16686/trace/{T}"),
            ),
            (
                "preset = \"langfuse\"\nproject = \"cm1abc\"",
                format!("https://cloud.langfuse.com/project/cm1abc/traces/{T}"),
            ),
            (
                "preset = \"phoenix\"\nproject = \"UHJvamVjdDox\"",
                format!("http://localhost:6006/projects/UHJvamVjdDox/traces/{T}"),
            ),
            (
                "preset = \"langsmith\"\nproject = \"8c1e\"",
                format!("https://smith.langchain.com/projects/p/8c1e?peek={T}"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(links(text).expect(text).url(T, S, "svc"), Some(want));
        }
        let tempo =
            links("preset = \"tempo\"\nbase_url = \"http://grafana:3000\"\nproject = \"tempo\"")
                .expect("tempo")
                .url(T, S, "svc")
                .expect("url");
        assert!(tempo.starts_with("http://grafana:3000/explore?"), "{tempo}");
        assert!(
            tempo.contains(&format!("%22query%22%3A%22{T}%22")),
            "{tempo}"
        );
    }
}
