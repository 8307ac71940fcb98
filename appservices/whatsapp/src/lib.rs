//! The Plexus WhatsApp bridge crate: the bridge itself ([`bridge`], run by the
//! `whatsapp-bridge` binary), and the local simulator of the WhatsApp Business Cloud API that
//! its tests run against (and that can be run for demos). The bridge never depends on the
//! simulator outside tests.

pub mod bridge;
mod https;
pub mod signature;
pub mod simulator;
