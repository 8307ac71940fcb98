//! Plexus, a Matrix homeserver for care organisations. The binary (`main.rs`) is a thin command
//! line over this library; `server::run` starts a whole server, so tests can start several.

pub mod api;
pub mod config;
pub mod federation;
pub mod metrics;
pub mod room;
pub mod server;
pub mod service;
pub mod storage;
pub mod sync;
