//! The schema and its migrations, applied in order at start-up. A database
//! written by a newer Pigeon is refused rather than misread.

use super::Connection;

use super::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, messages, parts, events.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('heartbeat', '0');

    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        operator    INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        key_hash    BLOB NOT NULL UNIQUE,
        role        TEXT NOT NULL,
        sandbox     INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );

    CREATE TABLE messages (
        id              TEXT PRIMARY KEY,
        account_id      TEXT NOT NULL,
        status          TEXT NOT NULL,
        to_number       TEXT NOT NULL,
        sender          TEXT,
        country         TEXT,
        body            TEXT NOT NULL,
        type            TEXT NOT NULL,
        encoding        TEXT NOT NULL,
        segments        INTEGER NOT NULL,
        concat_ref      INTEGER NOT NULL,
        callback_url    TEXT,
        send_at         INTEGER,
        expires_at      INTEGER NOT NULL,
        metadata        TEXT,
        sandbox         INTEGER NOT NULL,
        idempotency_key TEXT,
        request_hash    BLOB,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX messages_by_account ON messages (account_id, id);
    CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (account_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE parts (
        message_id          TEXT NOT NULL,
        idx                 INTEGER NOT NULL,
        status              TEXT NOT NULL,
        priority            INTEGER NOT NULL,
        due_at              INTEGER NOT NULL,
        attempts            INTEGER NOT NULL DEFAULT 0,
        carrier             TEXT,
        carrier_message_id  TEXT,
        error_code          TEXT,
        PRIMARY KEY (message_id, idx)
    ) WITHOUT ROWID;
    -- The dispatch queue: only parts still waiting are indexed.
    CREATE INDEX parts_due ON parts (priority, due_at) WHERE status IN ('queued', 'scheduled');
    CREATE INDEX parts_by_carrier_id ON parts (carrier, carrier_message_id)
        WHERE carrier_message_id IS NOT NULL;

    -- `seq` grows with time across restarts (see messages::next_event_seq).
    CREATE TABLE events (
        message_id  TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        status      TEXT NOT NULL,
        part        INTEGER,
        carrier     TEXT,
        detail      TEXT,
        PRIMARY KEY (message_id, seq)
    ) WITHOUT ROWID;

    -- Delivery reports that arrived before the submit answer that names
    -- their carrier id was recorded; applied when it is.
    CREATE TABLE early_reports (
        carrier             TEXT NOT NULL,
        carrier_message_id  TEXT NOT NULL,
        state               TEXT NOT NULL,
        error_code          TEXT,
        raw_status          TEXT,
        at                  INTEGER NOT NULL,
        received_at         INTEGER NOT NULL
    );
    CREATE INDEX early_reports_by_id ON early_reports (carrier, carrier_message_id);
    "#,
    // 2: the webhook outbox and per-account signing secrets (existing
    // accounts get theirs in `after_migration`).
    r#"
    ALTER TABLE accounts ADD COLUMN webhook_secret TEXT;

    CREATE TABLE webhook_outbox (
        id              TEXT PRIMARY KEY,
        account_id      TEXT NOT NULL,
        message_id      TEXT NOT NULL,
        url             TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        state           TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Deliveries to claim: only pending ones are indexed.
    CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX webhook_outbox_by_message ON webhook_outbox (message_id, id);
    "#,
    // 3: inbound messages and carriers' callback secrets.
    r#"
    CREATE TABLE inbound_messages (
        id                  TEXT PRIMARY KEY,
        account_id          TEXT,
        in_reply_to         TEXT,
        carrier             TEXT NOT NULL,
        carrier_message_id  TEXT NOT NULL,
        from_number         TEXT NOT NULL,
        to_number           TEXT NOT NULL,
        body                TEXT NOT NULL,
        sent_at             INTEGER NOT NULL,
        received_at         INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- A carrier that repeats a callback does not store the message twice.
    CREATE UNIQUE INDEX inbound_by_carrier_id ON inbound_messages (carrier, carrier_message_id);
    CREATE INDEX inbound_by_account ON inbound_messages (account_id, id);

    CREATE TABLE carrier_secrets (
        carrier     TEXT PRIMARY KEY,
        secret      TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 4: when a carrier took each part (delivery-report latency), and the
    // digest of the policy set that decided each message.
    r#"
    ALTER TABLE parts ADD COLUMN sent_at INTEGER;
    ALTER TABLE messages ADD COLUMN policy_digest TEXT;
    "#,
    // 5: webhook claims go account by account (fairness across accounts),
    // and early reports by age.
    r#"
    DROP INDEX webhook_outbox_due;
    CREATE INDEX webhook_outbox_due_by_account ON webhook_outbox (account_id, next_attempt_at)
        WHERE state = 'pending';
    -- Early reports expire (see reports::prune_early_reports).
    CREATE INDEX early_reports_by_age ON early_reports (received_at);
    "#,
    // 6: API key hashes keyed with the server's secret; the keys from
    // before keep their plain SHA-256 until their next use.
    r#"
    ALTER TABLE api_keys ADD COLUMN legacy_hash INTEGER NOT NULL DEFAULT 1;
    "#,
    // 7: the number inventory: senders, their country, carrier and owner.
    r#"
    CREATE TABLE numbers (
        id            TEXT PRIMARY KEY,
        sender        TEXT NOT NULL,
        kind          TEXT NOT NULL,
        country       TEXT NOT NULL,
        carrier       TEXT,
        capabilities  TEXT NOT NULL,
        account_id    TEXT,
        inbound_url   TEXT,
        created_at    INTEGER NOT NULL,
        UNIQUE (sender, country)
    ) WITHOUT ROWID;
    CREATE INDEX numbers_by_account ON numbers (account_id, id);
    "#,
    // 8: sender pools, the sender each message went from, inbound messages
    // filed by the number they were sent to, and inbound parts waiting for
    // the rest of their message.
    r#"
    CREATE TABLE sender_pools (
        id             TEXT PRIMARY KEY,
        account_id     TEXT NOT NULL,
        name           TEXT NOT NULL,
        sticky_sender  INTEGER NOT NULL,
        geo_match      INTEGER NOT NULL,
        fallback       TEXT NOT NULL,
        inbound_url    TEXT,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sender_pools_by_account ON sender_pools (account_id, id);
    ALTER TABLE numbers ADD COLUMN pool_id TEXT;
    CREATE INDEX numbers_by_pool ON numbers (pool_id) WHERE pool_id IS NOT NULL;
    CREATE INDEX numbers_by_sender ON numbers (sender);
    -- The sender a recipient got from a pool last time.
    CREATE TABLE sticky_senders (
        pool_id     TEXT NOT NULL,
        recipient   TEXT NOT NULL,
        number_id   TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (pool_id, recipient)
    ) WITHOUT ROWID;
    ALTER TABLE accounts ADD COLUMN default_pool TEXT;
    ALTER TABLE accounts ADD COLUMN inbound_url TEXT;
    ALTER TABLE messages ADD COLUMN number_id TEXT;
    ALTER TABLE messages ADD COLUMN sender_kind TEXT;
    ALTER TABLE messages ADD COLUMN sender_carrier TEXT;
    ALTER TABLE messages ADD COLUMN pool_id TEXT;
    ALTER TABLE inbound_messages ADD COLUMN number_id TEXT;
    ALTER TABLE inbound_messages ADD COLUMN pool_id TEXT;
    -- The latest message a number sent to a handset: a reply's in_reply_to.
    CREATE TABLE last_sent (
        number_id   TEXT NOT NULL,
        recipient   TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        PRIMARY KEY (number_id, recipient)
    ) WITHOUT ROWID;
    -- Parts of long inbound messages: waiting for the rest, or filed (kept
    -- a day so a carrier repeating a part does not start a new message).
    CREATE TABLE inbound_parts (
        carrier             TEXT NOT NULL,
        carrier_message_id  TEXT NOT NULL,
        from_number         TEXT NOT NULL,
        to_number           TEXT NOT NULL,
        reference           INTEGER NOT NULL,
        total               INTEGER NOT NULL,
        idx                 INTEGER NOT NULL,
        body                TEXT NOT NULL,
        sent_at             INTEGER NOT NULL,
        received_at         INTEGER NOT NULL,
        filed               INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (carrier, carrier_message_id)
    ) WITHOUT ROWID;
    CREATE INDEX inbound_parts_waiting ON inbound_parts
        (carrier, from_number, to_number, reference, idx) WHERE filed = 0;
    CREATE INDEX inbound_parts_by_age ON inbound_parts (received_at);
    "#,
    // 9: consent and opt-out: keyword settings, suppressions, consents and
    // the history of every change; the account's consent settings; which
    // messages are Pigeon's own replies to keywords.
    r#"
    CREATE TABLE keyword_settings (
        account_id  TEXT NOT NULL,
        pool_id     TEXT NOT NULL,
        settings    TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (account_id, pool_id)
    ) WITHOUT ROWID;
    -- Handsets an account may not send to: scope '' for the whole account,
    -- else the pool the opt-out was for.
    CREATE TABLE suppressions (
        account_id  TEXT NOT NULL,
        number      TEXT NOT NULL,
        scope       TEXT NOT NULL,
        source      TEXT NOT NULL,
        reason      TEXT,
        evidence    TEXT,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (account_id, number, scope)
    ) WITHOUT ROWID;
    CREATE TABLE consents (
        id            TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL,
        number        TEXT NOT NULL,
        purpose       TEXT NOT NULL,
        source        TEXT NOT NULL,
        evidence      TEXT,
        collected_at  INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        created_by    TEXT,
        withdrawn_at  INTEGER,
        withdrawn_by  TEXT
    ) WITHOUT ROWID;
    CREATE INDEX consents_by_number ON consents (account_id, number, purpose);
    -- Every consent, withdrawal, opt-out and opt-in, never erased.
    CREATE TABLE consent_events (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL,
        number      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        purpose     TEXT,
        scope       TEXT,
        source      TEXT NOT NULL,
        evidence    TEXT,
        actor       TEXT,
        at          INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX consent_events_by_number ON consent_events (account_id, number, id);
    ALTER TABLE accounts ADD COLUMN require_marketing_consent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN opt_out_scope TEXT NOT NULL DEFAULT 'account';
    ALTER TABLE messages ADD COLUMN auto_reply TEXT;
    -- Slow pacing buckets ("3 a day per recipient"): until when each is
    -- booked, written with the submit results that used it.
    CREATE TABLE pacing_state (
        key           TEXT PRIMARY KEY,
        rate          REAL NOT NULL,
        burst         INTEGER NOT NULL,
        booked_until  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX pacing_state_by_time ON pacing_state (booked_until);
    "#,
    // 10: slow pacing bookings as a log in the order they are made: one
    // appended row per booking instead of an upsert by key (a recipient's
    // key lands on a random page, one page written per message at commit).
    // The latest booking of a key is the one in force.
    r#"
    CREATE TABLE pacing_bookings (
        seq           INTEGER PRIMARY KEY,
        key           TEXT NOT NULL,
        rate          REAL NOT NULL,
        burst         INTEGER NOT NULL,
        booked_until  INTEGER NOT NULL
    );
    CREATE INDEX pacing_bookings_by_time ON pacing_bookings (booked_until);
    INSERT INTO pacing_bookings (key, rate, burst, booked_until)
        SELECT key, rate, burst, booked_until FROM pacing_state;
    DROP TABLE pacing_state;
    "#,
    // 11: analytics rollups (see rollups.rs): messages by the hour they
    // were accepted and what they are now, delivery-report latencies; the
    // carrier that took each message; the state a message and a part were
    // in before their last change (an UPDATE's RETURNING sees only the new
    // row, and the rollups move a message from its old row to its new one).
    r#"
    ALTER TABLE messages ADD COLUMN carrier TEXT;
    ALTER TABLE messages ADD COLUMN previous_status TEXT;
    ALTER TABLE messages ADD COLUMN previous_carrier TEXT;
    ALTER TABLE parts ADD COLUMN previous_status TEXT;
    CREATE TABLE message_rollups (
        account_id  TEXT NOT NULL,
        hour        INTEGER NOT NULL,
        carrier     TEXT NOT NULL,
        country     TEXT NOT NULL,
        type        TEXT NOT NULL,
        sender      TEXT NOT NULL,
        status      TEXT NOT NULL,
        messages    INTEGER NOT NULL,
        segments    INTEGER NOT NULL,
        PRIMARY KEY (account_id, hour, carrier, country, type, sender, status)
    ) WITHOUT ROWID;
    CREATE INDEX message_rollups_by_hour ON message_rollups (hour);
    CREATE TABLE dlr_latency_rollups (
        account_id  TEXT NOT NULL,
        hour        INTEGER NOT NULL,
        carrier     TEXT NOT NULL,
        country     TEXT NOT NULL,
        type        TEXT NOT NULL,
        sender      TEXT NOT NULL,
        bucket      INTEGER NOT NULL,
        reports     INTEGER NOT NULL,
        PRIMARY KEY (account_id, hour, carrier, country, type, sender, bucket)
    ) WITHOUT ROWID;
    CREATE INDEX dlr_latency_rollups_by_hour ON dlr_latency_rollups (hour);
    -- Messages from before: their carrier is their first part's.
    UPDATE messages SET carrier = (SELECT carrier FROM parts WHERE message_id = messages.id AND idx = 0)
        WHERE status IN ('sent', 'delivered', 'undelivered', 'failed');
    INSERT INTO message_rollups
        SELECT account_id, created_at / 3600000, COALESCE(carrier, ''), COALESCE(country, ''), type,
               COALESCE(sender, ''), status, count(*), SUM(segments)
        FROM messages GROUP BY 1, 2, 3, 4, 5, 6, 7;
    "#,
    // 12: access control. Keys may be limited to networks and expire;
    // accounts may have a request rate and a daily message quota; the audit
    // trail of administrative changes (rows are never updated: a trigger
    // refuses it; retention deletes old ones). A NULL account_id is a
    // platform event (a policy or plugin reload).
    r#"
    ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;
    ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
    ALTER TABLE accounts ADD COLUMN requests_per_second INTEGER;
    ALTER TABLE accounts ADD COLUMN messages_per_day INTEGER;
    CREATE TABLE audit_log (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        account_id  TEXT,
        key_id      TEXT,
        role        TEXT NOT NULL,
        client_ip   TEXT,
        action      TEXT NOT NULL,
        target      TEXT,
        summary     TEXT NOT NULL
    );
    CREATE INDEX audit_log_by_account ON audit_log (account_id, id);
    CREATE INDEX audit_log_by_time ON audit_log (at);
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    "#,
    // 13: data retention (see retention.rs): when a body was redacted, the
    // account's own periods, when a webhook was done with, and the indexes
    // the sweep probes. Each partial index holds only what is still to be
    // swept, so a sweep with nothing due reads a few index pages.
    r#"
    ALTER TABLE messages ADD COLUMN redacted_at INTEGER;
    ALTER TABLE inbound_messages ADD COLUMN redacted_at INTEGER;
    ALTER TABLE accounts ADD COLUMN retention TEXT;
    ALTER TABLE webhook_outbox ADD COLUMN finished_at INTEGER;
    -- Rows finished before: their last attempt's time is the best known.
    UPDATE webhook_outbox SET finished_at = next_attempt_at WHERE state != 'pending';
    -- Messages not yet redacted, by account, type and id (ids sort by
    -- creation time). Nothing a status change writes is in it, so the
    -- dispatch path never touches it; the sweep reads only the ids made
    -- before its cut-off.
    CREATE INDEX messages_unredacted ON messages (account_id, type, id)
        WHERE redacted_at IS NULL;
    CREATE INDEX inbound_body_due ON inbound_messages (account_id, received_at)
        WHERE redacted_at IS NULL;
    CREATE INDEX webhook_outbox_finished ON webhook_outbox (account_id, finished_at)
        WHERE state != 'pending';
    "#,
    // 14: webhook secret rotation: the secret replaced last, kept (as the
    // current one is, for signing) until its grace period ends (Unix ms);
    // until then webhooks carry a signature with each. And an account's
    // webhooks by state, newest first (`GET /v1/webhooks?state=failed`).
    r#"
    ALTER TABLE accounts ADD COLUMN previous_webhook_secret TEXT;
    ALTER TABLE accounts ADD COLUMN previous_webhook_secret_until INTEGER;
    CREATE INDEX webhook_outbox_by_account_state ON webhook_outbox (account_id, state, id);
    "#,
    // 15: the front door each message came in by (`api`, `twilio`,
    // `smpp`): its status reports take that door's form.
    r#"
    ALTER TABLE messages ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
    "#,
    // 16: the Twilio-compatible API. An account's Twilio credential: its
    // Account SID, the keyed hash of its auth token (to authenticate) and
    // the token sealed with a key derived from the server secret (Twilio's
    // signatures are HMACs keyed with the token itself). A number's
    // `sms_url` gets Twilio's inbound form. Each outbox row says its form
    // (`pigeon`, `twilio-status`, `twilio-inbound`). A TwiML `<Message>`
    // answer to an inbound webhook waits in `twiml_replies` until the
    // Twilio door has sent it.
    r#"
    CREATE TABLE twilio_credentials (
        account_id    TEXT PRIMARY KEY,
        account_sid   TEXT NOT NULL UNIQUE,
        token_hash    BLOB NOT NULL,
        token_sealed  BLOB NOT NULL,
        sandbox       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        revoked_at    INTEGER
    ) WITHOUT ROWID;
    ALTER TABLE numbers ADD COLUMN sms_url TEXT;
    ALTER TABLE webhook_outbox ADD COLUMN format TEXT NOT NULL DEFAULT 'pigeon';
    CREATE TABLE twiml_replies (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL,
        inbound_id   TEXT NOT NULL,
        to_number    TEXT NOT NULL,
        from_number  TEXT NOT NULL,
        body         TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 17: the SMPP server (see smpp.rs): accounts' credentials, the parts
    // of client-split long messages, and the outbox of receipts and
    // inbound messages for bound ESMEs.
    r#"
    CREATE TABLE smpp_credentials (
        id            TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL REFERENCES accounts (id),
        system_id     TEXT NOT NULL UNIQUE,
        password_hash BLOB NOT NULL,
        sandbox       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        revoked_at    INTEGER
    );
    CREATE INDEX smpp_credentials_by_account ON smpp_credentials (account_id);
    CREATE TABLE smpp_parts (
        credential_id TEXT NOT NULL,
        grp           TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        total         INTEGER NOT NULL,
        id            TEXT NOT NULL,
        body          TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        PRIMARY KEY (credential_id, grp, seq)
    );
    CREATE INDEX smpp_parts_by_time ON smpp_parts (received_at);
    CREATE TABLE smpp_outbox (
        id              TEXT PRIMARY KEY,
        account_id      TEXT NOT NULL,
        credential_id   TEXT,
        kind            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        claimed_by      TEXT
    );
    CREATE INDEX smpp_outbox_due ON smpp_outbox (account_id, next_attempt_at);
    CREATE INDEX smpp_outbox_claims ON smpp_outbox (claimed_by) WHERE claimed_by IS NOT NULL;
    "#,
    // 18: several nodes on one database (cluster.rs): the nodes alive,
    // which one claimed each part it is sending (so a dead node's claims
    // go back to the queue), a version per cache that nodes poll to learn
    // of changes made on another (bumped by triggers on PostgreSQL:
    // CACHE_TRIGGERS), and how far each carrier's sending time is leased
    // out to the nodes (carriers/pacing.rs).
    r#"
    CREATE TABLE nodes (
        id         TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL,
        seen_at    INTEGER NOT NULL
    );
    ALTER TABLE parts ADD COLUMN claimed_by TEXT;
    CREATE TABLE cache_versions (
        name    TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    );
    INSERT INTO cache_versions (name, version) VALUES ('keys', 0), ('compliance', 0), ('accounts', 0);
    CREATE TABLE carrier_timelines (
        carrier      TEXT PRIMARY KEY,
        booked_until INTEGER NOT NULL
    );
    "#,
    // 19: when several nodes share the database, the slow pacing buckets
    // ("5 an hour per recipient"): one row per bucket, booked in the store
    // so the nodes together keep to it (store/pacing.rs); and carriers'
    // statistics by minute, added up from every node's counts
    // (store/carrier_stats.rs).
    r#"
    CREATE TABLE pacing_buckets (
        key          TEXT PRIMARY KEY,
        booked_until INTEGER NOT NULL
    );
    CREATE INDEX pacing_buckets_spent ON pacing_buckets (booked_until);
    CREATE TABLE carrier_minutes (
        carrier       TEXT NOT NULL,
        minute        INTEGER NOT NULL,
        accepted      INTEGER NOT NULL,
        errors        INTEGER NOT NULL,
        delivered     INTEGER NOT NULL,
        not_delivered INTEGER NOT NULL,
        PRIMARY KEY (carrier, minute)
    );
    CREATE TABLE carrier_latency_minutes (
        carrier TEXT NOT NULL,
        minute  INTEGER NOT NULL,
        bucket  INTEGER NOT NULL,
        reports INTEGER NOT NULL,
        PRIMARY KEY (carrier, minute, bucket)
    );
    "#,
];

/// The migration that adds `nodes` and `cache_versions`.
const SEVERAL_NODES: i64 = 18;

/// On PostgreSQL, where several nodes share the database, every statement
/// that changes what a node caches bumps that cache's version in its own
/// transaction: a trigger cannot be forgotten by a new write path. (One
/// SQLite database has one node, which updates its caches as it writes.)
const CACHE_TRIGGERS: &str = "CREATE FUNCTION pigeon_cache_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN
        UPDATE cache_versions SET version = version + 1 WHERE name = TG_ARGV[0];
        RETURN NULL;
    END $$;
    CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION pigeon_cache_changed('keys');
    CREATE TRIGGER suppressions_changed AFTER INSERT OR UPDATE OR DELETE ON suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION pigeon_cache_changed('compliance');
    CREATE TRIGGER consents_changed AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH STATEMENT EXECUTE FUNCTION pigeon_cache_changed('compliance');
    CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION pigeon_cache_changed('accounts');";

/// The migration that adds `accounts.webhook_secret`.
const WEBHOOK_SECRETS: i64 = 2;

pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let Some(sqlite) = conn.as_sqlite() else {
        return migrate_postgres(conn);
    };
    let found: i64 = sqlite.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > known {
        return Err(StoreError::NewerSchema { found, known });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = sqlite.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        after_migration(conn, version)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// The same migrations on PostgreSQL, each in its SQLite text put in
/// PostgreSQL's DDL ([`postgres_ddl`]): one schema history for both
/// engines. The version is kept in `pigeon_schema`; all that is due runs in
/// one transaction under an advisory lock, so nodes starting together
/// migrate once.
fn migrate_postgres(conn: &Connection) -> Result<()> {
    conn.begin()?;
    let migrated = (|| {
        conn.execute_batch(
            "SELECT pg_advisory_xact_lock(7465) ; \
             CREATE TABLE IF NOT EXISTS pigeon_schema (version BIGINT NOT NULL)",
        )?;
        let found: i64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM pigeon_schema",
            [],
            |row| row.get(0),
        )?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::NewerSchema { found, known });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = index as i64 + 1;
            conn.execute_batch(&postgres_ddl(sql))?;
            after_migration(conn, version)?;
            tracing::info!(version, "database schema migrated");
        }
        conn.execute_batch("DELETE FROM pigeon_schema")?;
        conn.execute("INSERT INTO pigeon_schema (version) VALUES (?1)", [known])?;
        Ok(())
    })();
    conn.end(migrated.is_ok())?;
    migrated
}

/// The audit trail's guard, as SQLite writes it and as PostgreSQL does.
const SQLITE_AUDIT_TRIGGER: &str = "CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";
const POSTGRES_AUDIT_TRIGGER: &str = "CREATE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();";

/// A migration's SQLite DDL in PostgreSQL's: integers are `BIGINT` (the
/// store reads every integer as `i64`, flags included), reals `DOUBLE
/// PRECISION`, blobs `BYTEA`; a rowid key is an identity column;
/// `WITHOUT ROWID` (a SQLite storage choice) goes; the one trigger is
/// PostgreSQL's form of it.
fn postgres_ddl(sql: &str) -> String {
    let sql = sql
        .replace(SQLITE_AUDIT_TRIGGER, POSTGRES_AUDIT_TRIGGER)
        .replace(" WITHOUT ROWID", "")
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER PRIMARY KEY")
        .replace(
            "INTEGER PRIMARY KEY",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        );
    let mut out = String::with_capacity(sql.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "INTEGER" => "BIGINT",
            "REAL" => "DOUBLE PRECISION",
            "BLOB" => "BYTEA",
            other => other,
        });
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Data a migration needs that SQL alone cannot make, in its transaction.
fn after_migration(conn: &Connection, version: i64) -> Result<()> {
    if version == SEVERAL_NODES && conn.engine() == super::db::Engine::Postgres {
        conn.execute_batch(CACHE_TRIGGERS)?;
    }
    if version == WEBHOOK_SECRETS {
        let filled = super::webhooks::backfill_secrets(conn)?;
        if filled > 0 {
            tracing::info!(
                accounts = filled,
                "webhook secrets created for existing accounts"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migration applies on both engines, and a second start finds
    /// nothing to do.
    #[test]
    fn the_migrations_apply_on_both_engines() {
        for db in crate::store::testing::both() {
            migrate(&db).unwrap();
            let tables: i64 = db
                .query_row(
                    "SELECT count(*) FROM accounts a JOIN messages m ON m.account_id = a.id",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(tables, 0);
        }
        assert!(!postgres_ddl(MIGRATIONS[11]).contains("RAISE(ABORT"));
    }

    #[test]
    fn accounts_from_before_webhooks_get_a_secret() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for id in ["acc_a", "acc_b"] {
            conn.execute(
                "INSERT INTO accounts (id, name, operator, created_at) VALUES (?1, 'x', 0, 0)",
                [id],
            )
            .unwrap();
        }
        let conn = Connection::sqlite(conn);
        migrate(&conn).unwrap();
        let conn = conn.as_sqlite().unwrap();
        let secrets: Vec<String> = conn
            .prepare("SELECT webhook_secret FROM accounts ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(secrets.len(), 2);
        for secret in &secrets {
            assert!(
                secret.starts_with("whsec_") && secret.len() == 46,
                "{secret}"
            );
        }
        assert_ne!(secrets[0], secrets[1]);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
