//! Every integration test, in one binary: one link instead of one per file,
//! which was most of a clean build's time. Each module is one area, as the
//! files were.

mod common;

mod access_control;
mod adapter_http_json;
mod adapter_kannel;
mod adapter_vonage;
mod analytics;
mod api_accounts;
mod api_messages;
mod carrier_template;
mod carriers;
mod cluster;
mod consent;
mod dashboard;
mod dispatch;
mod durability;
mod log_hygiene;
mod numbers;
mod openapi;
mod plugins;
mod policies_live;
mod policy_cli;
mod retention;
mod server_limits;
mod smpp;
mod smpp_kannel;
mod tls;
mod twilio;
mod two_way;
mod walkthrough;
mod webhooks;
