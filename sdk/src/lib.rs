//! Write carrier adapters for Pigeon.
//!
//! A carrier adapter is a WebAssembly component implementing the
//! `pigeon:carrier@0.3.0` contract in `sdk/wit/carrier.wit`. The contract is
//! sans-IO: the plugin never opens a socket. It turns a message into an HTTP
//! request, the carrier's response into an outcome, and a carrier callback
//! into delivery reports and inbound messages; Pigeon does all the I/O.
//!
//! An adapter implements [`Carrier`] with the plain Rust types of [`types`]
//! and exports it with [`export_carrier!`]:
//!
//! ```
//! use pigeon_sdk::types::*;
//! use pigeon_sdk::Carrier;
//!
//! struct Echo;
//!
//! impl Carrier for Echo {
//!     fn describe() -> Info {
//!         Info::new("echo", env!("CARGO_PKG_VERSION"), &["submit"])
//!     }
//!     fn start_submit(_settings: &str, message: Message) -> Result<Step, Failure> {
//!         let request = HttpRequest::post("/send").with_json(&serde_json::json!({
//!             "to": message.to,
//!             "text": message.text,
//!         }));
//!         Ok(Step::send(request, Vec::new()))
//!     }
//!     fn resume_submit(_: &str, _: Vec<u8>, response: HttpResponse) -> Result<Step, Failure> {
//!         match response.status {
//!             200 => Ok(Step::accepted(vec![response.text().into_owned()])),
//!             status => Err(Failure::retryable(format!("carrier answered {status}"))),
//!         }
//!     }
//!     fn parse_callback(_: &str, _: CallbackRequest) -> Result<CallbackReply, String> {
//!         Ok(CallbackReply::new(HttpResponse::new(204)))
//!     }
//! }
//!
//! pigeon_sdk::export_carrier!(Echo);
//! ```
//!
//! Helpers for what adapters usually need: [`form`] (form-urlencoded bodies
//! and query strings), [`json`], [`auth`] (HTTP basic auth), [`signature`]
//! (HMAC-SHA256 verification), [`settings`] (typed settings with helpful
//! errors), [`host`] (the callback URL) and [`log`]. With the `testkit` feature, [`testkit`] runs an
//! adapter natively against JSON fixtures.

pub mod auth;
pub mod encoding;
pub mod form;
pub mod host;
pub mod json;
pub mod log;
pub mod settings;
pub mod signature;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod types;

/// The `serde_json` this SDK uses, so adapters need not depend on it to
/// build JSON bodies (`pigeon_sdk::serde_json::json!`).
pub use serde_json;

#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "carrier",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_carrier_world",
        additional_derives: [PartialEq, Eq],
    });
}

use std::marker::PhantomData;

use types::{
    BatchStep, CallbackReply, CallbackRequest, Failure, HttpResponse, Info, Message, Step,
};

/// The contract version this SDK implements (`pigeon:carrier@0.3.0`).
pub const CONTRACT_VERSION: &str = "0.3.0";

/// A carrier adapter.
///
/// Every function is stateless: a plugin instance may be recreated between
/// calls, so whatever a submission needs later goes into the continuation of
/// [`Step::send`]. `settings` is the carrier's `settings` table from Pigeon's
/// configuration as a JSON object; parse it with [`settings::parse`].
pub trait Carrier {
    /// Name, version, contract version and capabilities of the adapter.
    fn describe() -> Info;

    /// Checks the settings when Pigeon starts. Returns every problem found.
    ///
    /// The default accepts any JSON object (or empty settings).
    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        settings::parse::<serde_json::Map<String, serde_json::Value>>(settings)
            .map(drop)
            .map_err(|e| vec![e.to_string()])
    }

    /// Starts submitting a message: usually returns [`Step::send`] with the
    /// request to the carrier, or fails without a request.
    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure>;

    /// Continues a submission with the carrier's answer to the last request
    /// and the continuation that came with it.
    fn resume_submit(
        settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure>;

    /// Starts submitting several messages in one request, for a carrier
    /// whose API takes them; called only when [`Carrier::describe`] gives a
    /// `max_batch` above 1 ([`Info::with_max_batch`]), with at most that many.
    /// Returns [`BatchStep::send`], or [`BatchStep::done`] with an outcome
    /// per message (those refused without a request). An `Err` fails them all.
    ///
    /// The default refuses: an adapter that says `max_batch` 1 is never asked.
    fn start_submit_batch(settings: &str, messages: Vec<Message>) -> Result<BatchStep, Failure> {
        let _ = (settings, messages);
        Err(Failure::misconfigured(
            "this adapter takes one message per submission",
        ))
    }

    /// Continues a batch with the carrier's answer; see
    /// [`Carrier::start_submit_batch`].
    fn resume_submit_batch(
        settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<BatchStep, Failure> {
        let _ = (settings, continuation, response);
        Err(Failure::misconfigured(
            "this adapter takes one message per submission",
        ))
    }

    /// Turns a request the carrier made to Pigeon's callback URL into
    /// delivery reports, inbound messages and the answer to give the carrier.
    /// An `Err` is answered with `400` and logged.
    fn parse_callback(settings: &str, request: CallbackRequest) -> Result<CallbackReply, String>;
}

/// Bridges a [`Carrier`] to the generated bindings; used by [`export_carrier!`].
#[doc(hidden)]
pub struct Adapter<C>(PhantomData<C>);

impl<C: Carrier> bindings::Guest for Adapter<C> {
    fn describe() -> Info {
        C::describe()
    }

    fn validate_settings(settings: String) -> Result<(), Vec<String>> {
        C::validate_settings(&settings)
    }

    fn start_submit(settings: String, message: Message) -> Result<Step, Failure> {
        C::start_submit(&settings, message)
    }

    fn resume_submit(
        settings: String,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        C::resume_submit(&settings, continuation, response)
    }

    fn start_submit_batch(settings: String, messages: Vec<Message>) -> Result<BatchStep, Failure> {
        C::start_submit_batch(&settings, messages)
    }

    fn resume_submit_batch(
        settings: String,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<BatchStep, Failure> {
        C::resume_submit_batch(&settings, continuation, response)
    }

    fn parse_callback(settings: String, request: CallbackRequest) -> Result<CallbackReply, String> {
        C::parse_callback(&settings, request)
    }
}

/// Exports a [`Carrier`] implementation as the plugin's component exports.
///
/// Use it once per plugin crate, at the top level:
///
/// ```ignore
/// pigeon_sdk::export_carrier!(MyCarrier);
/// ```
#[macro_export]
macro_rules! export_carrier {
    ($carrier:ty) => {
        #[doc(hidden)]
        type __PigeonCarrierExport = $crate::Adapter<$carrier>;
        $crate::bindings::__export_carrier_world!(__PigeonCarrierExport with_types_in $crate::bindings);
    };
}
