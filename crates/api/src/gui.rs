//! The web command center: one page and its assets, embedded in the binary and served
//! at `/` by the process that serves the API (no separate server, no CDN, nothing
//! fetched at run time).
//!
//! The page is hand-written HTML, CSS and JavaScript modules in `src/gui/`, with no
//! build step. It talks only to the JSON API under `/api/` and the WebSocket
//! `/ws/threads/{id}`, with the token the person pastes (kept in `sessionStorage`).
//! The page itself needs no authentication, since it must load before its user can
//! log in; every API route keeps its own. Responses carry a Content-Security-Policy
//! that allows scripts, styles and connections to this origin only, so an injected
//! inline script does not run.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of every page and asset: this origin only (WebSockets
/// to it included), no inline scripts or styles, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One embedded file and the path it is served at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Everything the command center is made of.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("gui/index.html"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("gui/app.css"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("gui/app.js"),
    },
    Asset {
        path: "/assets/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("gui/api.js"),
    },
    Asset {
        path: "/assets/dag.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("gui/dag.js"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("gui/favicon.svg"),
    },
];

/// The command center's routes: `/` and `/assets/...`, without authentication.
pub fn router() -> Router {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |request: Request| async move { serve(asset, &request) }),
        )
    })
}

/// Answers with the asset, or 304 when the browser's copy (by ETag) is current. Assets
/// are revalidated on every load (`no-cache`), so a new deckhand is never served
/// stale JavaScript.
fn serve(asset: &Asset, request: &Request) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(asset.body)[..16]));
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_are_served_and_runs_no_inline_script() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        for reference in page
            .split(['"', '\''])
            .filter(|part| part.starts_with("/assets/"))
        {
            assert!(
                ASSETS.iter().any(|asset| asset.path == reference),
                "index.html refers to {reference}, which is not embedded"
            );
        }
        for script in page.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or("");
            assert!(tag.contains("src="), "an inline <script> in index.html");
        }
        assert!(
            !page.contains(" onclick="),
            "an inline event handler in index.html"
        );
        assert!(!page.contains(" style="), "an inline style in index.html");
    }

    #[test]
    fn modules_import_only_embedded_modules() {
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("JavaScript is UTF-8");
            for line in text.lines().filter(|line| line.starts_with("import ")) {
                let target = line
                    .split(['"', '\''])
                    .nth(1)
                    .expect("an import names its module");
                let path = format!("/assets/{}", target.trim_start_matches("./"));
                assert!(
                    ASSETS.iter().any(|asset| asset.path == path),
                    "{} imports {target}, which is not embedded",
                    asset.path
                );
            }
        }
    }
}
