//! The web dashboard at `/dashboard`: static HTML, CSS and JavaScript
//! embedded in the binary, served by the API's own listener. The pages call
//! the JSON API from the browser with the user's key, so what a page shows is
//! exactly what that key's role may read; nothing is rendered here and no
//! second server or Node build is needed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use crate::api::{ApiError, Response};

/// One embedded file.
pub struct Asset {
    /// Its path under `/dashboard/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Versioned vendor files never change under their name.
    pub immutable: bool,
}

macro_rules! asset {
    ($path:literal, $type:literal, $immutable:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/dashboard/", $path)),
            immutable: $immutable,
        }
    };
}

/// Everything the dashboard serves. `index.html` is also the answer for
/// `/dashboard` and `/dashboard/`; the pages route by the URL's fragment.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8", false),
    asset!("app.js", "text/javascript; charset=utf-8", false),
    asset!("app.css", "text/css; charset=utf-8", false),
    asset!("favicon.svg", "image/svg+xml", false),
    asset!(
        "vendor/uplot-1.6.32.min.js",
        "text/javascript; charset=utf-8",
        true
    ),
    asset!(
        "vendor/uplot-1.6.32.min.css",
        "text/css; charset=utf-8",
        true
    ),
    asset!("vendor/uplot-LICENSE", "text/plain; charset=utf-8", true),
];

/// Scripts, styles, images and API calls from this origin only; no inline
/// script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The asset at `rest` (the path segments after `dashboard`).
pub fn asset(rest: &[&str]) -> Option<&'static Asset> {
    let path = match rest {
        [] | [""] => "index.html",
        _ => &rest.join("/"),
    };
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /dashboard/...`: the embedded file, `304` when the browser's copy
/// is current, `404` for anything else.
pub fn serve(rest: &[&str], headers: &HeaderMap) -> Result<Response, ApiError> {
    let Some(asset) = asset(rest) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file `{}`", rest.join("/")),
        ));
    };
    let etag = etag(asset);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let body = if fresh {
        Bytes::new()
    } else {
        Bytes::from_static(asset.body)
    };
    let mut response = hyper::Response::new(Full::new(body));
    if fresh {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(response)
}

/// A strong validator from the file's bytes (FNV-1a; stable across builds
/// and machines, unlike std's hasher).
fn etag(asset: &Asset) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in asset.body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_answers_for_the_bare_path_and_files_by_name() {
        assert_eq!(asset(&[]).map(|a| a.path), Some("index.html"));
        assert_eq!(asset(&[""]).map(|a| a.path), Some("index.html"));
        assert_eq!(
            asset(&["vendor", "uplot-1.6.32.min.js"]).map(|a| a.content_type),
            Some("text/javascript; charset=utf-8")
        );
        assert!(asset(&["..", "Cargo.toml"]).is_none());
        assert!(asset(&["vendor"]).is_none());
    }

    #[test]
    fn validators_differ_by_content() {
        let tags: std::collections::HashSet<String> = ASSETS.iter().map(etag).collect();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
