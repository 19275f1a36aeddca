//! The carrier interface the dispatcher talks to. Carriers take the parts of
//! a message and either accept them (one carrier id per part) or say why not;
//! delivery reports come back later through a [`ReportSink`].

mod loopback;

use std::future::Future;
use std::pin::Pin;

pub use loopback::LoopbackCarrier;

use crate::encoding::{Encoding, Part};
use crate::model::MessageType;
use crate::store::DeliveryReport;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where carriers send delivery reports; the tracker applies them.
pub type ReportSink = tokio::sync::mpsc::UnboundedSender<DeliveryReport>;

/// One submission: some or all parts of one message.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub message_id: String,
    pub to: String,
    pub from: Option<String>,
    pub message_type: MessageType,
    pub encoding: Encoding,
    pub parts: Vec<Part>,
    /// 1 for the first attempt.
    pub attempt: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Worth trying again later (network trouble, carrier busy).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The carrier asked us to slow down.
    #[error("throttled; retry after {retry_after_ms} ms")]
    Throttled { retry_after_ms: u64 },
    /// Will never succeed (bad number, blocked content).
    #[error("{code}: {reason}")]
    Permanent { code: String, reason: String },
}

pub trait Carrier: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Hands the parts to the carrier; on success returns one carrier message
    /// id per part, in order.
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, SubmitError>>;
}
