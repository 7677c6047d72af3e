//! whatsapp-connector: connects C and C++ applications to a WhatsApp Business Account over
//! Meta's WhatsApp Business Cloud API.
//!
//! The core lives in plain Rust modules without FFI types ([`client`], [`outbox`], [`graph`],
//! [`message`], [`events`]); the C surface in [`ffi`] is a thin layer over them, one file per
//! exported object. The generated header is `include/whatsapp_connector.h`.

pub mod client;
pub mod config;
mod dedupe;
pub mod error;
pub mod events;
pub mod ffi;
pub mod graph;
pub mod inbound;
mod listener;
mod logging;
pub mod media;
pub mod message;
pub mod onboarding;
pub mod outbox;
pub mod secrets;
pub mod store;
pub mod webhook;
