//! The OpenAPI document at `GET /v1/openapi.json` against the code: the
//! router's table of routes and the document list the same operations, and
//! each documented operation reaches a handler with a documented status.

use crate::common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{ADMIN_KEY, TestServer};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(pigeon::api::OPENAPI).expect("openapi.json is JSON")
}

/// `/v1/messages/{id}` → `/v1/messages/{}`: parameter names and the
/// router's `{rest*}` (which OpenAPI writes as one `{path}` parameter)
/// compare equal.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every (path shape, METHOD) the document describes.
fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            assert!(
                METHODS.contains(&key.as_str()) || key == "parameters",
                "{path}: unexpected key {key}"
            );
            if METHODS.contains(&key.as_str()) {
                operations.insert((shape(path), key.to_ascii_uppercase()));
            }
        }
    }
    operations
}

fn routed() -> BTreeSet<(String, String)> {
    pigeon::api::ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (shape(path), (*m).to_owned())))
        .collect()
}

#[test]
fn the_document_and_the_routes_list_the_same_operations() {
    let (documented, routed) = (documented(), routed());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in openapi.json that ROUTES lacks: {unrouted:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{} references", refs.len());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "{reference} resolves");
    }
    // Each operation has an id, lists its error codes, and each error
    // answer it documents is the shared Error shape.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "{id} twice");
            assert!(
                operation["x-error-codes"].is_array(),
                "{method} {path}: x-error-codes"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = match response["$ref"].as_str() {
                    Some(r) => doc.pointer(r.strip_prefix('#').unwrap()).unwrap(),
                    None => response,
                };
                if status.starts_with('4') && path != "/v1/carriers/{name}/callback/{secret}/{path}"
                {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

fn collect_refs<'a>(value: &'a Value, into: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                into.push(r);
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    /// The router's 405 has one; a plugin's refusal of a method does not.
    allow: Option<String>,
    body: Bytes,
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<(&str, &str)>,
) -> Answer {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("http://{}{path}", server.addr));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let bytes = match body {
        Some((content_type, text)) => {
            request = request.header("content-type", content_type);
            Bytes::copy_from_slice(text.as_bytes())
        }
        None => Bytes::new(),
    };
    let response = client
        .request(request.body(Full::new(bytes)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        allow,
        body,
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_key() {
    let server = TestServer::start().await;
    let answer = send(&server, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    let served: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(served, document());
    server.stop().await;
}

/// A value for a path parameter that a handler will look up (and not find,
/// mostly): what matters is that the router hands the request over.
fn path_for(template: &str, callback: &str) -> String {
    if template.starts_with("/v1/carriers/{name}/callback/") {
        return format!("{callback}/dlr");
    }
    template
        .replace("{number}", "%2B84987654321")
        .replace("{id}", "x_unknown")
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let server = TestServer::start().await;
    // The sandbox carrier's callback route, secret included, so that the
    // callback operations reach the plugin too.
    let carriers = send(&server, "GET", "/v1/carriers", Some(ADMIN_KEY), None).await;
    assert_eq!(carriers.status, StatusCode::OK);
    let carriers: Value = serde_json::from_slice(&carriers.body).unwrap();
    let callback_url = carriers["data"][0]["callback_url"].as_str().unwrap();
    let callback = &callback_url[callback_url.find("/v1/").unwrap()..];

    let doc = document();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let path = path_for(template, callback);
            let body = operation["requestBody"]["content"]
                .as_object()
                .map(|content| match content.keys().next().unwrap().as_str() {
                    "application/json" => ("application/json", "{}"),
                    other => (other, ""),
                });
            let method = method.to_ascii_uppercase();
            let answer = send(&server, &method, &path, Some(ADMIN_KEY), body).await;
            let text = String::from_utf8_lossy(&answer.body);
            let what = format!("{method} {path}: {} {text}", answer.status);
            if let Some(problem) = problem(operation, &answer, &text) {
                problems.push(format!("{problem}: {what}"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, documented().len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    server.stop().await;
}

/// What is wrong with `answer` to a request for `operation`, if anything.
fn problem(operation: &Value, answer: &Answer, text: &str) -> Option<&'static str> {
    if answer.allow.is_some() {
        return Some("the router's 405");
    }
    if text.contains("no such endpoint") {
        return Some("the router's 404");
    }
    if operation["responses"].get(answer.status.as_str()).is_none() {
        return Some("undocumented status");
    }
    if answer.content_type == "application/json" && !answer.status.is_success() {
        let body: Value = serde_json::from_str(text).ok()?;
        let code = body["error"]["code"].as_str()?;
        let codes = operation["x-error-codes"].as_array()?;
        if !codes.iter().any(|c| c == code) {
            return Some("error code not in x-error-codes");
        }
    }
    None
}
