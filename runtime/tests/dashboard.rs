//! The dashboard's files as the server sends them: the page at
//! `/dashboard`, each asset with its content type and caching, a `404` for
//! any other name, and nothing that makes the browser reach past this server.

use crate::common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::TestServer;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn fetch(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// What a file of this name must be sent as.
fn expected_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

#[tokio::test]
async fn the_page_is_served_at_dashboard_with_a_strict_content_security_policy() {
    let server = TestServer::start().await;
    for path in ["/dashboard", "/dashboard/"] {
        let (status, headers, body) = fetch(server.addr, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        let csp = header(&headers, "content-security-policy");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("<title>Pigeon dashboard</title>"), "{html}");
        // Every file the page loads is one the server has.
        for reference in html.split('"').filter(|s| s.starts_with("/dashboard/")) {
            let (status, _, _) = fetch(server.addr, reference, &[]).await;
            assert_eq!(status, StatusCode::OK, "index.html loads {reference}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn each_asset_has_its_content_type_and_vendored_files_are_cached_for_good() {
    let server = TestServer::start().await;
    for asset in pigeon::dashboard::ASSETS {
        let path = format!("/dashboard/{}", asset.path);
        let (status, headers, body) = fetch(server.addr, &path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            expected_type(asset.path),
            "{path}"
        );
        assert_eq!(&body[..], asset.body, "{path}");
        let cache = header(&headers, "cache-control");
        if asset.path.starts_with("vendor/") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
        } else {
            assert_eq!(cache, "no-cache", "{path}");
        }
        // A copy the browser has already is confirmed, not sent again.
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with('"'), "{path}: {etag:?}");
        let (status, _, body) = fetch(server.addr, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(body.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_files_are_not_found_and_other_methods_not_allowed() {
    let server = TestServer::start().await;
    for path in [
        "/dashboard/nothing.js",
        "/dashboard/vendor",
        "/dashboard/vendor/uplot.min.js",
        "/dashboard/../Cargo.toml",
        "/dashboard/%2e%2e/Cargo.toml",
    ] {
        let (status, headers, body) = fetch(server.addr, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            "application/json",
            "{path}"
        );
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "not_found", "{path}");
    }
    let reply = server
        .admin()
        .send(hyper::Method::POST, "/dashboard/app.js", None, &[])
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&reply.headers, "allow"), "GET");
    server.stop().await;
}

/// The text with `/* */` comments (JavaScript, CSS) and `<!-- -->` ones
/// (HTML) taken out.
fn without_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let next = [("/*", "*/"), ("<!--", "-->")]
            .into_iter()
            .filter_map(|(open, close)| rest.find(open).map(|at| (at, open, close)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, open, close)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        rest = &rest[at + open.len()..];
        rest = rest
            .find(close)
            .map_or("", |end| &rest[end + close.len()..]);
    }
}

#[test]
fn no_asset_makes_the_browser_fetch_from_elsewhere() {
    for asset in pigeon::dashboard::ASSETS {
        if asset.path.ends_with("LICENSE") {
            continue;
        }
        let text = std::str::from_utf8(asset.body).unwrap();
        // An SVG names its XML namespace by URL; nothing is fetched from it.
        let text = without_comments(text).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for scheme in ["http://", "https://", "//cdn", "url(http"] {
            assert!(
                !text.contains(scheme),
                "{} refers to `{scheme}`: {}",
                asset.path,
                text.split(scheme)
                    .nth(1)
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect::<String>()
            );
        }
    }
}

#[test]
fn comments_are_taken_out_but_code_is_kept() {
    assert_eq!(
        without_comments("/*! https://example.org */var a=1;<!-- b -->c"),
        "var a=1;c"
    );
    assert_eq!(without_comments("x /* open"), "x ");
}
