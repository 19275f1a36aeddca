//! Accounts, API keys and roles over HTTP: authentication, what each role
//! may do, isolation between accounts, and keys shown once and stored hashed.

use crate::common;

use common::{
    ADMIN_KEY, Client, Tenant, TestServer, assert_422, assert_error, new_tenant, raw_request,
    sorted_keys,
};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const VN: &str = "+84912345678";
const UNKNOWN_MESSAGE: &str = "/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV";

async fn start() -> (TestServer, Tenant) {
    let server = TestServer::start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    (server, tenant)
}

/// Creates a key as `admin`; panics unless it is created.
async fn create_key(admin: &Client, account_id: &str, request: Value) -> Value {
    let (status, key) = admin
        .post(&format!("/v1/accounts/{account_id}/keys"), request)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key
}

/// Sends `method path` and asserts the error.
async fn assert_refused(
    client: &Client,
    method: Method,
    path: &str,
    status: StatusCode,
    code: &str,
) {
    // A body that would be valid, so that only the refusal can fail it.
    let body = match path {
        _ if method != Method::POST => None,
        "/v1/accounts" => Some(json!({"name": "Initech"})),
        "/v1/messages/batch" => Some(json!({"messages": [{"to": VN, "body": "Hello"}]})),
        "/v1/encoding/analyze" => Some(json!({"body": "Hello"})),
        _ if path.ends_with("/keys") => Some(json!({"role": "viewer"})),
        _ if path.ends_with("/cancel") => None,
        _ => Some(json!({"to": VN, "body": "Hello"})),
    };
    let body = body.map(|b| b.to_string().into_bytes());
    let reply = client.send(method.clone(), path, body, &[]).await;
    assert_error(&reply, status, code, None);
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            reply.headers.get("www-authenticate").unwrap(),
            "Bearer",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn requests_without_a_valid_key_are_unauthorized() {
    let (server, acme) = start().await;
    let anonymous = acme.developer.without_key();
    let routes = [
        (Method::POST, "/v1/messages".to_owned()),
        (Method::GET, "/v1/messages".to_owned()),
        (Method::POST, "/v1/messages/batch".to_owned()),
        (Method::GET, UNKNOWN_MESSAGE.to_owned()),
        (Method::POST, format!("{UNKNOWN_MESSAGE}/cancel")),
        (Method::POST, "/v1/accounts".to_owned()),
        (Method::GET, format!("/v1/accounts/{}", acme.account_id)),
        (
            Method::POST,
            format!("/v1/accounts/{}/keys", acme.account_id),
        ),
        (
            Method::DELETE,
            "/v1/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        ),
        (Method::POST, "/v1/encoding/analyze".to_owned()),
    ];
    for (method, path) in &routes {
        let status = StatusCode::UNAUTHORIZED;
        assert_refused(&anonymous, method.clone(), path, status, "unauthorized").await;
    }
    let unknown = server.client("pgn_live_0000000000000000000000000000000000000000");
    let truncated = server.client(&ADMIN_KEY[..ADMIN_KEY.len() - 1]);
    for client in [&unknown, &truncated] {
        for (method, path) in &routes {
            let status = StatusCode::UNAUTHORIZED;
            assert_refused(client, method.clone(), path, status, "unauthorized").await;
        }
    }
    for header in [
        format!("Basic {ADMIN_KEY}"),
        ADMIN_KEY.to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let reply = anonymous
            .send(
                Method::GET,
                "/v1/messages",
                None,
                &[("authorization", &header)],
            )
            .await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_from_then_on() {
    let (server, acme) = start().await;
    let key = create_key(&acme.admin, &acme.account_id, json!({"role": "developer"})).await;
    let client = server.client(key["key"].as_str().unwrap());
    client
        .send_message(json!({"to": VN, "body": "before"}))
        .await;

    let key_id = key["id"].as_str().unwrap();
    let (status, revoked) = acme.admin.delete(&format!("/v1/keys/{key_id}")).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked, json!({"id": key_id, "revoked": true}));

    let reply = client
        .post_with_headers("/v1/messages", &json!({"to": VN, "body": "after"}), &[])
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let reply = client.send(Method::GET, "/v1/messages", None, &[]).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // The account's other keys still work, and see the message sent before.
    let listed = acme.developer.list_all_messages("limit=100").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["body"], "before");
}

#[tokio::test]
async fn a_revoked_key_stays_revoked_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let revoked = create_key(&acme.admin, &acme.account_id, json!({"role": "viewer"})).await;
    let kept = create_key(&acme.admin, &acme.account_id, json!({"role": "viewer"})).await;
    let (status, _) = acme
        .admin
        .delete(&format!("/v1/keys/{}", revoked["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let reply = server
        .client(revoked["key"].as_str().unwrap())
        .send(Method::GET, "/v1/messages", None, &[])
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let (status, page) = server
        .client(kept["key"].as_str().unwrap())
        .get("/v1/messages")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    server.stop().await;
}

#[tokio::test]
async fn viewers_and_compliance_read_but_do_not_send() {
    let (_server, acme) = start().await;
    let later = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 3_600_000);
    let id = acme
        .developer
        .send_message(json!({"to": VN, "body": "Hello", "send_at": later}))
        .await;
    for reader in [&acme.viewer, &acme.compliance] {
        let forbidden = StatusCode::FORBIDDEN;
        assert_refused(reader, Method::POST, "/v1/messages", forbidden, "forbidden").await;
        assert_refused(
            reader,
            Method::POST,
            "/v1/messages/batch",
            forbidden,
            "forbidden",
        )
        .await;
        let cancel = format!("/v1/messages/{id}/cancel");
        assert_refused(reader, Method::POST, &cancel, forbidden, "forbidden").await;

        let (status, message) = reader.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        assert_eq!(message["status"], "scheduled", "not canceled");
        assert_eq!(
            ids(&reader.list_all_messages("limit=100").await),
            [id.as_str()]
        );
        let (status, analysis) = reader
            .post("/v1/encoding/analyze", json!({"body": "Hello"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{analysis}");
    }
    // Nothing the readers tried was sent.
    assert_eq!(acme.developer.list_all_messages("limit=100").await.len(), 1);
    // Admins and developers may send.
    acme.admin
        .send_message(json!({"to": VN, "body": "From the admin"}))
        .await;
}

#[tokio::test]
async fn developers_do_not_manage_keys_or_accounts() {
    let (_server, acme) = start().await;
    let key = create_key(&acme.admin, &acme.account_id, json!({"role": "viewer"})).await;
    let forbidden = StatusCode::FORBIDDEN;
    for client in [&acme.developer, &acme.compliance, &acme.viewer] {
        let keys = format!("/v1/accounts/{}/keys", acme.account_id);
        assert_refused(client, Method::POST, &keys, forbidden, "forbidden").await;
        let revoke = format!("/v1/keys/{}", key["id"].as_str().unwrap());
        assert_refused(client, Method::DELETE, &revoke, forbidden, "forbidden").await;
        let account = format!("/v1/accounts/{}", acme.account_id);
        assert_refused(client, Method::GET, &account, forbidden, "forbidden").await;
        assert_refused(client, Method::POST, "/v1/accounts", forbidden, "forbidden").await;
    }
    // The key is still active.
    let (status, _) = acme
        .viewer
        .with_key(key["key"].as_str().unwrap())
        .get("/v1/messages")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn only_operator_admins_create_accounts() {
    let (server, acme) = start().await;
    let forbidden = StatusCode::FORBIDDEN;
    assert_refused(
        &acme.admin,
        Method::POST,
        "/v1/accounts",
        forbidden,
        "forbidden",
    )
    .await;

    let (status, account) = server
        .admin()
        .post("/v1/accounts", json!({"name": "  Globex Corp  "}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(
        sorted_keys(&account),
        ["created_at", "id", "name", "webhook_secret"]
    );
    assert!(account["id"].as_str().unwrap().starts_with("acc_"));
    assert_eq!(account["name"], "Globex Corp");
    pigeon::time::parse_rfc3339(account["created_at"].as_str().unwrap()).unwrap();

    let cases = [
        (json!({}), "missing_field", "name"),
        (json!({"name": ""}), "invalid_name", "name"),
        (json!({"name": "   "}), "invalid_name", "name"),
        (json!({"name": "x".repeat(101)}), "invalid_name", "name"),
        (json!({"name": 7}), "invalid_type", "name"),
        (
            json!({"name": "Initech", "plan": "gold"}),
            "unknown_field",
            "plan",
        ),
    ];
    for (request, code, field) in cases {
        let reply = server
            .admin()
            .post_with_headers("/v1/accounts", &request, &[])
            .await;
        assert_422(&reply, code, Some(field));
    }
    let (status, _) = server
        .admin()
        .post("/v1/accounts", json!({"name": "x".repeat(100)}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn tenant_admins_manage_only_their_own_account() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let globex = new_tenant(&server.admin(), "Globex").await;

    let key = create_key(&acme.admin, &acme.account_id, json!({"role": "developer"})).await;
    assert_eq!(key["account_id"], acme.account_id.as_str());
    assert_eq!(key["role"], "developer");
    assert_eq!(key["sandbox"], false);
    let (status, account) = acme
        .admin
        .get(&format!("/v1/accounts/{}", acme.account_id))
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["name"], "Acme");

    // Another account is simply not there.
    let theirs = create_key(&globex.admin, &globex.account_id, json!({"role": "viewer"})).await;
    let not_found = StatusCode::NOT_FOUND;
    let keys = format!("/v1/accounts/{}/keys", globex.account_id);
    assert_refused(&acme.admin, Method::POST, &keys, not_found, "not_found").await;
    let revoke = format!("/v1/keys/{}", theirs["id"].as_str().unwrap());
    assert_refused(&acme.admin, Method::DELETE, &revoke, not_found, "not_found").await;
    let account = format!("/v1/accounts/{}", globex.account_id);
    assert_refused(&acme.admin, Method::GET, &account, not_found, "not_found").await;
    // ... and so are accounts and keys that do not exist at all.
    let nowhere = "/v1/accounts/acc_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    assert_refused(&acme.admin, Method::GET, nowhere, not_found, "not_found").await;
    let keys = format!("{nowhere}/keys");
    assert_refused(&server.admin(), Method::POST, &keys, not_found, "not_found").await;
    let revoke = "/v1/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    assert_refused(
        &server.admin(),
        Method::DELETE,
        revoke,
        not_found,
        "not_found",
    )
    .await;
    // Globex's key still works.
    let (status, _) = acme
        .viewer
        .with_key(theirs["key"].as_str().unwrap())
        .get("/v1/messages")
        .await;
    assert_eq!(status, StatusCode::OK);

    // The operator manages every account.
    create_key(
        &server.admin(),
        &globex.account_id,
        json!({"role": "admin"}),
    )
    .await;
    let (status, account) = server
        .admin()
        .get(&format!("/v1/accounts/{}", globex.account_id))
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");

    let path = format!("/v1/accounts/{}/keys", acme.account_id);
    for (request, code, field) in [
        (json!({}), "missing_field", "role"),
        (json!({"role": "owner"}), "invalid_role", "role"),
        (
            json!({"role": "viewer", "sandbox": "yes"}),
            "invalid_type",
            "sandbox",
        ),
        (
            json!({"role": "viewer", "expires": 1}),
            "unknown_field",
            "expires",
        ),
    ] {
        let reply = acme.admin.post_with_headers(&path, &request, &[]).await;
        assert_422(&reply, code, Some(field));
    }
}

#[tokio::test]
async fn accounts_do_not_see_each_others_messages() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let globex = new_tenant(&server.admin(), "Globex").await;
    let later = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 3_600_000);
    let theirs = acme
        .developer
        .send_message(json!({"to": VN, "body": "Acme only", "send_at": later}))
        .await;
    let ours = globex
        .developer
        .send_message(json!({"to": VN, "body": "Globex only"}))
        .await;

    let not_found = StatusCode::NOT_FOUND;
    for client in [&globex.developer, &globex.viewer, &globex.admin] {
        let message = format!("/v1/messages/{theirs}");
        assert_refused(client, Method::GET, &message, not_found, "not_found").await;
        assert_eq!(
            ids(&client.list_all_messages("limit=100").await),
            [ours.as_str()]
        );
    }
    let cancel = format!("/v1/messages/{theirs}/cancel");
    assert_refused(
        &globex.developer,
        Method::POST,
        &cancel,
        not_found,
        "not_found",
    )
    .await;
    assert_refused(&globex.admin, Method::POST, &cancel, not_found, "not_found").await;
    // Filters do not reach across accounts either.
    for query in ["status=scheduled&limit=100", "to=+84912345678&limit=100"] {
        let listed = globex.developer.list_all_messages(query).await;
        assert!(!ids(&listed).contains(&theirs.as_str()), "{query}");
    }

    // Acme's message is untouched, and Acme may cancel it.
    let (_, message) = acme.developer.get(&format!("/v1/messages/{theirs}")).await;
    assert_eq!(message["status"], "scheduled");
    assert_eq!(
        ids(&acme.developer.list_all_messages("limit=100").await),
        [theirs.as_str()]
    );
    let (status, canceled) = acme.developer.post(&cancel, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
}

#[tokio::test]
async fn keys_are_shown_once_and_stored_as_hashes() {
    let (server, acme) = start().await;
    let key = create_key(&acme.admin, &acme.account_id, json!({"role": "developer"})).await;
    assert_eq!(
        sorted_keys(&key),
        [
            "account_id",
            "allowed_ips",
            "created_at",
            "expires_at",
            "id",
            "key",
            "revoked_at",
            "role",
            "sandbox"
        ]
    );
    let plain = key["key"].as_str().unwrap().to_owned();
    let key_id = key["id"].as_str().unwrap().to_owned();
    assert!(
        plain.starts_with("pgn_live_") && plain.len() == 49,
        "{plain}"
    );
    assert!(key_id.starts_with("key_"));
    // The key works.
    server
        .client(&plain)
        .send_message(json!({"to": VN, "body": "Hello"}))
        .await;

    // Nothing else shows it.
    for client in [&acme.admin, &server.admin()] {
        let (status, account) = client
            .get(&format!("/v1/accounts/{}", acme.account_id))
            .await;
        assert_eq!(status, StatusCode::OK, "{account}");
        assert_eq!(
            sorted_keys(&account),
            [
                "created_at",
                "id",
                "limits",
                "name",
                "operator",
                "webhook_secret"
            ]
        );
        assert_eq!(account["operator"], false);
        assert!(!account.to_string().contains("pgn_"), "{account}");
    }

    // The store holds its hash keyed with the server's secret: neither the
    // key nor its plain SHA-256.
    let id = key_id.clone();
    let (stored_hash, rows): (Vec<u8>, Vec<String>) =
        common::read_db(&server.data_dir, move |conn| {
            let stored_hash = conn.query_row(
                "SELECT key_hash FROM api_keys WHERE id = ?1",
                [&id],
                |row| row.get(0),
            )?;
            // Every column that holds text or bytes, as text.
            let rows = conn
                .prepare("SELECT id, account_id, key_hash, role, allowed_ips FROM api_keys")?
                .query_map([], |row| {
                    let hash: Vec<u8> = row.get(2)?;
                    let texts = [0, 1, 3, 4].map(|i| {
                        row.get::<_, Option<String>>(i)
                            .map(Option::unwrap_or_default)
                    });
                    let [id, account, role, ips] = texts;
                    Ok([
                        id?,
                        account?,
                        String::from_utf8_lossy(&hash).into_owned(),
                        role?,
                        ips?,
                    ]
                    .join("|"))
                })?
                .collect::<pigeon::store::Result<_>>()?;
            Ok((stored_hash, rows))
        })
        .await;
    let hasher = pigeon::auth::KeyHasher::load_or_create(&server.data_dir).unwrap();
    assert_eq!(stored_hash, hasher.hash(&plain));
    use sha2::Digest;
    assert_ne!(stored_hash, sha2::Sha256::digest(plain.as_bytes()).to_vec());
    assert_eq!(rows.len(), 6, "the operator's key and five of Acme's");
    for row in &rows {
        assert!(!row.contains(&plain), "{row}");
        assert!(!row.contains(ADMIN_KEY), "{row}");
        assert!(!row.contains("pgn_"), "{row}");
    }
    // Nor does any file in the data directory, write-ahead log included.
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for secret in [plain.as_bytes(), ADMIN_KEY.as_bytes()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds a plain key",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn sandbox_keys_mark_their_messages() {
    let (server, acme) = start().await;
    let key = create_key(
        &acme.admin,
        &acme.account_id,
        json!({"role": "developer", "sandbox": true}),
    )
    .await;
    assert_eq!(key["sandbox"], true);
    let plain = key["key"].as_str().unwrap();
    assert!(
        plain.starts_with("pgn_test_") && plain.len() == 49,
        "{plain}"
    );

    let sandboxed = server
        .client(plain)
        .send_message(json!({"to": VN, "body": "Test"}))
        .await;
    let live = acme
        .developer
        .send_message(json!({"to": VN, "body": "Live"}))
        .await;
    for (id, sandbox) in [(&sandboxed, true), (&live, false)] {
        let (status, message) = acme.viewer.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        assert_eq!(message["sandbox"], sandbox, "{message}");
    }
    let listed = acme.viewer.list_all_messages("limit=100").await;
    let flagged: Vec<bool> = listed
        .iter()
        .filter(|m| m["id"] == sandboxed.as_str())
        .map(|m| m["sandbox"].as_bool().unwrap())
        .collect();
    assert_eq!(flagged, [true]);
}

#[tokio::test]
async fn health_checks_need_no_key() {
    let (_server, acme) = start().await;
    let anonymous = acme.viewer.without_key();
    let (status, health) = anonymous.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok"}));
    let (status, ready) = anonymous.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready, json!({"status": "ready"}));
    // A bad key does not stop them either.
    let (status, _) = anonymous.with_key("nonsense").get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_idempotency_key_from_an_unauthenticated_caller_is_still_401() {
    let (server, acme) = start().await;
    let body = json!({"to": VN, "body": "Hello"}).to_string().into_bytes();
    let head = |authorization: &str| {
        let mut head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: pigeon\r\n{authorization}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nIdempotency-Key: ",
            body.len()
        )
        .into_bytes();
        head.extend_from_slice("clé\r\n\r\n".as_bytes());
        head
    };
    let (status, answer) = raw_request(server.addr, head(""), body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    // A viewer may not send, whatever the header holds.
    let viewer = create_key(&acme.admin, &acme.account_id, json!({"role": "viewer"})).await;
    let authorization = format!(
        "Authorization: Bearer {}\r\n",
        viewer["key"].as_str().unwrap()
    );
    let (status, answer) = raw_request(server.addr, head(&authorization), body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden");
}

fn ids(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_operators_last_admin_key_cannot_be_revoked() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let (status, me) = operator.get("/v1/account").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["account"]["operator"], true);
    assert_eq!(me["key"]["role"], "admin");
    let own_key = me["key"]["id"].as_str().unwrap().to_owned();
    let account = me["account"]["id"].as_str().unwrap().to_owned();

    let reply = operator
        .send(Method::DELETE, &format!("/v1/keys/{own_key}"), None, &[])
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "last_admin_key", None);

    // With a second admin key the first may go.
    let second = create_key(&operator, &account, json!({"role": "admin"})).await;
    let (status, keys) = operator.get(&format!("/v1/accounts/{account}/keys")).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(second["key"].as_str().unwrap()));
    let (status, _) = operator.delete(&format!("/v1/keys/{own_key}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = operator.get("/v1/account").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_admin_key_variable_only_applies_to_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(dir.path());
    let weak = Some("short".to_owned());
    assert!(
        pigeon::runtime::Pigeon::start(&config, weak.clone())
            .await
            .is_err(),
        "a weak key is refused for a new database"
    );
    TestServer::start_in(dir.path(), |_| {}).await.stop().await;
    // Once the database has its operator, the variable is ignored.
    let pigeon = pigeon::runtime::Pigeon::start(&config, weak).await.unwrap();
    assert!(pigeon.generated_admin_key.is_none());
    assert!(
        pigeon
            .app()
            .accounts
            .authenticate("short", [127, 0, 0, 1].into())
            .is_err()
    );
    assert!(
        pigeon
            .app()
            .accounts
            .authenticate(ADMIN_KEY, [127, 0, 0, 1].into())
            .is_ok()
    );
    pigeon.stop().await;
}

#[tokio::test]
async fn a_tenant_admin_cannot_revoke_its_accounts_last_admin_key() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "acme").await;
    let (_, me) = acme.admin.get("/v1/account").await;
    let own_key = me["key"]["id"].as_str().unwrap().to_owned();
    let reply = acme
        .admin
        .send(Method::DELETE, &format!("/v1/keys/{own_key}"), None, &[])
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "last_admin_key", None);
    let (status, _) = acme.admin.get("/v1/account").await;
    assert_eq!(status, StatusCode::OK);
    // With another admin key it may go.
    create_key(&acme.admin, &acme.account_id, json!({"role": "admin"})).await;
    let (status, _) = acme.admin.delete(&format!("/v1/keys/{own_key}")).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn keys_stored_as_plain_sha256_are_rehashed_at_their_next_use() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    TestServer::start_in(dir.path(), |_| {}).await.stop().await;
    // A key as an earlier Pigeon stored it.
    let plain = "pgn_live_OLDKEYFROMBEFOREKEYEDHASHES00000000";
    common::write_db(dir.path(), move |conn| {
        let operator: String =
            conn.query_row("SELECT id FROM accounts WHERE operator = 1", [], |r| {
                r.get(0)
            })?;
        conn.execute(
            "INSERT INTO api_keys (id, account_id, key_hash, role, sandbox, created_at, legacy_hash) \
             VALUES ('key_legacy', ?1, ?2, 'viewer', 0, 0, 1)",
            pigeon::store::db::params![operator, sha2::Sha256::digest(plain.as_bytes()).to_vec()],
        )
    })
    .await;
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let (status, me) = server.client(plain).get("/v1/account").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let hasher = pigeon::auth::KeyHasher::load_or_create(dir.path()).unwrap();
    let stored = common::wait_until("the keyed hash to be stored", || async {
        let (hash, legacy): (Vec<u8>, bool) = common::read_db(dir.path(), |conn| {
            conn.query_row(
                "SELECT key_hash, legacy_hash FROM api_keys WHERE id = 'key_legacy'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await;
        (!legacy).then_some(hash)
    })
    .await;
    assert_eq!(stored, hasher.hash(plain));
    server.stop().await;
    // And it still works after a restart.
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let (status, _) = server.client(plain).get("/v1/account").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_secret_that_is_not_the_databases_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    TestServer::start_in(dir.path(), |_| {}).await.stop().await;
    std::fs::write(
        dir.path().join(pigeon::auth::SECRET_FILE),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    let config = common::test_config(dir.path());
    let err = pigeon::runtime::Pigeon::start(&config, None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("pigeon.secret"), "{err}");
}
