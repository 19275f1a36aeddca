//! The carriers: the interface the dispatcher submits through, the
//! configured carriers with their pacing and counters ([`CarrierSet`]), and
//! the sandbox's fake carrier. Every carrier is served by a plugin
//! ([`crate::plugins`]); delivery reports come back through the callback
//! route.

mod pacing;
mod registry;
mod sandbox;
mod stats;

use std::future::Future;
use std::pin::Pin;

pub use pacing::{Buckets, Rate};
pub use registry::{
    Admission, CarrierCounters, CarrierError, CarrierHandle, CarrierSet, MAX_PACING_WAIT,
};
pub use sandbox::SandboxEndpoint;
pub use stats::{CarrierStats, Window};

use crate::encoding::{Encoding, Part};
use crate::model::MessageType;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One submission: some or all parts of one message.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub message_id: String,
    pub to: String,
    pub from: Option<String>,
    /// The whole message text, even when only some parts are submitted.
    pub text: String,
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
    /// The carrier's configuration is wrong (credentials, settings): no
    /// message will go through until an operator fixes it.
    #[error("carrier misconfigured: {0}")]
    Misconfigured(String),
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
