//! Relations, threads and event context.

use axum::Router;
use ruma::api::Direction;
use ruma::api::client::context::get_context;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type,
    get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};
use ruma::api::client::threads::get_threads;
use ruma::api::client::threads::get_threads::v1::IncludeThreads;

use super::rooms::to_raw;
use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::rooms::{HierarchyQuery, RelationsPage, RelationsQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(relations)
        .ruma(relations_with_type)
        .ruma(relations_with_type_and_event_type)
        .ruma(threads)
        .ruma(context)
        .ruma(hierarchy)
}

fn limit(value: Option<ruma::UInt>) -> Option<usize> {
    value.map(|v| u64::from(v) as usize)
}

/// The three `/relations` endpoints differ only in the filters their paths carry.
macro_rules! relations_endpoint {
    ($(#[$doc:meta])* $name:ident, $endpoint:ident, |$b:ident| $rel_type:expr, $event_type:expr) => {
        $(#[$doc])*
        async fn $name(
            state: AppState,
            request: Ruma<$endpoint::v1::Request>,
        ) -> ApiResult<$endpoint::v1::Response> {
            let $b = request.body;
            let query = RelationsQuery {
                rel_type: $rel_type,
                event_type: $event_type,
                from: $b.from,
                to: $b.to,
                backwards: $b.dir == Direction::Backward,
                limit: limit($b.limit),
                recurse: $b.recurse,
            };
            let page: RelationsPage = state.relations(&request.identity, &$b.room_id, &$b.event_id, query).await?;
            let mut response =
                $endpoint::v1::Response::new(page.chunk.iter().map(to_raw).collect::<ApiResult<_>>()?);
            response.next_batch = page.next_batch;
            response.recursion_depth = page.recursion_depth.and_then(ruma::UInt::new);
            Ok(response)
        }
    };
}

relations_endpoint!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
    relations, get_relating_events, |b| None, None
);
relations_endpoint!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
    relations_with_type, get_relating_events_with_rel_type, |b| Some(b.rel_type.to_string()), None
);
relations_endpoint!(
    /// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
    relations_with_type_and_event_type,
    get_relating_events_with_rel_type_and_event_type,
    |b| Some(b.rel_type.to_string()),
    Some(b.event_type.to_string())
);

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`
async fn threads(
    state: AppState,
    request: Ruma<get_threads::v1::Request>,
) -> ApiResult<get_threads::v1::Response> {
    let b = request.body;
    let participated = b.include == IncludeThreads::Participated;
    let (chunk, next_batch) = state
        .threads(
            &request.identity,
            &b.room_id,
            participated,
            b.from,
            limit(b.limit),
        )
        .await?;
    let mut response =
        get_threads::v1::Response::new(chunk.iter().map(to_raw).collect::<ApiResult<_>>()?);
    response.next_batch = next_batch;
    Ok(response)
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
async fn context(
    state: AppState,
    request: Ruma<get_context::v3::Request>,
) -> ApiResult<get_context::v3::Response> {
    let b = request.body;
    let context = state
        .context(
            &request.identity,
            &b.room_id,
            &b.event_id,
            u64::from(b.limit) as usize,
        )
        .await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.start);
    response.end = Some(context.end);
    response.event = Some(to_raw(&context.event)?);
    response.events_before = context
        .before
        .iter()
        .map(to_raw)
        .collect::<ApiResult<_>>()?;
    response.events_after = context.after.iter().map(to_raw).collect::<ApiResult<_>>()?;
    response.state = context.state.iter().map(to_raw).collect::<ApiResult<_>>()?;
    Ok(response)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
async fn hierarchy(
    state: AppState,
    request: Ruma<get_hierarchy::v1::Request>,
) -> ApiResult<get_hierarchy::v1::Response> {
    let b = request.body;
    let query = HierarchyQuery {
        from: b.from,
        limit: limit(b.limit),
        max_depth: limit(b.max_depth),
        suggested_only: b.suggested_only,
    };
    let (rooms, next_batch) = state
        .hierarchy(&request.identity, &b.room_id, query)
        .await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.next_batch = next_batch;
    for room in rooms {
        let mut chunk = SpaceHierarchyRoomsChunk::new(room.summary, Vec::new());
        chunk.children_state = room
            .children_state
            .iter()
            .map(to_raw)
            .collect::<ApiResult<_>>()?;
        response.rooms.push(chunk);
    }
    Ok(response)
}
