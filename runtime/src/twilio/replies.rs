//! TwiML replies: when an application answers a Twilio-form inbound
//! webhook with `<Response><Message>…</Message></Response>`, the deliverer
//! keeps each text (`store::twilio::add_replies`, with the webhook's
//! outcome) and this task sends it from the number that was written to,
//! to the handset that wrote, through the accept path like any message:
//! opt-outs and the content policy hold for replies too. A reply is sent
//! with its id as idempotency key, so one sent just before a crash is not
//! sent again when the task runs after the restart.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::model::Origin;
use crate::store::twilio::{self as stored, TwimlReply};
use crate::store::{Idempotency, Store, StoreError};
use crate::submit::{ErrorKind, Request, SubmitError, Submitter};

/// Replies taken in one go.
const BATCH: usize = 64;
/// How often the table is looked at without a wake-up (after a restart, or
/// a failed attempt).
const POLL: Duration = Duration::from_secs(2);

/// Sends replies until `shutdown` turns true.
pub async fn run(
    store: Store,
    submit: Arc<Submitter>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let sent_all = match send_due(&store, &submit).await {
            Ok(count) => count < BATCH,
            Err(err) => {
                tracing::warn!(error = %err, "sending TwiML replies failed; will retry");
                true
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if sent_all {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Sends one batch; how many replies it held.
async fn send_due(store: &Store, submit: &Submitter) -> Result<usize, StoreError> {
    let replies = store
        .read(|conn| stored::pending_replies(conn, BATCH))
        .await?;
    for reply in &replies {
        send(store, submit, reply).await?;
    }
    Ok(replies.len())
}

async fn send(store: &Store, submit: &Submitter, reply: &TwimlReply) -> Result<(), StoreError> {
    let account = reply.account_id.clone();
    let credential = store
        .read(move |conn| stored::credential(conn, &account))
        .await?;
    let span = tracing::info_span!("twiml_reply", inbound_id = %reply.inbound_id);
    let _entered = span.enter();
    if let Some(credential) = credential.filter(|c| c.revoked_at.is_none()) {
        let principal = super::principal(&credential, None);
        let request = Request {
            to: reply.to.clone(),
            from: Some(reply.from.clone()),
            body: reply.body.clone(),
            idempotency: Some(Idempotency {
                key: format!("twiml:{}", reply.id),
                request_digest: Sha256::digest(reply.body.as_bytes()).into(),
            }),
            origin: Origin::Twilio,
            ..Request::default()
        };
        match submit.submit(&principal, request).await {
            Ok(accepted) => {
                tracing::info!(message_id = %accepted.message.id, "TwiML reply accepted");
            }
            // Kept for the next try: the store is failing or shutting down.
            Err(SubmitError {
                kind: ErrorKind::Store(err),
                ..
            }) => return Err(*err),
            Err(err) => {
                tracing::warn!(code = %err.code, error = %err, "TwiML reply refused");
            }
        }
    } else {
        tracing::warn!("TwiML reply dropped: the account has no Twilio credential in force");
    }
    let id = reply.id.clone();
    store
        .write(move |conn| stored::delete_reply(conn, &id))
        .await
}
