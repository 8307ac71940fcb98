//! The Plexus WhatsApp bridge crate. For now it holds the local simulator of the WhatsApp
//! Business Cloud API that the bridge's tests run against (and that can be run for demos); the
//! bridge itself will sit beside it and never depends on it outside tests.

pub mod simulator;
