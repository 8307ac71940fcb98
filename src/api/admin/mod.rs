//! The admin API, shaped like Synapse's (`/_synapse/admin/...`) so that existing tooling works:
//! shared-secret registration, registration tokens and abuse reports. These endpoints are not in
//! the Matrix specification, so their paths are written here.

mod register;
mod registration_tokens;
mod reports;

use axum::Router;

use super::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    reports::routes(registration_tokens::routes(register::routes(router)))
}
