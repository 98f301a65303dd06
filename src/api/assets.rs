//! The dashboard's files, compiled into the binary and served at `GET /` and
//! `GET /assets/NAME`: the page, its script and style, and the vendored charting library
//! (uPlot, `assets/README.md`). Nothing is read from disk or fetched from elsewhere, so the
//! dashboard works on a node without internet access and a browser asks only the node.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin: a page
//! that tried to load anything from another host would be refused by the browser.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Only the node itself: scripts, styles, images and `fetch` calls (no inline script).
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const PAGE: &str = include_str!("dashboard.html");

/// `(name, content type, bytes)` of every file under `/assets/`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dashboard.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("assets/uPlot.LICENSE"),
    ),
];

/// The content type and bytes of an asset, `None` for an unknown name.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, kind, bytes)| (kind, bytes))
}

fn headers(kind: &'static str) -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// `GET /`: the page.
pub async fn page() -> Response {
    (headers("text/html; charset=utf-8"), PAGE).into_response()
}

/// `GET /assets/NAME`: a file of [`ASSETS`], else 404. They change only with the binary;
/// a short cache keeps an upgraded node's page from running an old script for long.
pub async fn file(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some((kind, bytes)) => (
            headers(kind),
            [(header::CACHE_CONTROL, "public, max-age=300")],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_with_its_type() {
        let (kind, bytes) = asset("uPlot.iife.min.js").unwrap();
        assert!(kind.starts_with("text/javascript"));
        assert!(bytes.starts_with(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
        assert!(asset("dashboard.css").unwrap().0.starts_with("text/css"));
        assert!(asset("../mod.rs").is_none());
        assert!(asset("").is_none());
    }

    #[test]
    fn the_page_loads_only_embedded_assets() {
        for src in PAGE
            .split("src=\"")
            .skip(1)
            .chain(PAGE.split("href=\"").skip(1))
        {
            let url = &src[..src.find('"').unwrap()];
            let name = url.strip_prefix("/assets/").unwrap_or_else(|| {
                assert!(url.starts_with("data:"), "{url} is not embedded");
                ""
            });
            assert!(name.is_empty() || asset(name).is_some(), "{url} is missing");
        }
    }
}
