//! A test carrier. Settings are a JSON object read with plain string
//! matching (no serde, to keep the build small): `"mode"` is one of `ok`
//! (default), `loop` (start-submit never returns), `trap` (start-submit
//! panics) or `alloc` (start-submit allocates 64 MiB); `"path"` is the request
//! path (default `/submit`). Mode `echo` is a careless plugin: it logs, at
//! trace level, its settings and the message it was given, and accepts it
//! without a request; callbacks are logged likewise. Mode `sandbox` tries to reach outside (files,
//! environment, network) and fails permanently with what it found.
//!
//! The mock carrier protocol: the body is the message id and the parts'
//! hex payloads, one a line; a 200 answer is the carrier ids separated by
//! commas; 429 means throttled, other 4xx permanent, 5xx retryable.
//! Callbacks carry `id=<carrier id>&status=<state>` in the query.

wit_bindgen::generate!({
    path: "../../../sdk/wit",
    world: "carrier",
});

use pigeon::carrier::host::{Level, log};
use pigeon::carrier::types::{
    DeliveryReport, Header, HttpRequest, Method, Outgoing, PermanentFailure, ReportState,
};

struct TestGuest;

fn setting<'a>(settings: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":\"");
    let start = settings.find(&needle)? + needle.len();
    let len = settings[start..].find('"')?;
    Some(&settings[start..start + len])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Guest for TestGuest {
    fn describe() -> Info {
        Info {
            name: "test-guest".into(),
            version: "0.0.0".into(),
            contract_version: "0.3.0".into(),
            max_batch: 1,
            capabilities: vec!["submit".into(), "callback".into()],
        }
    }

    fn validate_settings(settings: Settings) -> Result<(), Vec<String>> {
        match setting(&settings, "mode").unwrap_or("ok") {
            "ok" | "loop" | "trap" | "alloc" | "sandbox" | "echo" => Ok(()),
            other => Err(vec![format!("unknown mode `{other}`")]),
        }
    }

    fn start_submit(settings: Settings, message: Message) -> Result<Step, Failure> {
        match setting(&settings, "mode").unwrap_or("ok") {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "trap" => panic!("test guest told to trap"),
            "echo" => {
                log(
                    Level::Trace,
                    &format!(
                        "settings {settings}; message {} to {}: {}",
                        message.id, message.to, message.text
                    ),
                );
                log(Level::Warn, &format!("refusing nothing: {}", message.text));
                return Ok(Step::Accepted(
                    (0..message.parts.len())
                        .map(|i| format!("echo-{}-{i}", message.id))
                        .collect(),
                ));
            }
            "alloc" => {
                let big = vec![1u8; 64 << 20];
                return Ok(Step::Accepted(vec![format!("{}", big[big.len() - 1])]));
            }
            "sandbox" => {
                let file = std::fs::read("/etc/hostname").map(|_| "read");
                let tcp = std::net::TcpStream::connect("127.0.0.1:9").map(|_| "connected");
                let found = format!(
                    "file: {}; env: {}; args: {}; tcp: {}",
                    file.unwrap_or("denied"),
                    std::env::vars().count(),
                    std::env::args().count(),
                    tcp.unwrap_or("denied"),
                );
                return Err(Failure::Permanent(PermanentFailure {
                    code: "sandbox".into(),
                    reason: found,
                }));
            }
            _ => {}
        }
        log(
            Level::Info,
            &format!("submitting {} ({} parts)", message.id, message.parts.len()),
        );
        let mut body = message.id.clone();
        for part in &message.parts {
            body.push('\n');
            body.push_str(&hex(&part.udh));
            body.push_str(&hex(&part.payload));
        }
        Ok(Step::Send(Outgoing {
            request: HttpRequest {
                method: Method::Post,
                path: setting(&settings, "path").unwrap_or("/submit").into(),
                headers: vec![Header {
                    name: "content-type".into(),
                    value: "text/plain".into(),
                }],
                body: body.into_bytes(),
            },
            continuation: (message.parts.len() as u32).to_le_bytes().to_vec(),
        }))
    }

    fn resume_submit(
        _settings: Settings,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        let expected = u32::from_le_bytes(continuation.try_into().unwrap_or_default()) as usize;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        match response.status {
            200..=299 => {
                let ids: Vec<String> = body.split(',').map(|s| s.trim().to_owned()).collect();
                if ids.len() == expected {
                    Ok(Step::Accepted(ids))
                } else {
                    Err(Failure::Retryable(format!(
                        "expected {expected} ids, got {}",
                        ids.len()
                    )))
                }
            }
            401 | 403 => Err(Failure::Misconfigured(format!("carrier said {body}"))),
            429 => Err(Failure::Throttled(1500)),
            400..=499 => Err(Failure::Permanent(PermanentFailure {
                code: "rejected".into(),
                reason: body,
            })),
            _ => Err(Failure::Retryable(format!("status {}", response.status))),
        }
    }

    fn start_submit_batch(_: Settings, _: Vec<Message>) -> Result<BatchStep, Failure> {
        Err(Failure::Misconfigured("max-batch is 1".into()))
    }

    fn resume_submit_batch(
        _: Settings,
        _: Vec<u8>,
        _: HttpResponse,
    ) -> Result<BatchStep, Failure> {
        Err(Failure::Misconfigured("max-batch is 1".into()))
    }

    fn parse_callback(
        settings: Settings,
        request: CallbackRequest,
    ) -> Result<CallbackReply, String> {
        let echo = setting(&settings, "mode") == Some("echo");
        if echo {
            log(
                Level::Debug,
                &format!(
                    "callback {} {}",
                    request.query,
                    String::from_utf8_lossy(&request.body)
                ),
            );
        }
        let mut id = None;
        let mut status = None;
        for pair in request.query.split('&') {
            match pair.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("status", v)) => status = Some(v.to_owned()),
                _ => {}
            }
        }
        let id = id.ok_or("no id")?;
        let raw = status.ok_or("no status")?;
        let state = match raw.as_str() {
            "delivered" => ReportState::Delivered,
            "undeliverable" => ReportState::Undeliverable,
            "expired" => ReportState::Expired,
            "enroute" => ReportState::Enroute,
            _ => ReportState::Unknown,
        };
        Ok(CallbackReply {
            reports: vec![DeliveryReport {
                carrier_message_id: id,
                state,
                error_code: None,
                raw_status: raw,
                at: Some(1_700_000_000_000),
            }],
            inbound: vec![],
            response: HttpResponse {
                status: 200,
                headers: vec![],
                // JSON for the echo mode's test client, which reads answers as JSON.
                body: if echo { b"{}".to_vec() } else { b"OK".to_vec() },
            },
        })
    }
}

export!(TestGuest);
