//! The Server-Server API, served on the federation (TLS) listeners only: one file per spec
//! section (`keys`, `version`, `query`, `events`, `invite`, `directory`, `spaces`, `openid`, `devices`, `send`) and
//! `auth` for signed requests. Handlers parse, call a service or `Federation`, answer.

pub mod auth;
mod devices;
mod directory;
mod events;
mod invite;
mod keys;
mod knock;
mod membership;
mod openid;
mod query;
mod send;
mod spaces;
mod version;

use axum::Router;

use crate::api::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = version::routes(router);
    let router = keys::routes(router);
    let router = membership::routes(router);
    let router = knock::routes(router);
    let router = invite::routes(router);
    let router = events::routes(router);
    let router = directory::routes(router);
    let router = spaces::routes(router);
    let router = openid::routes(router);
    let router = devices::routes(router);
    let router = send::routes(router);
    query::routes(router)
}
