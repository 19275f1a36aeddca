//! Carrier plugins: WebAssembly components, built against the contract in
//! `sdk/wit/carrier.wit`, hosted with wasmtime.
//!
//! The plugin is sans-IO: it turns a message into an HTTP request, a response
//! into an outcome and a carrier callback into delivery reports, and the host
//! ([`PluginCarrier`]) does all the I/O. Every call gets a fresh store with a
//! memory cap and an epoch deadline ([`Limits`]); a trap, a deadline or an
//! allocation failure fails that call ([`CallError`]) and is counted in the
//! plugin's [`PluginStats`]. A [`Plugin`] can be reloaded from disk while
//! calls are in flight ([`Plugin::reload_if_changed`], [`watch`]).
//!
//! Each configured carrier is a [`PluginCarrier`] (see `crate::carriers`).

mod carrier;
mod engine;
mod http;
mod limits;
mod reload;

pub use carrier::{
    CallbackError, CallbackOutcome, CallbackRequest, CarrierSpec, InboundMessage, InboundPart,
    PluginCarrier,
};
pub use engine::{CallError, LoadError, Plugin, PluginEngine, PluginInfo, PluginStats};
pub use http::{HttpClient, HttpResponse, UpstreamError, http_client, http_client_with_tls};
pub use limits::Limits;
pub use reload::{ReloadObserver, watch};

/// The contract version this host implements (`sdk/wit/carrier.wit`).
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Host bindings generated from the WIT contract.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "carrier",
    });

    pub use self::pigeon::carrier::host::Level;
    pub use self::pigeon::carrier::types;
}
