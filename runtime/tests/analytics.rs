//! Delivery analytics and Prometheus metrics against a running server: the
//! figures agree with the message records, survive a restart, stay within
//! their account, and the metrics endpoint is scrapeable and guarded.

use crate::common;

use common::{TestServer, new_tenant, wait_until};
use hyper::StatusCode;
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};

/// A simulator carrier at 0.02 a segment to VN and 0.05 elsewhere.
fn priced_simulator() -> CarrierConfig {
    let mut carrier = CarrierConfig::new("sim", "simulator");
    carrier.price = [("VN".to_owned(), 0.02), ("default".to_owned(), 0.05)].into();
    carrier.settings = json!({"dlr_delay_ms": 5});
    carrier
}

fn configure(config: &mut pigeon::config::Config) {
    config.carriers = vec![priced_simulator()];
    config.metrics.token = Some("scraper-token-0123456789abcdef".into());
}

fn row<'a>(data: &'a Value, group: &str) -> &'a Value {
    data["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group)
        .unwrap_or_else(|| panic!("no row for {group} in {data}"))
}

#[tokio::test]
async fn analytics_agree_with_the_message_records_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), configure).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let dev = &tenant.developer;

    // Suffixes the simulator answers: 0001 undeliverable, 0002 rejected by
    // the carrier (failed); others delivered. One GB message has 2 parts.
    let mut finals = Vec::new();
    for (to, status) in [
        ("+84912340010", "delivered"),
        ("+84912340020", "delivered"),
        ("+84912340030", "delivered"),
        ("+84912340001", "undelivered"),
        ("+84912340002", "failed"),
    ] {
        let id = dev
            .send_message(json!({"to": to, "body": "Your code is 123456", "type": "otp"}))
            .await;
        finals.push((id, status));
    }
    let long = "a".repeat(200);
    let id = dev
        .send_message(json!({"to": "+447400123456", "body": long, "type": "transactional"}))
        .await;
    finals.push((id, "delivered"));
    // One waiting for tomorrow, one canceled.
    let later = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 86_400_000);
    dev.send_message(json!({"to": "+84912340040", "body": "later", "send_at": later}))
        .await;
    let canceled = dev
        .send_message(json!({"to": "+84912340050", "body": "never", "send_at": later}))
        .await;
    let (status, _) = dev
        .post(&format!("/v1/messages/{canceled}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for (id, status) in &finals {
        dev.wait_for_status(id, status).await;
    }

    let query = "/v1/analytics/messages?interval=hour&group_by=carrier";
    // Counts are written with the status changes they follow.
    let by_carrier = wait_until("the rollups to show every delivery report", || async {
        let (status, body) = dev.get(query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sim = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "sim")?;
        (sim["delivered"] == 4 && sim["dlr_latency_p50_ms"].is_number()).then_some(body.clone())
    })
    .await;
    let sim = row(&by_carrier, "sim");
    assert_eq!(sim["accepted"], 6, "{by_carrier}");
    assert_eq!(sim["sent"], 5);
    assert_eq!(sim["undelivered"], 1);
    assert_eq!(sim["failed"], 1);
    assert_eq!(sim["segments"], 7);
    assert_eq!(sim["delivery_rate"], json!(4.0 / 6.0));
    assert!(
        sim["dlr_latency_p95_ms"].as_f64().unwrap() >= sim["dlr_latency_p50_ms"].as_f64().unwrap()
    );
    // Sent to VN: 4 parts at 0.02 (the failed one never left); GB: 2 at 0.05.
    assert!((sim["cost"].as_f64().unwrap() - 0.18).abs() < 1e-9, "{sim}");
    // Messages no carrier has had yet.
    let waiting = row(&by_carrier, "");
    assert_eq!(
        (waiting["accepted"].as_i64(), waiting["canceled"].as_i64()),
        (Some(2), Some(1))
    );
    let hour = sim["start"].as_str().unwrap();
    assert!(hour.ends_with(":00:00.000Z"), "{hour}");

    // By country and by status, the same messages.
    let (_, by_country) = dev.get("/v1/analytics/messages?group_by=country").await;
    assert_eq!(row(&by_country, "VN")["accepted"], 7);
    assert_eq!(row(&by_country, "GB")["segments"], 2);
    let (_, by_status) = dev.get("/v1/analytics/messages?group_by=status").await;
    for (status, count) in [
        ("delivered", 4),
        ("undelivered", 1),
        ("failed", 1),
        ("scheduled", 1),
        ("canceled", 1),
    ] {
        assert_eq!(
            row(&by_status, status)["accepted"],
            count,
            "{status}: {by_status}"
        );
    }
    // And as the message records say.
    let (_, records) = dev.get("/v1/messages?status=delivered").await;
    assert_eq!(records["data"].as_array().unwrap().len(), 4);

    // CSV: a header and one line per row.
    let (status, kind, csv) = dev
        .get_text("/v1/analytics/messages.csv?group_by=carrier")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("start,group,accepted,sent,delivered")
    );
    let sim_line = lines.find(|l| l.contains(",sim,")).unwrap();
    assert!(sim_line.contains(",sim,6,5,4,1,1,0,0,0,7,"), "{sim_line}");

    // Another account sees none of it, and may not ask for this one.
    let other = new_tenant(&server.admin(), "Other").await;
    let (_, theirs) = other.viewer.get(query).await;
    assert_eq!(theirs["data"], json!([]));
    let (status, body) = other
        .viewer
        .get(&format!(
            "/v1/analytics/messages?account={}",
            tenant.account_id
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The operator's admins see every account, or one.
    let (_, all) = server.admin().get(query).await;
    assert_eq!(row(&all, "sim")["accepted"], 6);
    let (_, one) = server
        .admin()
        .get(&format!("{query}&account={}", other.account_id))
        .await;
    assert_eq!(one["data"], json!([]));

    // Durable: the same figures after a restart.
    server.stop().await;
    let server = TestServer::start_in(dir.path(), configure).await;
    let (_, again) = dev.with_addr(server.addr).get(query).await;
    assert_eq!(again, by_carrier);
    server.stop().await;
}

#[tokio::test]
async fn analytics_parameters_are_checked() {
    let server = TestServer::start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    for (query, code, field) in [
        ("interval=week", "invalid_interval", "interval"),
        ("group_by=planet", "invalid_group_by", "group_by"),
        ("from=yesterday", "invalid_time", "from"),
        (
            "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            "invalid_time",
            "from",
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z",
            "invalid_time",
            "from",
        ),
        ("colour=red", "unknown_parameter", "colour"),
    ] {
        let reply = tenant
            .viewer
            .send(
                hyper::Method::GET,
                &format!("/v1/analytics/messages?{query}"),
                None,
                &[],
            )
            .await;
        common::assert_422(&reply, code, Some(field));
    }
    // A year by day is fine.
    let (status, _) = tenant
        .viewer
        .get(
            "/v1/analytics/messages?interval=day&from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_scrapeable_with_an_operator_key_or_the_token_only() {
    let server = TestServer::start_with(configure).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let id = tenant
        .developer
        .send_message(json!({"to": "+84912340010", "body": "Your code is 123456", "type": "otp"}))
        .await;
    tenant.developer.wait_for_status(&id, "delivered").await;

    let scraper = server.admin().with_key("scraper-token-0123456789abcdef");
    let text = wait_until("the delivery report's metrics", || async {
        let (status, kind, text) = scraper.get_text("/metrics").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(kind.starts_with("text/plain"), "{kind}");
        text.contains("pigeon_dlr_latency_seconds_bucket{carrier=\"sim\"")
            .then_some(text)
    })
    .await;
    for family in [
        "# TYPE pigeon_http_requests_total counter",
        "pigeon_http_requests_total{route=\"/v1/messages\",status=\"202\"}",
        "# TYPE pigeon_http_request_duration_seconds histogram",
        "pigeon_messages_accepted_total{type=\"otp\"}",
        "pigeon_parts_submitted_total{carrier=\"sim\",outcome=\"accepted\"}",
        "pigeon_parts_final_total{carrier=\"sim\",status=\"delivered\"}",
        "pigeon_queue_depth{state=\"queued\"}",
        "pigeon_queue_depth{state=\"sending\"}",
        "# TYPE pigeon_store_commit_duration_seconds histogram",
        "# TYPE pigeon_store_batch_jobs histogram",
        "pigeon_plugin_calls_total{plugin=\"simulator\",outcome=\"ok\"}",
        "pigeon_webhook_outbox_depth",
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    // No per-message or per-number label.
    assert!(!text.contains(&id) && !text.contains("84912340010"));

    let (status, _, _) = server.admin().get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = tenant.admin.get_text("/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = server.admin().without_key().get_text("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = server
        .admin()
        .with_key("scraper-token-0123456789abcdeX")
        .get_text("/metrics")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}
