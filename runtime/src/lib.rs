//! Pigeon: an SMS aggregator runtime. Applications submit messages over
//! HTTP; Pigeon encodes them, stores them durably, dispatches their parts to
//! a carrier and tracks them to the handset's delivery report.
//!
//! The binary is a thin wrapper over [`cli::main`]; tests start the same
//! server in-process with [`runtime::Pigeon`] on a port-0 listener.

pub mod api;
pub mod auth;
pub mod carriers;
pub mod cli;
pub mod cluster;
pub mod compliance;
pub mod config;
pub mod dashboard;
pub mod dispatch;
pub mod encoding;
pub mod http_client;
pub mod ids;
pub mod log_limit;
pub mod metrics;
pub mod model;
pub mod numbers;
pub mod plugins;
pub mod policies;
pub mod runtime;
pub mod server;
pub mod smpp;
pub mod store;
pub mod submit;
pub mod time;
pub mod tls_verify;
pub mod tracking;
pub mod twilio;
pub mod webhooks;
pub mod workers;
