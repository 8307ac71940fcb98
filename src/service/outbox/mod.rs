//! Outboxes: tasks that react to committed positions and deliver what they find to the outside
//! world. They never call back up into the request path; a restart resumes each from the
//! position it persisted.
//!
//! - `push` sends recorded notifications to users' HTTP pushers (`push_gateway` speaks the Push
//!   Gateway API for it).
//! - `federation` sends local events and EDUs to the other servers of their rooms, in
//!   transactions, one queue per destination.
//! - `appservice` sends the events, ephemeral updates and to-device messages each appservice is
//!   interested in, in transactions, one queue per appservice.

mod appservice;
pub(crate) mod federation;
mod push;
pub(crate) mod push_gateway;
