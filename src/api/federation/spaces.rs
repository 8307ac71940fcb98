//! `GET /_matrix/federation/v1/hierarchy/{roomId}`: a space and its direct children, as far as
//! the asking server could peek into or join them.

use axum::Router;
use ruma::api::federation::space::{SpaceHierarchyParentSummary, get_hierarchy};
use ruma::serde::Raw;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::federation::auth::{FederationRoutes, Signed};
use crate::service;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(hierarchy)
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`
async fn hierarchy(
    state: AppState,
    request: Signed<get_hierarchy::v1::Request>,
) -> ApiResult<get_hierarchy::v1::Response> {
    let body = request.body;
    let space = state
        .federation_hierarchy(&request.origin, &body.room_id, body.suggested_only)
        .await?;
    let children_state = space
        .children_state
        .iter()
        .map(|event| serde_json::value::to_raw_value(event).map(Raw::from_json))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::Service(service::Error::Internal(format!(
                "cannot serialise a space child event: {e}"
            )))
        })?;
    let mut response = get_hierarchy::v1::Response::new(SpaceHierarchyParentSummary::new(
        space.room,
        children_state,
    ));
    response.children = space.children;
    response.inaccessible_children = space.inaccessible_children;
    Ok(response)
}
