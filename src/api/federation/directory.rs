//! What other servers look up in this server's directory: `GET /query/directory` (a local
//! alias) and `/publicRooms` (`GET`, and `POST` with a filter; the same directory clients see).

use axum::Router;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::query::get_room_information;
use ruma::directory::Filter;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::federation::auth::{FederationRoutes, Signed};
use crate::service::rooms::{PublicRoomsPage, PublicRoomsQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .signed(room_alias)
        .signed(public_rooms)
        .signed(public_rooms_filtered)
}

fn total(page: &PublicRoomsPage) -> Option<UInt> {
    UInt::try_from(page.total_room_count_estimate).ok()
}

/// `GET /_matrix/federation/v1/query/directory`
async fn room_alias(
    state: AppState,
    request: Signed<get_room_information::v1::Request>,
) -> ApiResult<get_room_information::v1::Response> {
    let (room_id, servers) = state
        .room_alias_for_federation(&request.body.room_alias)
        .await?;
    Ok(get_room_information::v1::Response::new(room_id, servers))
}

/// `GET /_matrix/federation/v1/publicRooms`
async fn public_rooms(
    state: AppState,
    request: Signed<get_public_rooms::v1::Request>,
) -> ApiResult<get_public_rooms::v1::Response> {
    let body = request.body;
    let page = state
        .public_rooms(PublicRoomsQuery {
            server: None,
            limit: body.limit.map(u64::from),
            since: body.since,
            filter: Filter::new(),
            network: body.room_network,
        })
        .await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.total_room_count_estimate = total(&page);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.chunk = page.chunk;
    Ok(response)
}

/// `POST /_matrix/federation/v1/publicRooms`
async fn public_rooms_filtered(
    state: AppState,
    request: Signed<get_public_rooms_filtered::v1::Request>,
) -> ApiResult<get_public_rooms_filtered::v1::Response> {
    let body = request.body;
    let page = state
        .public_rooms(PublicRoomsQuery {
            server: None,
            limit: body.limit.map(u64::from),
            since: body.since,
            filter: body.filter,
            network: body.room_network,
        })
        .await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.total_room_count_estimate = total(&page);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.chunk = page.chunk;
    Ok(response)
}
