//! The Client-Server API, one file per section of the specification.

mod account;
mod devices;
mod discovery;
mod profile;
mod register;
mod session;

use axum::Router;

use super::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = register::routes(router);
    let router = session::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    profile::routes(router)
}
