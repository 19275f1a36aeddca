//! The messages API over HTTP: sending and its summary, validation errors,
//! idempotency, scheduling, cancelation, validity, batches, reading,
//! listing and encoding analysis.

use crate::common;

use common::{
    ADMIN_KEY, Client, Reply, Tenant, TestServer, assert_422, assert_error, event_statuses,
    insert_stored, new_tenant, open_store, raw_request, sorted_keys, stored_message, wait_until,
};
use hyper::{Method, StatusCode};
use pigeon::model::{MessageType, Status};
use pigeon::store::messages::{get_events, get_message, get_parts};
use pigeon::store::queue::claim_due;
use pigeon::time::{now_ms, parse_rfc3339, to_rfc3339};
use serde_json::{Value, json};

const VN: &str = "+84912345678";
const HK: &str = "+85261234567";
const MIB: usize = 1024 * 1024;

async fn start() -> (TestServer, Tenant) {
    let server = TestServer::start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    (server, tenant)
}

async fn post_message(client: &Client, body: &Value) -> Reply {
    client.post_with_headers("/v1/messages", body, &[]).await
}

async fn post_bytes(client: &Client, path: &str, bytes: &[u8]) -> Reply {
    client
        .send(Method::POST, path, Some(bytes.to_vec()), &[])
        .await
}

/// Posts a message that must be refused with 422, `code` and `field`.
async fn assert_refused(client: &Client, body: Value, code: &str, field: Option<&str>) -> Reply {
    let reply = post_message(client, &body).await;
    assert_422(&reply, code, field);
    reply
}

async fn get_message_json(client: &Client, id: &str) -> Value {
    let (status, message) = client.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    message
}

/// RFC 3339 for `ms` milliseconds from now.
fn from_now(ms: i64) -> String {
    to_rfc3339(now_ms() + ms)
}

fn millis(time: &Value) -> i64 {
    parse_rfc3339(time.as_str().unwrap()).unwrap_or_else(|| panic!("not RFC 3339: {time}"))
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the clock is at least 2 ms past `created_at`, so the next
/// message's id and `created_at` both sort after the previous one's.
async fn next_millisecond(created_at: &Value) {
    let after = millis(created_at) + 2;
    wait_until("the clock to move on", || async {
        (now_ms() >= after).then_some(())
    })
    .await;
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- Sending ----------------------------------------------------------------

#[tokio::test]
async fn send_answers_202_with_the_message_summary() {
    let (_server, acme) = start().await;
    let before = now_ms();
    let reply = post_message(
        &acme.developer,
        &json!({"to": VN, "body": "Your order has shipped", "from": "Pigeon"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(
        reply.headers.get("content-type").unwrap(),
        "application/json"
    );
    let summary = &reply.body;
    assert_eq!(
        sorted_keys(summary),
        [
            "country",
            "created_at",
            "encoding",
            "from",
            "id",
            "number_id",
            "pool_id",
            "segments",
            "status",
            "to",
            "type"
        ]
    );
    let id = summary["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 30, "{id}");
    assert_eq!(summary["status"], "queued");
    assert_eq!(summary["to"], VN);
    assert_eq!(summary["from"], "Pigeon");
    assert_eq!(summary["country"], "VN");
    assert_eq!(summary["encoding"], "gsm7");
    assert_eq!(summary["segments"], 1);
    assert_eq!(summary["type"], "transactional", "the default type");
    let created_at = millis(&summary["created_at"]);
    assert!((before..=now_ms()).contains(&created_at), "{summary}");
    assert!(reply.headers.get("idempotent-replayed").is_none());

    let message = get_message_json(&acme.developer, id).await;
    assert_eq!(message["id"], id);
    assert_eq!(message["body"], "Your order has shipped");
    assert_eq!(message["created_at"], summary["created_at"]);
}

#[tokio::test]
async fn optional_fields_are_kept_and_shown() {
    let (_server, acme) = start().await;
    let id = acme
        .developer
        .send_message(json!({
            "to": VN,
            "body": "Flash sale today",
            "type": "marketing",
            "callback_url": "https://example.com/hooks/sms",
            "metadata": {"campaign": "spring", "order": "42"},
            "from": "+84900000000",
        }))
        .await;
    let message = get_message_json(&acme.developer, &id).await;
    assert_eq!(message["type"], "marketing");
    assert_eq!(message["from"], "+84900000000");
    assert_eq!(message["callback_url"], "https://example.com/hooks/sms");
    assert_eq!(
        message["metadata"],
        json!({"campaign": "spring", "order": "42"})
    );
    assert_eq!(message["sandbox"], false);
    assert_eq!(message["send_at"], Value::Null);

    let id = acme
        .developer
        .send_message(json!({"to": VN, "body": "Your code is 123456", "type": "otp"}))
        .await;
    let message = get_message_json(&acme.developer, &id).await;
    assert_eq!(message["type"], "otp");
    assert_eq!(message["metadata"], json!({}));
    assert_eq!(message["callback_url"], Value::Null);
}

#[tokio::test]
async fn national_numbers_are_normalised_with_the_country_hint() {
    let (_server, acme) = start().await;
    let cases = [
        (json!({"to": "0912345678", "country": "VN"}), VN, "VN"),
        (json!({"to": "0912 345 678", "country": "vn"}), VN, "VN"),
        (json!({"to": "61234567", "country": "HK"}), HK, "HK"),
        (json!({"to": "+852 6123 4567"}), HK, "HK"),
        // An E.164 number keeps its own country whatever the hint says.
        (json!({"to": VN, "country": "HK"}), VN, "VN"),
    ];
    for (mut request, e164, country) in cases {
        request["body"] = json!("Hello");
        let reply = post_message(&acme.developer, &request).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{request}: {}",
            reply.body
        );
        assert_eq!(reply.body["to"], e164, "{request}");
        assert_eq!(reply.body["country"], country, "{request}");
    }
}

#[tokio::test]
async fn encoding_and_segments_are_reported() {
    let (_server, acme) = start().await;
    let cases = [
        ("Your order has shipped".to_owned(), "gsm7", 1),
        ("您的验证码是 123456".to_owned(), "ucs2", 1),
        ("a".repeat(160), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        // "€" takes two septets: 159 + 2 = 161.
        (format!("€{}", "a".repeat(159)), "gsm7", 2),
        ("您".repeat(70), "ucs2", 1),
        ("您".repeat(71), "ucs2", 2),
        // Ten parts of 153 septets is the most a message may take.
        ("a".repeat(1530), "gsm7", 10),
        ("您".repeat(670), "ucs2", 10),
    ];
    for (body, encoding, segments) in cases {
        let reply = post_message(&acme.developer, &json!({"to": VN, "body": body})).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        assert_eq!(reply.body["encoding"], encoding, "{body}");
        assert_eq!(reply.body["segments"], segments, "{body}");
    }
    for body in ["a".repeat(1531), "您".repeat(671)] {
        assert_refused(
            &acme.developer,
            json!({"to": VN, "body": body}),
            "body_too_long",
            Some("body"),
        )
        .await;
    }
}

// ---- Errors -----------------------------------------------------------------

#[tokio::test]
async fn request_bodies_that_are_not_json_objects_are_refused() {
    let (_server, acme) = start().await;
    let client = &acme.developer;
    let reply = post_bytes(client, "/v1/messages", br#"{"to": "+84912345678","#).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_json", None);
    for empty in [&b""[..], b"  \n\t"] {
        let reply = post_bytes(client, "/v1/messages", empty).await;
        assert_422(&reply, "empty_request", None);
    }
    let reply = client.send(Method::POST, "/v1/messages", None, &[]).await;
    assert_422(&reply, "empty_request", None);
    for not_object in [
        &br#"[{"to": "+84912345678", "body": "hi"}]"#[..],
        b"\"hi\"",
        b"null",
        b"42",
    ] {
        let reply = post_bytes(client, "/v1/messages", not_object).await;
        assert_422(&reply, "invalid_request", None);
    }
    assert!(client.list_all_messages("limit=100").await.is_empty());
}

#[tokio::test]
async fn field_errors_name_the_field() {
    let (_server, acme) = start().await;
    let with = |extra: Value| {
        let mut request = json!({"to": VN, "body": "Hello"});
        for (key, value) in extra.as_object().unwrap() {
            request[key] = value.clone();
        }
        request
    };
    let cases = [
        (json!({"body": "Hello"}), "missing_field", "to"),
        (json!({"to": null, "body": "Hello"}), "missing_field", "to"),
        (
            json!({"to": 84912345678u64, "body": "Hello"}),
            "invalid_type",
            "to",
        ),
        (json!({"to": VN}), "missing_field", "body"),
        (with(json!({"body": ["Hello"]})), "invalid_type", "body"),
        (with(json!({"to": "+8412"})), "invalid_number", "to"),
        (
            with(json!({"to": "hello", "country": "VN"})),
            "invalid_number",
            "to",
        ),
        (with(json!({"to": "0912345678"})), "invalid_number", "to"),
        (
            with(json!({"to": "0912345678", "country": "XX"})),
            "invalid_country",
            "country",
        ),
        (
            with(json!({"country": "Vietnam"})),
            "invalid_country",
            "country",
        ),
        (with(json!({"body": ""})), "empty_body", "body"),
        (
            with(json!({"type": "promo"})),
            "invalid_message_type",
            "type",
        ),
        (with(json!({"type": 1})), "invalid_type", "type"),
        (
            with(json!({"from": "A very long sender"})),
            "invalid_sender",
            "from",
        ),
        (with(json!({"from": "+84-91"})), "invalid_sender", "from"),
        (
            with(json!({"send_at": "tomorrow"})),
            "invalid_time",
            "send_at",
        ),
        (
            with(json!({"send_at": "2026-01-01 09:00"})),
            "invalid_time",
            "send_at",
        ),
        (
            with(json!({"send_at": from_now(36 * 24 * 3_600_000)})),
            "send_at_too_far",
            "send_at",
        ),
        (
            with(json!({"send_at": "0000-01-01T00:00:00Z"})),
            "send_at_in_past",
            "send_at",
        ),
        (
            with(json!({"send_at": from_now(-3_600_000)})),
            "send_at_in_past",
            "send_at",
        ),
        (
            with(json!({"callback_url": "ftp://example.com/hook"})),
            "invalid_url",
            "callback_url",
        ),
        (
            with(json!({"callback_url": "https://"})),
            "invalid_url",
            "callback_url",
        ),
        (
            with(json!({"callback_url": "https://exa mple.com"})),
            "invalid_url",
            "callback_url",
        ),
        (
            with(json!({"validity_secs": 0})),
            "invalid_validity",
            "validity_secs",
        ),
        (
            with(json!({"validity_secs": 7 * 24 * 3600 + 1})),
            "invalid_validity",
            "validity_secs",
        ),
        (
            with(json!({"validity_secs": -5})),
            "invalid_type",
            "validity_secs",
        ),
        (
            with(json!({"validity_secs": "60"})),
            "invalid_type",
            "validity_secs",
        ),
        (
            with(json!({"metadata": {"order": 42}})),
            "invalid_metadata",
            "metadata.order",
        ),
        (
            with(json!({"metadata": {"order": null}})),
            "invalid_metadata",
            "metadata.order",
        ),
        (
            with(json!({"metadata": "order=42"})),
            "invalid_type",
            "metadata",
        ),
        (
            with(json!({"priority": "high"})),
            "unknown_field",
            "priority",
        ),
    ];
    for (request, code, field) in cases {
        let reply = post_message(&acme.developer, &request).await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{request}: {}",
            reply.body
        );
        assert_422(&reply, code, Some(field));
    }
    let reply = assert_refused(
        &acme.developer,
        with(json!({"priority": "high"})),
        "unknown_field",
        Some("priority"),
    )
    .await;
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("priority"), "{message}");

    // The boundaries just inside the limits are accepted.
    for extra in [
        json!({"validity_secs": 1}),
        json!({"validity_secs": 7 * 24 * 3600}),
        json!({"from": "My Shop 123"}),
        json!({"callback_url": "http://127.0.0.1:9000"}),
        json!({"send_at": from_now(34 * 24 * 3_600_000)}),
    ] {
        let reply = post_message(&acme.developer, &with(extra.clone())).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{extra}: {}",
            reply.body
        );
    }
    // Nothing refused was stored.
    assert_eq!(acme.developer.list_all_messages("limit=100").await.len(), 5);
}

#[tokio::test]
async fn request_bodies_over_one_mebibyte_are_refused_with_413() {
    let (server, acme) = start().await;
    // Exactly 1 MiB is read (and is only whitespace); one byte more is not.
    let reply = post_bytes(&acme.developer, "/v1/messages", &vec![b' '; MIB]).await;
    assert_422(&reply, "empty_request", None);
    let big = json!({"to": VN, "body": "a".repeat(MIB)});
    let reply = post_message(&acme.developer, &big).await;
    assert_error(
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    let reply = post_bytes(&acme.developer, "/v1/messages/batch", &vec![b' '; MIB + 1]).await;
    assert_error(
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );

    // Without a Content-Length the limit applies while reading.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: pigeon\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut body = format!("{:x}\r\n", MIB + 1).into_bytes();
    body.extend(std::iter::repeat_n(b' ', MIB + 1));
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, answer) = raw_request(server.addr, head.into_bytes(), body).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert!(
        acme.developer
            .list_all_messages("limit=100")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let (_server, acme) = start().await;
    let client = &acme.developer;
    for path in ["/v1/nope", "/", "/v1/messages/msg_X/parts", "/v2/messages"] {
        let reply = client.send(Method::GET, path, None, &[]).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found", None);
        let reply = client
            .without_key()
            .send(Method::GET, path, None, &[])
            .await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found", None);
    }
    let cases = [
        (Method::DELETE, "/v1/messages", "GET, POST"),
        (
            Method::PUT,
            "/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "GET",
        ),
        (
            Method::GET,
            "/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel",
            "POST",
        ),
        (Method::GET, "/v1/encoding/analyze", "POST"),
        (Method::POST, "/healthz", "GET"),
        (Method::GET, "/v1/accounts", "POST"),
        (Method::GET, "/v1/keys/key_X", "PATCH, DELETE"),
    ];
    for (method, path, allow) in cases {
        let reply = client.send(method.clone(), path, None, &[]).await;
        assert_error(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        );
        assert_eq!(
            reply.headers.get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
    }
}

// ---- Idempotency ------------------------------------------------------------

#[tokio::test]
async fn the_same_idempotency_key_and_body_replay_the_same_message() {
    let (_server, acme) = start().await;
    let key = [("idempotency-key", "order-1234")];
    let first = acme
        .developer
        .post_with_headers(
            "/v1/messages",
            &json!({"to": VN, "body": "Your order has shipped", "type": "transactional"}),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same request with its fields in another order is the same request.
    let again =
        br#"{"type": "transactional", "body": "Your order has shipped", "to": "+84912345678"}"#;
    let second = acme
        .developer
        .send(Method::POST, "/v1/messages", Some(again.to_vec()), &key)
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    let listed = acme.developer.list_all_messages("limit=100").await;
    assert_eq!(ids(&listed), [first.body["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn a_retried_batch_with_an_idempotency_key_replays_each_item() {
    let (_server, acme) = start().await;
    let key = [("idempotency-key", "campaign-7")];
    let batch = |second_body: &str| {
        json!({"messages": [
            {"to": VN, "body": "First"},
            {"to": VN, "body": second_body},
        ]})
    };
    let first = acme
        .developer
        .post_with_headers("/v1/messages/batch", &batch("Second"), &key)
        .await;
    assert_eq!(first.body["accepted"], 2, "{}", first.body);
    let again = acme
        .developer
        .post_with_headers("/v1/messages/batch", &batch("Second"), &key)
        .await;
    assert_eq!(again.body["accepted"], 2, "{}", again.body);
    for i in 0..2 {
        assert_eq!(
            again.body["results"][i]["message"]["id"],
            first.body["results"][i]["message"]["id"]
        );
    }
    // An item that differs from the first try is refused on its own.
    let changed = acme
        .developer
        .post_with_headers("/v1/messages/batch", &batch("Changed"), &key)
        .await;
    assert_eq!(changed.body["accepted"], 1, "{}", changed.body);
    assert_eq!(changed.body["results"][1]["status"], 409);
    assert_eq!(
        changed.body["results"][1]["error"]["code"],
        "idempotency_key_reused"
    );
    assert_eq!(acme.developer.list_all_messages("limit=100").await.len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_conflicts() {
    let (_server, acme) = start().await;
    let key = [("idempotency-key", "order-1234")];
    let first = acme
        .developer
        .post_with_headers("/v1/messages", &json!({"to": VN, "body": "Shipped"}), &key)
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    for other in [
        json!({"to": VN, "body": "Delivered"}),
        json!({"to": VN, "body": "Shipped", "type": "transactional"}),
    ] {
        let reply = acme
            .developer
            .post_with_headers("/v1/messages", &other, &key)
            .await;
        assert_error(
            &reply,
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            Some("Idempotency-Key"),
        );
    }
    assert_eq!(acme.developer.list_all_messages("limit=100").await.len(), 1);
}

#[tokio::test]
async fn idempotency_keys_belong_to_one_account() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let globex = new_tenant(&server.admin(), "Globex").await;
    let key = [("idempotency-key", "welcome-1")];
    let request = json!({"to": VN, "body": "Welcome!"});
    let a = acme
        .developer
        .post_with_headers("/v1/messages", &request, &key)
        .await;
    let b = globex
        .developer
        .post_with_headers("/v1/messages", &request, &key)
        .await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_ne!(a.body["id"], b.body["id"]);
    assert!(b.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        ids(&acme.developer.list_all_messages("limit=100").await),
        [a.body["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(&globex.developer.list_all_messages("limit=100").await),
        [b.body["id"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn idempotency_keys_must_be_1_to_255_characters() {
    let (_server, acme) = start().await;
    let request = json!({"to": VN, "body": "Hello"});
    for bad in [String::new(), "k".repeat(256)] {
        let reply = acme
            .developer
            .post_with_headers("/v1/messages", &request, &[("idempotency-key", &bad)])
            .await;
        assert_422(&reply, "invalid_idempotency_key", Some("Idempotency-Key"));
    }
    let longest = "k".repeat(255);
    let reply = acme
        .developer
        .post_with_headers("/v1/messages", &request, &[("idempotency-key", &longest)])
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
}

// ---- Scheduling, cancelation, validity --------------------------------------

#[tokio::test]
async fn a_scheduled_message_waits_and_can_be_canceled_once() {
    let (_server, acme) = start().await;
    let dev = &acme.developer;
    let send_at = from_now(3_600_000);
    let reply = post_message(
        dev,
        &json!({"to": VN, "body": "Reminder", "send_at": send_at}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["status"], "scheduled");
    let id = reply.body["id"].as_str().unwrap();

    // A message sent after it is delivered meanwhile; it is still waiting.
    let now_id = dev.send_message(json!({"to": VN, "body": "Now"})).await;
    dev.wait_for_status(&now_id, "delivered").await;
    let waiting = get_message_json(dev, id).await;
    assert_eq!(waiting["status"], "scheduled");
    assert_eq!(
        millis(&waiting["send_at"]),
        parse_rfc3339(&send_at).unwrap()
    );
    assert_eq!(waiting["parts"][0]["status"], "scheduled");
    assert_eq!(waiting["parts"][0]["attempts"], 0);
    assert_eq!(event_statuses(&waiting), ["scheduled"]);

    let (status, canceled) = dev
        .post(&format!("/v1/messages/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["id"], id);
    assert_eq!(canceled["status"], "canceled");
    let reply = dev
        .send(
            Method::POST,
            &format!("/v1/messages/{id}/cancel"),
            None,
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "not_cancelable", None);

    let message = get_message_json(dev, id).await;
    assert_eq!(message["status"], "canceled");
    assert_eq!(message["parts"][0]["status"], "canceled");
    assert_eq!(event_statuses(&message), ["scheduled", "canceled"]);
    assert_eq!(message["events"][1]["detail"], "canceled by request");

    let reply = dev
        .send(
            Method::POST,
            "/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel",
            None,
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn a_delivered_message_cannot_be_canceled() {
    let (_server, acme) = start().await;
    let id = acme
        .developer
        .send_message(json!({"to": VN, "body": "Hello"}))
        .await;
    acme.developer.wait_for_status(&id, "delivered").await;
    let reply = acme
        .developer
        .send(
            Method::POST,
            &format!("/v1/messages/{id}/cancel"),
            None,
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "not_cancelable", None);
    let message = get_message_json(&acme.developer, &id).await;
    assert_eq!(message["status"], "delivered");
}

#[tokio::test]
async fn a_message_scheduled_shortly_ahead_is_sent_at_its_time() {
    let (_server, acme) = start().await;
    let send_at = from_now(1_500);
    let reply = post_message(
        &acme.developer,
        &json!({"to": VN, "body": "Soon", "send_at": send_at}),
    )
    .await;
    assert_eq!(reply.body["status"], "scheduled", "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap();
    let message = acme.developer.wait_for_status(id, "delivered").await;
    assert_eq!(
        event_statuses(&message),
        ["scheduled", "sending", "sent", "delivered"]
    );
    let sending_at = millis(&message["events"][1]["at"]);
    assert!(
        sending_at >= parse_rfc3339(&send_at).unwrap(),
        "sent at {sending_at}, before {send_at}"
    );
}

#[tokio::test]
async fn validity_counts_from_send_at_or_from_acceptance() {
    let (_server, acme) = start().await;
    let dev = &acme.developer;
    let send_at = from_now(3_600_000);
    let scheduled = dev
        .send_message(json!({"to": VN, "body": "Later", "send_at": send_at, "validity_secs": 60}))
        .await;
    let message = get_message_json(dev, &scheduled).await;
    assert_eq!(
        millis(&message["expires_at"]),
        parse_rfc3339(&send_at).unwrap() + 60_000
    );

    // A send_at a little in the past (clocks differ) means now, and
    // validity counts from now.
    let past = dev
        .send_message(
            json!({"to": VN, "body": "Past", "send_at": from_now(-60_000), "validity_secs": 60}),
        )
        .await;
    let message = get_message_json(dev, &past).await;
    assert_ne!(message["status"], "scheduled");
    assert_eq!(
        millis(&message["expires_at"]),
        millis(&message["created_at"]) + 60_000
    );

    // Without validity_secs the default is 48 hours.
    let plain = dev.send_message(json!({"to": VN, "body": "Now"})).await;
    let message = get_message_json(dev, &plain).await;
    assert_eq!(
        millis(&message["expires_at"]),
        millis(&message["created_at"]) + 48 * 3_600_000
    );
}

#[tokio::test]
async fn a_short_validity_still_sends_a_message_scheduled_beyond_it() {
    // Were validity counted from acceptance, this message would expire
    // before its send_at; it counts from send_at, so it goes out.
    let (_server, acme) = start().await;
    let send_at = from_now(1_500);
    let id = acme
        .developer
        .send_message(json!({"to": VN, "body": "Soon", "send_at": send_at, "validity_secs": 1}))
        .await;
    let message = acme.developer.wait_for_status(&id, "delivered").await;
    assert_eq!(
        millis(&message["expires_at"]),
        parse_rfc3339(&send_at).unwrap() + 1_000
    );
}

#[tokio::test]
async fn a_retry_due_after_the_validity_expires_the_message() {
    // The first retry waits 1-2 s; the message is valid for 1 s.
    let server = TestServer::start_with(|c| {
        c.dispatch.retry_base_ms = 2_000;
        c.dispatch.retry_max_ms = 2_000;
    })
    .await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let id = acme
        .developer
        .send_message(json!({"to": "+84912340003", "body": "Flash sale", "validity_secs": 1}))
        .await;
    let message = acme.developer.wait_for_status(&id, "expired").await;
    assert_eq!(
        event_statuses(&message),
        ["queued", "sending", "queued", "expired"]
    );
    let part = &message["parts"][0];
    assert_eq!(part["status"], "expired");
    assert_eq!(part["error_code"], "expired");
    assert_eq!(part["attempts"], 1);
    let expired = &message["events"][3];
    assert_eq!(
        expired["detail"],
        "validity period passed before it could be sent"
    );
    assert!(millis(&expired["at"]) >= millis(&message["expires_at"]));
}

#[tokio::test]
async fn the_queue_expires_parts_whose_validity_passed_instead_of_claiming_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let now = now_ms();
    // Two parts, expiring exactly now; and one still valid for 1 ms.
    let mut expired = stored_message(MessageType::Otp, now - 10_000);
    expired.body = "a".repeat(200);
    expired.segments = 2;
    expired.expires_at = now;
    let mut valid = stored_message(MessageType::Marketing, now - 10_000);
    valid.expires_at = now + 1;
    let (expired_id, valid_id) = (expired.id.clone(), valid.id.clone());
    insert_stored(&store, expired).await;
    insert_stored(&store, valid).await;

    let claimed = store
        .write(move |c| claim_due(c, "node_test", now, 10, |_| false))
        .await
        .unwrap();
    let claimed: Vec<&str> = claimed.iter().map(|c| c.message.id.as_str()).collect();
    assert_eq!(claimed, [valid_id.as_str()]);

    let id = expired_id.clone();
    let (message, parts, events) = store
        .read(move |c| {
            let message = get_message(c, "acc_store_test", &id)?.unwrap();
            let events = get_events(c, &message)?;
            Ok((message, get_parts(c, &id)?, events))
        })
        .await
        .unwrap();
    assert_eq!(message.status, Status::Expired);
    for part in &parts {
        assert_eq!(part.status, Status::Expired);
        assert_eq!(part.error_code.as_deref(), Some("expired"));
        assert_eq!(part.attempts, 0);
    }
    let statuses: Vec<Status> = events.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Status::Queued, Status::Expired, Status::Expired]);
    // Nothing more to claim.
    assert!(
        store
            .write(move |c| claim_due(c, "node_test", now, 10, |_| false))
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

// ---- Batches ----------------------------------------------------------------

#[tokio::test]
async fn a_batch_accepts_the_valid_items_and_reports_the_others_in_order() {
    let (_server, acme) = start().await;
    let (status, batch) = acme
        .developer
        .post(
            "/v1/messages/batch",
            json!({"messages": [
                {"to": VN, "body": "first"},
                {"to": "12345", "body": "second"},
                {"to": "61234567", "country": "HK", "body": "third", "type": "otp"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["accepted"], 2);
    assert_eq!(batch["rejected"], 1);
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
    }
    assert_eq!(results[0]["status"], 202);
    assert_eq!(results[2]["status"], 202);
    assert_eq!(results[1]["status"], 422);
    assert_eq!(results[1]["error"]["code"], "invalid_number");
    assert_eq!(results[1]["error"]["field"], "messages[1].to");
    assert!(results[1].get("message").is_none());

    for (result, body, to) in [(&results[0], "first", VN), (&results[2], "third", HK)] {
        let summary = &result["message"];
        assert_eq!(summary["status"], "queued");
        assert_eq!(summary["to"], to);
        let message = get_message_json(&acme.developer, summary["id"].as_str().unwrap()).await;
        assert_eq!(message["body"], body);
    }
    assert_eq!(results[2]["message"]["type"], "otp");
    let mut listed = ids(&acme.developer.list_all_messages("limit=100").await);
    listed.sort();
    let mut accepted = vec![
        results[0]["message"]["id"].as_str().unwrap().to_owned(),
        results[2]["message"]["id"].as_str().unwrap().to_owned(),
    ];
    accepted.sort();
    assert_eq!(listed, accepted);
}

#[tokio::test]
async fn batch_items_errors_name_the_item() {
    let (_server, acme) = start().await;
    let (status, batch) = acme
        .developer
        .post(
            "/v1/messages/batch",
            json!({"messages": [{"to": VN, "body": "hi", "colour": "red"}, 5, {"to": VN}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(
        (batch["accepted"].as_u64(), batch["rejected"].as_u64()),
        (Some(0), Some(3))
    );
    let expected = [
        ("unknown_field", "messages[0].colour"),
        ("invalid_type", "messages[1]"),
        ("missing_field", "messages[2].body"),
    ];
    for (result, (code, field)) in batch["results"].as_array().unwrap().iter().zip(expected) {
        assert_eq!(result["status"], 422, "{result}");
        assert_eq!(result["error"]["code"], code, "{result}");
        assert_eq!(result["error"]["field"], field, "{result}");
    }
    assert!(
        acme.developer
            .list_all_messages("limit=100")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_batch_holds_1_to_1000_messages() {
    let (_server, acme) = start().await;
    let item = json!({"to": VN, "body": "Later", "send_at": from_now(3_600_000)});
    let batch_of = |n: usize| json!({"messages": vec![item.clone(); n]});
    for n in [0, 1001] {
        let reply = acme
            .developer
            .post_with_headers("/v1/messages/batch", &batch_of(n), &[])
            .await;
        assert_422(&reply, "invalid_batch_size", Some("messages"));
    }
    let shapes = [
        (json!({}), "missing_field", "messages"),
        (json!({"messages": {"to": VN}}), "invalid_type", "messages"),
        (
            json!({"messages": [item.clone()], "dry_run": true}),
            "unknown_field",
            "dry_run",
        ),
    ];
    for (request, code, field) in shapes {
        let reply = acme
            .developer
            .post_with_headers("/v1/messages/batch", &request, &[])
            .await;
        assert_422(&reply, code, Some(field));
    }
    assert!(
        acme.developer
            .list_all_messages("limit=100")
            .await
            .is_empty()
    );

    let (status, batch) = acme
        .developer
        .post("/v1/messages/batch", batch_of(1000))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["accepted"], 1000);
    assert_eq!(batch["rejected"], 0);
    assert_eq!(
        acme.developer
            .list_all_messages("status=scheduled&limit=100")
            .await
            .len(),
        1000
    );
}

// ---- Reading and listing ----------------------------------------------------

#[tokio::test]
async fn a_message_shows_its_parts_and_events() {
    let (_server, acme) = start().await;
    let id = acme
        .developer
        .send_message(json!({"to": VN, "body": "a".repeat(200)}))
        .await;
    let message = acme.developer.wait_for_status(&id, "delivered").await;
    assert_eq!(message["segments"], 2);
    let parts = message["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let mut carrier_ids = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(
            sorted_keys(part),
            [
                "attempts",
                "carrier",
                "carrier_message_id",
                "error_code",
                "index",
                "status"
            ]
        );
        assert_eq!(part["index"], i);
        assert_eq!(part["status"], "delivered");
        assert_eq!(part["attempts"], 1);
        assert_eq!(part["carrier"], "sandbox");
        assert_eq!(part["error_code"], Value::Null);
        let carrier_id = part["carrier_message_id"].as_str().unwrap();
        assert!(carrier_id.starts_with("sim-"), "{carrier_id}");
        carrier_ids.push(carrier_id);
    }
    assert_ne!(carrier_ids[0], carrier_ids[1]);

    let events = message["events"].as_array().unwrap();
    for event in events {
        assert_eq!(
            sorted_keys(event),
            ["at", "carrier", "detail", "part", "status"]
        );
        millis(&event["at"]);
    }
    assert_eq!(events[0]["status"], "queued");
    assert_eq!(events[0]["part"], Value::Null);
    assert_eq!(events[0]["carrier"], Value::Null);
    for part in 0..2 {
        let of_part: Vec<&Value> = events.iter().filter(|e| e["part"] == part).collect();
        let statuses: Vec<&str> = of_part
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["sending", "sent", "delivered"], "part {part}");
        assert_eq!(of_part[1]["carrier"], "sandbox");
        assert_eq!(of_part[2]["carrier"], "sandbox");
        assert_eq!(of_part[2]["detail"], "carrier status delivered");
    }
    assert_eq!(events.len(), 7);

    let reply = acme
        .developer
        .send(
            Method::GET,
            "/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            None,
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn the_list_is_newest_first_and_pages_without_gaps_or_repeats() {
    let (_server, acme) = start().await;
    let mut created = Vec::new();
    for n in 0..7 {
        let reply = post_message(
            &acme.developer,
            &json!({"to": VN, "body": format!("message {n}"), "send_at": from_now(3_600_000)}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        next_millisecond(&reply.body["created_at"]).await;
        created.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut walked = Vec::new();
    let mut path = "/v1/messages?limit=3".to_owned();
    let mut sizes = Vec::new();
    loop {
        let (status, page) = acme.developer.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        walked.extend(ids(data));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(data.last().unwrap()["id"], cursor);
                path = format!("/v1/messages?limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(walked, newest_first);

    // The default page holds them all, with the message fields.
    let (_, page) = acme.developer.get("/v1/messages").await;
    assert_eq!(ids(page["data"].as_array().unwrap()), newest_first);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["data"][0]["body"], "message 6");
    assert_eq!(page["data"][0]["status"], "scheduled");
}

#[tokio::test]
async fn the_list_filters_by_status_recipient_and_time() {
    let (_server, acme) = start().await;
    let dev = &acme.developer;
    let later = from_now(3_600_000);
    let delivered = dev.send_message(json!({"to": VN, "body": "one"})).await;
    dev.wait_for_status(&delivered, "delivered").await;
    let hk = post_message(dev, &json!({"to": HK, "body": "two", "send_at": later})).await;
    next_millisecond(&hk.body["created_at"]).await;
    let vn = post_message(dev, &json!({"to": VN, "body": "three", "send_at": later})).await;
    let (hk, vn_created) = (hk.body["id"].as_str().unwrap(), &vn.body["created_at"]);
    let vn = vn.body["id"].as_str().unwrap();

    // `since` in another offset, percent-encoded, and at exactly the creation time.
    let created = chrono::DateTime::from_timestamp_millis(millis(vn_created))
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    assert!(created.ends_with("+07:00"), "{created}");
    let since = percent_encode(&created);
    let cases: [(String, Vec<&str>); 9] = [
        ("status=delivered".into(), vec![delivered.as_str()]),
        ("status=scheduled".into(), vec![vn, hk]),
        ("status=failed".into(), vec![]),
        ("to=+84912345678".into(), vec![vn, delivered.as_str()]),
        ("to=%2B85261234567".into(), vec![hk]),
        ("status=scheduled&to=+84912345678".into(), vec![vn]),
        (format!("since={since}"), vec![vn]),
        (
            format!("since={}", percent_encode(&from_now(3_600_000))),
            vec![],
        ),
        (
            "since=2000-01-01T00%3A00%3A00Z&limit=2".into(),
            vec![vn, hk],
        ),
    ];
    for (query, expected) in cases {
        let (status, page) = dev.get(&format!("/v1/messages?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(page["data"].as_array().unwrap()), expected, "{query}");
    }
}

#[tokio::test]
async fn the_list_refuses_bad_parameters() {
    let (_server, acme) = start().await;
    let cases = [
        ("status=bogus", "invalid_status", "status"),
        ("status=", "invalid_status", "status"),
        ("colour=red", "unknown_parameter", "colour"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=101", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
        ("cursor=abc", "invalid_cursor", "cursor"),
        ("since=yesterday", "invalid_time", "since"),
        ("to=12345", "invalid_number", "to"),
    ];
    for (query, code, field) in cases {
        let reply = acme
            .developer
            .send(Method::GET, &format!("/v1/messages?{query}"), None, &[])
            .await;
        assert_422(&reply, code, Some(field));
    }
    for good in ["limit=1", "limit=100", "status=queued"] {
        let (status, page) = acme.developer.get(&format!("/v1/messages?{good}")).await;
        assert_eq!(status, StatusCode::OK, "{good}: {page}");
    }
}

// ---- Encoding analysis ------------------------------------------------------

#[tokio::test]
async fn encoding_analysis_prices_a_body() {
    let (_server, acme) = start().await;
    let analyze = |body: String| {
        let client = acme.developer.clone();
        async move {
            let (status, analysis) = client
                .post("/v1/encoding/analyze", json!({"body": body}))
                .await;
            assert_eq!(status, StatusCode::OK, "{analysis}");
            analysis
        }
    };
    let price = analyze("Price: 5€".into()).await;
    assert_eq!(
        price,
        json!({"encoding": "gsm7", "segments": 1, "units": 10, "characters": 9, "non_gsm": [], "body": "Price: 5€"})
    );
    let chinese = analyze("验证码 123456，验证".into()).await;
    assert_eq!(
        chinese,
        json!({"encoding": "ucs2", "segments": 1, "units": 13, "characters": 13, "non_gsm": ["验", "证", "码", "，"], "body": "验证码 123456，验证"})
    );
    let emoji = analyze("Hi 😀".into()).await;
    assert_eq!(
        emoji,
        json!({"encoding": "ucs2", "segments": 1, "units": 5, "characters": 4, "non_gsm": ["😀"], "body": "Hi 😀"})
    );
    for (body, segments, units, characters) in [
        ("a".repeat(160), 1, 160, 160),
        ("a".repeat(161), 2, 161, 161),
        ("€".repeat(80), 1, 160, 80),
        (format!("{}a", "€".repeat(80)), 2, 161, 81),
    ] {
        let analysis = analyze(body).await;
        assert_eq!(analysis["encoding"], "gsm7");
        assert_eq!(analysis["segments"], segments, "{analysis}");
        assert_eq!(analysis["units"], units, "{analysis}");
        assert_eq!(analysis["characters"], characters, "{analysis}");
    }

    let bad = [
        (json!({}), "missing_field", "body"),
        (json!({"body": 5}), "invalid_type", "body"),
        (json!({"body": "hi", "to": VN}), "unknown_field", "to"),
    ];
    for (request, code, field) in bad {
        let reply = acme
            .developer
            .post_with_headers("/v1/encoding/analyze", &request, &[])
            .await;
        assert_422(&reply, code, Some(field));
    }
    let reply = acme
        .developer
        .without_key()
        .post_with_headers("/v1/encoding/analyze", &json!({"body": "hi"}), &[])
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized", None);
}

#[tokio::test]
async fn messages_sent_one_after_another_are_listed_newest_first() {
    // A client sends several messages a millisecond; each is accepted
    // before the next is sent, so each is newer than the one before.
    let (_server, acme) = start().await;
    let mut created = Vec::new();
    for n in 0..30 {
        let id = acme
            .developer
            .send_message(
                json!({"to": VN, "body": format!("m{n}"), "send_at": from_now(3_600_000)}),
            )
            .await;
        created.push(id);
    }
    created.reverse();
    let listed = ids(&acme.developer.list_all_messages("limit=100").await);
    assert_eq!(listed, created);
}
