//! The published room directory: `/publicRooms` (`GET`, and `POST` with a filter) and
//! `/directory/list/room/{roomId}` (whether a room is published).

use axum::Router;
use ruma::UInt;
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::api::error::DeserializationError;
use ruma::api::{IncomingRequest, Metadata};
use ruma::directory::{Filter, RoomNetwork};
use serde_json::Value as JsonValue;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::rooms::{PublicRoomsPage, PublicRoomsQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(list)
        .ruma(search)
        .ruma(visibility)
        .ruma(set_visibility)
}

fn total(page: &PublicRoomsPage) -> Option<UInt> {
    UInt::try_from(page.total_room_count_estimate).ok()
}

/// `GET /_matrix/client/v3/publicRooms`
async fn list(
    state: AppState,
    request: Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<get_public_rooms::v3::Response> {
    let body = request.body;
    let page = state
        .public_rooms(PublicRoomsQuery {
            server: body.server,
            limit: body.limit.map(u64::from),
            since: body.since,
            filter: Filter::new(),
            network: RoomNetwork::Matrix,
        })
        .await?;
    let mut response = get_public_rooms::v3::Response::new(Vec::new());
    response.total_room_count_estimate = total(&page);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.chunk = page.chunk;
    Ok(response)
}

/// `POST /_matrix/client/v3/publicRooms`
async fn search(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<get_public_rooms_filtered::v3::Response> {
    let body = request.body;
    let page = state
        .public_rooms(PublicRoomsQuery {
            server: body.server,
            limit: body.limit.map(u64::from),
            since: body.since,
            filter: body.filter,
            network: body.room_network,
        })
        .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.total_room_count_estimate = total(&page);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.chunk = page.chunk;
    Ok(response)
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn visibility(
    state: AppState,
    request: Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<get_room_visibility::v3::Response> {
    let public = state
        .room_directory_visibility(&request.body.room_id)
        .await?;
    Ok(get_room_visibility::v3::Response::new(if public {
        Visibility::Public
    } else {
        Visibility::Private
    }))
}

/// ruma's request to publish a room, where the specification's default of `visibility` (public)
/// applies when the body leaves it out; ruma requires the field. Path, method and authentication
/// are ruma's.
pub struct SetVisibilityRequest(set_room_visibility::v3::Request);

type SetVisibility = set_room_visibility::v3::Request;

impl Metadata for SetVisibilityRequest {
    const METHOD: http::Method = SetVisibility::METHOD;
    const RATE_LIMITED: bool = SetVisibility::RATE_LIMITED;
    type Authentication = <SetVisibility as Metadata>::Authentication;
    type PathBuilder = <SetVisibility as Metadata>::PathBuilder;
    const PATH_BUILDER: Self::PathBuilder = SetVisibility::PATH_BUILDER;
}

impl IncomingRequest for SetVisibilityRequest {
    type EndpointError = <SetVisibility as IncomingRequest>::EndpointError;
    type OutgoingResponse = <SetVisibility as IncomingRequest>::OutgoingResponse;

    fn try_from_http_request_inner(
        request: http::Request<&[u8]>,
        path_args: &[&str],
    ) -> Result<Self, DeserializationError> {
        let mut body: JsonValue = if request.body().is_empty() {
            JsonValue::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(request.body())?
        };
        if let Some(fields) = body.as_object_mut() {
            fields
                .entry("visibility")
                .or_insert_with(|| JsonValue::String("public".into()));
        }
        let bytes = serde_json::to_vec(&body)?;
        let (parts, _) = request.into_parts();
        let request = http::Request::from_parts(parts, bytes.as_slice());
        SetVisibility::try_from_http_request_inner(request, path_args).map(SetVisibilityRequest)
    }
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
async fn set_visibility(
    state: AppState,
    request: Ruma<SetVisibilityRequest>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let body = request.body.0;
    let public = match body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => {
            return Err(ApiError::InvalidParam(format!(
                "visibility must be public or private, not {other}"
            )));
        }
    };
    state
        .set_room_directory_visibility(&request.identity, &body.room_id, public)
        .await?;
    Ok(set_room_visibility::v3::Response::new())
}
