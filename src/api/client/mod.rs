//! The Client-Server API, one file per section of the specification.

mod account;
mod account_data;
mod appservice;
mod dehydrated_device;
mod devices;
mod directory;
mod discovery;
mod filter;
mod key_backup;
mod keys;
mod membership;
mod openid;
mod presence;
mod profile;
mod public_rooms;
mod push_rules;
mod pushers;
mod receipts;
mod register;
mod relations;
mod reports;
mod rooms;
mod send;
mod session;
mod sync;
mod tags;
mod thirdparty;
mod timestamp;
mod to_device;
mod typing;

use axum::Router;

use super::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = register::routes(router);
    let router = appservice::routes(router);
    let router = thirdparty::routes(router);
    let router = session::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = profile::routes(router);
    let router = rooms::routes(router);
    let router = membership::routes(router);
    let router = send::routes(router);
    let router = public_rooms::routes(router);
    let router = reports::routes(router);
    let router = timestamp::routes(router);
    let router = relations::routes(router);
    let router = sync::routes(router);
    let router = push_rules::routes(router);
    let router = pushers::routes(router);
    let router = filter::routes(router);
    let router = account_data::routes(router);
    let router = tags::routes(router);
    let router = typing::routes(router);
    let router = receipts::routes(router);
    let router = presence::routes(router);
    let router = keys::routes(router);
    let router = to_device::routes(router);
    let router = dehydrated_device::routes(router);
    let router = key_backup::routes(router);
    let router = openid::routes(router);
    directory::routes(router)
}
