//! The Server-Server API, served on the federation (TLS) listeners only: one file per spec
//! section (`keys`, `version`, `query`) and `auth` for signed requests. Handlers parse, call a
//! service or `Federation`, answer.

pub mod auth;
mod keys;
mod query;
mod version;

use axum::Router;

use crate::api::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = version::routes(router);
    let router = keys::routes(router);
    query::routes(router)
}
