//! The live page at `GET /` on the metrics port: per chain the KPIs against
//! their targets, the last hour as small charts, tokens and cost by model,
//! top spenders, unpriced models, recent requests with trace links, and
//! chainpulse's own health — something to look at without Grafana.
//!
//! Self-contained by construction: three small files (`page/index.html`,
//! `page/page.js`, `page/page.css`, plain JS drawing inline SVG, no
//! framework) compiled into the binary with `include_str!`, reading only the
//! JSON APIs on the same port (`/api/v1/kpis`, `/api/v1/history`,
//! `/api/v1/top`, `/api/v1/health`). The Content-Security-Policy below
//! makes that a rule the browser enforces: nothing from another origin, no
//! inline script or style, no plugins, no framing — so a chain name (chosen
//! by whoever sends spans) that slips past the page's escaping still cannot
//! run. The page itself inserts every string from the data as text
//! (`textContent`), never as markup.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// The page's routes, relative to the metrics port's root.
pub const INDEX_PATH: &str = "/";
pub const JS_PATH: &str = "/assets/page.js";
pub const CSS_PATH: &str = "/assets/page.css";

/// Same origin only, no inline script or style, nothing embeddable.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Total size of the embedded assets, in bytes (the README states it).
pub fn assets_bytes() -> usize {
    INDEX_HTML.len() + PAGE_JS.len() + PAGE_CSS.len()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // The assets change only with the binary; a restart after an
            // upgrade must not keep serving the old script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_references_only_its_own_assets() {
        let size = assets_bytes();
        assert!(size < 60 * 1024, "page assets are {size} bytes");
        assert!(INDEX_HTML.contains(&format!("src=\"{JS_PATH}\"")));
        assert!(INDEX_HTML.contains(&format!("href=\"{CSS_PATH}\"")));
        for text in [INDEX_HTML, PAGE_JS, PAGE_CSS] {
            // No external fetches: every URL the page loads is relative (the
            // SVG namespace is a name, not a request).
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            // Markup is never built from strings.
            assert!(!text.contains("innerHTML") && !text.contains("insertAdjacentHTML"));
        }
        // No inline script or style for the CSP to forbid.
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains(" style="));
        let handlers = INDEX_HTML
            .split(|c: char| c.is_whitespace() || c == '<')
            .filter(|w| w.starts_with("on") && w.contains('='))
            .count();
        assert_eq!(handlers, 0, "inline event handlers in index.html");
    }
}
