//! One ESME connection: the bind, then PDUs until unbind, idle timeout,
//! revocation of its credential or shutdown. A reader task frames PDUs,
//! a writer task sends what the session and its `submit_sm` tasks
//! answer (responses may go out of order, as SMPP allows), and the
//! session loop in between keeps the bind's state: its credential, the
//! `deliver_sm`s it has out (at most `smpp.window`) and when it last
//! heard from the ESME.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use super::pdu::{self, Bind, Pdu, PduError, command, status, tag};
use super::submit::{self, Answer};
use super::{Smpp, receipts};
use crate::auth::{Principal, Role};
use crate::store::smpp::{self as stored, CredentialRecord};
use crate::time::now_ms;

/// How often a bind checks its timers; it looks for due outbox rows every
/// `OUTBOX_POLL`, and at once after a `deliver_sm_resp` made room.
const TICK: Duration = Duration::from_millis(100);
const OUTBOX_POLL: Duration = Duration::from_millis(500);
const CREDENTIAL_CHECK: Duration = Duration::from_secs(1);
/// `submit_sm`s of one bind being stored at once; past it, reading waits.
const MAX_SUBMITS_IN_FLIGHT: usize = 32;
/// Failed binds before the connection is closed.
const MAX_FAILED_BINDS: u32 = 3;
/// Refusals (`deliver_sm_resp` with an error) before a row is dropped.
const MAX_REFUSALS: i64 = 10;
/// How long an `unbind` waits for its `unbind_resp`.
const UNBIND_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Transmitter,
    Receiver,
    Transceiver,
}

impl Mode {
    fn of(command_id: u32) -> Option<Self> {
        match command_id {
            command::BIND_TRANSMITTER => Some(Self::Transmitter),
            command::BIND_RECEIVER => Some(Self::Receiver),
            command::BIND_TRANSCEIVER => Some(Self::Transceiver),
            _ => None,
        }
    }

    fn transmits(self) -> bool {
        self != Self::Receiver
    }

    fn receives(self) -> bool {
        self != Self::Transmitter
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Transmitter => "transmitter",
            Self::Receiver => "receiver",
            Self::Transceiver => "transceiver",
        }
    }
}

struct Bound {
    mode: Mode,
    credential: CredentialRecord,
    /// Names this bind's claims on outbox rows.
    bind_id: String,
    submitter: Arc<submit::Submitter>,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct InFlight {
    outbox_id: String,
    sent: Instant,
}

struct Session {
    smpp: Arc<Smpp>,
    peer: SocketAddr,
    out: mpsc::Sender<Vec<u8>>,
    bound: Option<Bound>,
    failed_binds: u32,
    next_sequence: u32,
    in_flight: HashMap<u32, InFlight>,
    submits: Arc<Semaphore>,
    credential_checked: Instant,
    outbox_polled: Instant,
    /// An acknowledgement made room in the window: look again now.
    room_made: bool,
}

type Incoming = mpsc::Receiver<Result<Option<Pdu>, PduError>>;

/// Serves one connection until it ends.
pub(super) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    smpp: Arc<Smpp>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (out, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let (incoming_tx, mut incoming) = mpsc::channel(16);
    let reader_task = tokio::spawn(async move {
        loop {
            let read = pdu::read_pdu(&mut reader).await;
            let last = !matches!(read, Ok(Some(_)));
            if incoming_tx.send(read).await.is_err() || last {
                break;
            }
        }
    });
    let mut session = Session {
        smpp,
        peer,
        out,
        bound: None,
        failed_binds: 0,
        next_sequence: 1,
        in_flight: HashMap::new(),
        submits: Arc::new(Semaphore::new(MAX_SUBMITS_IN_FLIGHT)),
        credential_checked: Instant::now(),
        outbox_polled: Instant::now(),
        room_made: false,
    };
    let span = tracing::info_span!("smpp", %peer, system_id = tracing::field::Empty);
    async {
        session.run(&mut incoming, &mut shutdown).await;
        session.close().await;
    }
    .instrument(span)
    .await;
    reader_task.abort();
    drop(session);
    // Answers of submits still being stored go out before the close.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer_task).await;
}

/// Resolves once shutdown is asked for (the watch's guard is not held).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Session {
    async fn run(&mut self, incoming: &mut Incoming, shutdown: &mut watch::Receiver<bool>) {
        let idle = Duration::from_secs(self.smpp.config.idle_timeout_secs);
        let mut last_heard = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                read = incoming.recv() => match read {
                    None | Some(Ok(None)) => return,
                    Some(Err(PduError::BadLength(len))) => {
                        tracing::info!(len, "SMPP PDU length out of range: closing");
                        self.send(Pdu::new(command::GENERIC_NACK, status::RINVCMDLEN, 0, Vec::new())).await;
                        return;
                    }
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "SMPP connection ended");
                        return;
                    }
                    Some(Ok(Some(pdu))) => {
                        last_heard = Instant::now();
                        if self.handle(pdu).await == Flow::Close {
                            return;
                        }
                    }
                },
                _ = tick.tick() => {
                    if last_heard.elapsed() >= idle {
                        tracing::info!("SMPP bind idle for smpp.idle_timeout_secs: unbinding");
                        self.unbind(incoming).await;
                        return;
                    }
                    if self.tick().await == Flow::Close {
                        self.unbind(incoming).await;
                        return;
                    }
                },
                () = stopping(shutdown) => {
                    self.unbind(incoming).await;
                    return;
                }
            }
        }
    }

    fn sequence(&mut self) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = if sequence >= 0x7FFF_FFFF {
            1
        } else {
            sequence + 1
        };
        sequence
    }

    async fn send(&self, pdu: Pdu) {
        let _ = self.out.send(pdu.to_bytes()).await;
    }

    async fn respond(&self, request: &Pdu, status: u32, body: Vec<u8>) {
        self.send(Pdu::new(
            request.command_id | command::RESP,
            status,
            request.sequence,
            body,
        ))
        .await;
    }

    async fn nack(&self, sequence: u32, status: u32) {
        self.send(Pdu::new(
            command::GENERIC_NACK,
            status,
            sequence,
            Vec::new(),
        ))
        .await;
    }

    /// Sends `unbind` and waits a moment for its `unbind_resp`.
    async fn unbind(&mut self, incoming: &mut Incoming) {
        let sequence = self.sequence();
        self.send(Pdu::new(command::UNBIND, 0, sequence, Vec::new()))
            .await;
        let _ = tokio::time::timeout(UNBIND_WAIT, async {
            while let Some(Ok(Some(pdu))) = incoming.recv().await {
                if pdu.command_id == command::UNBIND | command::RESP
                    || pdu.command_id == command::UNBIND
                {
                    break;
                }
            }
        })
        .await;
    }

    async fn handle(&mut self, pdu: Pdu) -> Flow {
        if pdu.command_id & command::RESP != 0 {
            self.on_response(pdu).await;
            return Flow::Continue;
        }
        if let Some(mode) = Mode::of(pdu.command_id) {
            return self.on_bind(pdu, mode).await;
        }
        match pdu.command_id {
            command::UNBIND => {
                self.respond(&pdu, status::ROK, Vec::new()).await;
                Flow::Close
            }
            command::ENQUIRE_LINK => {
                self.respond(&pdu, status::ROK, Vec::new()).await;
                Flow::Continue
            }
            command::SUBMIT_SM => self.on_submit(pdu).await,
            _ => {
                self.nack(pdu.sequence, status::RINVCMDID).await;
                Flow::Continue
            }
        }
    }

    async fn on_bind(&mut self, pdu: Pdu, mode: Mode) -> Flow {
        if self.bound.is_some() {
            self.respond(&pdu, status::RALYBND, Vec::new()).await;
            return Flow::Continue;
        }
        let Ok(bind) = Bind::decode(&pdu.body) else {
            self.nack(pdu.sequence, status::RINVCMDLEN).await;
            return Flow::Continue;
        };
        let system_id = bind.system_id.clone();
        let found = self
            .smpp
            .store
            .read(move |conn| stored::active_credential_by_system_id(conn, &system_id))
            .await;
        let credential = match found {
            Ok(Some(credential))
                if super::password_hash(&self.smpp.hasher, &bind.system_id, &bind.password)
                    == credential.password_hash =>
            {
                credential
            }
            Ok(_) => {
                ::metrics::counter!("pigeon_smpp_binds_total", "outcome" => "refused").increment(1);
                self.failed_binds += 1;
                tracing::warn!(system_id = %bind.system_id, "SMPP bind refused: unknown system_id or wrong password");
                self.respond(&pdu, status::RBINDFAIL, Vec::new()).await;
                return if self.failed_binds >= MAX_FAILED_BINDS {
                    Flow::Close
                } else {
                    Flow::Continue
                };
            }
            Err(err) => {
                tracing::warn!(error = %err, "SMPP bind failed: store");
                self.respond(&pdu, status::RSYSERR, Vec::new()).await;
                return Flow::Continue;
            }
        };
        ::metrics::counter!("pigeon_smpp_binds_total", "outcome" => "bound").increment(1);
        tracing::Span::current().record("system_id", credential.system_id.as_str());
        tracing::info!(mode = mode.as_str(), account_id = %credential.account_id, "SMPP bound");
        let principal = Principal {
            key_id: credential.id.clone(),
            account_id: credential.account_id.clone(),
            role: Role::Developer,
            sandbox: credential.sandbox,
            operator: false,
            allowed_ips: Vec::new().into(),
            expires_at: None,
            client_ip: Some(self.peer.ip()),
        };
        let submitter = Arc::new(submit::Submitter {
            credential_id: credential.id.clone(),
            principal,
        });
        self.bound = Some(Bound {
            mode,
            credential,
            bind_id: crate::ids::new_id("bind"),
            submitter,
        });
        let mut body = pdu::Writer::default();
        body.c_string("pigeon")
            .tlv(tag::SC_INTERFACE_VERSION, &[0x34]);
        self.respond(&pdu, status::ROK, body.bytes).await;
        self.credential_checked = Instant::now();
        self.deliver_due().await;
        Flow::Continue
    }

    async fn on_submit(&mut self, pdu: Pdu) -> Flow {
        let submitter = match &self.bound {
            Some(bound) if bound.mode.transmits() => bound.submitter.clone(),
            _ => {
                self.respond(&pdu, status::RINVBNDSTS, Vec::new()).await;
                return Flow::Continue;
            }
        };
        let Ok(permit) = self.submits.clone().acquire_owned().await else {
            return Flow::Close;
        };
        let (smpp, out) = (self.smpp.clone(), self.out.clone());
        let task = async move {
            let answer = submit::submit_sm(&smpp, &submitter, &pdu.body).await;
            let resp = command::SUBMIT_SM | command::RESP;
            let reply = match answer {
                Answer::Accepted(id) => {
                    tracing::debug!(message_id = %id, "submit_sm accepted");
                    Pdu::new(resp, status::ROK, pdu.sequence, pdu::id_body(&id))
                }
                Answer::Refused(code) => {
                    tracing::debug!(status = code, "submit_sm refused");
                    Pdu::new(resp, code, pdu.sequence, Vec::new())
                }
                Answer::Malformed(err) => {
                    tracing::debug!(error = %err, "submit_sm malformed");
                    Pdu::new(
                        command::GENERIC_NACK,
                        status::RINVCMDLEN,
                        pdu.sequence,
                        Vec::new(),
                    )
                }
            };
            ::metrics::counter!("pigeon_smpp_submit_sm_total",
                "status" => format!("{:#04x}", reply.status))
            .increment(1);
            let _ = out.send(reply.to_bytes()).await;
            drop(permit);
        };
        tokio::spawn(task.instrument(tracing::Span::current()));
        Flow::Continue
    }

    async fn on_response(&mut self, pdu: Pdu) {
        let is_deliver = pdu.command_id == command::DELIVER_SM | command::RESP;
        if !is_deliver && pdu.command_id != command::GENERIC_NACK {
            return;
        }
        let Some(sent) = self.in_flight.remove(&pdu.sequence) else {
            return;
        };
        self.room_made = true;
        let id = sent.outbox_id;
        let now = now_ms();
        let written = if is_deliver && pdu.status == status::ROK {
            self.smpp
                .store
                .write(move |conn| stored::outbox_delivered(conn, &id))
                .await
                .map(|()| false)
        } else {
            tracing::info!(status = pdu.status, outbox_id = %id, "deliver_sm refused by the ESME");
            let retry_at = now + self.resend_after_ms();
            self.smpp
                .store
                .write(move |conn| stored::outbox_refused(conn, &id, retry_at, MAX_REFUSALS))
                .await
        };
        match written {
            Ok(true) => tracing::warn!("deliver_sm dropped after {MAX_REFUSALS} refusals"),
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "SMPP outbox not updated"),
        }
    }

    fn resend_after_ms(&self) -> i64 {
        (self.smpp.config.response_timeout_secs * 1000) as i64
    }

    async fn tick(&mut self) -> Flow {
        let Some(bound) = &self.bound else {
            return Flow::Continue;
        };
        if self.credential_checked.elapsed() >= CREDENTIAL_CHECK {
            self.credential_checked = Instant::now();
            let id = bound.credential.id.clone();
            if let Ok(false) = self
                .smpp
                .store
                .read(move |conn| stored::credential_active(conn, &id))
                .await
            {
                tracing::info!("SMPP credential revoked: unbinding");
                return Flow::Close;
            }
        }
        let timeout = Duration::from_secs(self.smpp.config.response_timeout_secs);
        // Unanswered for too long: the row is due again (see claim_outbox).
        self.in_flight
            .retain(|_, sent| sent.sent.elapsed() < timeout);
        if self.room_made || self.outbox_polled.elapsed() >= OUTBOX_POLL {
            self.deliver_due().await;
        }
        Flow::Continue
    }

    /// Sends due outbox rows, as many as the window has room for.
    async fn deliver_due(&mut self) {
        let Some(bound) = &self.bound else {
            return;
        };
        if !bound.mode.receives() {
            return;
        }
        self.outbox_polled = Instant::now();
        self.room_made = false;
        let room = self.smpp.config.window.saturating_sub(self.in_flight.len());
        if room == 0 {
            return;
        }
        let (account_id, credential_id, bind_id) = (
            bound.credential.account_id.clone(),
            bound.credential.id.clone(),
            bound.bind_id.clone(),
        );
        let (resend_after, now) = (self.resend_after_ms(), now_ms());
        let (account, credential) = (account_id.clone(), credential_id.clone());
        let due = self
            .smpp
            .store
            .read(move |conn| stored::has_due(conn, &account, &credential, now))
            .await;
        if !matches!(due, Ok(true)) {
            return;
        }
        let claimed = self
            .smpp
            .store
            .write(move |conn| {
                stored::claim_outbox(
                    conn,
                    &account_id,
                    &credential_id,
                    &bind_id,
                    room,
                    now,
                    resend_after,
                )
            })
            .await;
        let items = match claimed {
            Ok(items) => items,
            Err(err) => {
                tracing::warn!(error = %err, "SMPP outbox not read");
                return;
            }
        };
        for item in items {
            let sequence = self.sequence();
            let body = receipts::deliver_sm(&item).encode();
            tracing::debug!(outbox_id = %item.id, attempt = item.attempts, "deliver_sm sent");
            ::metrics::counter!("pigeon_smpp_deliver_sm_total",
                "kind" => if item.kind == stored::OutboxKind::Mo { "mo" } else { "receipt" })
            .increment(1);
            self.in_flight.insert(
                sequence,
                InFlight {
                    outbox_id: item.id,
                    sent: Instant::now(),
                },
            );
            self.send(Pdu::new(command::DELIVER_SM, 0, sequence, body))
                .await;
        }
    }

    /// What this bind claimed and was not acknowledged is due at once.
    async fn close(&mut self) {
        let Some(bound) = self.bound.take() else {
            return;
        };
        let (bind_id, now) = (bound.bind_id.clone(), now_ms());
        if let Err(err) = self
            .smpp
            .store
            .write(move |conn| stored::release_claims(conn, &bind_id, now))
            .await
        {
            tracing::warn!(error = %err, "SMPP claims not released");
        }
        tracing::info!(mode = bound.mode.as_str(), "SMPP unbound");
    }
}
