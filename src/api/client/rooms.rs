//! Rooms: creating them and reading them (state, events, members, `/messages`).

use axum::Router;
use ruma::api::Direction;
use ruma::api::client::membership::{get_member_events, joined_members, joined_rooms};
use ruma::api::client::message::get_message_events;
use ruma::api::client::room::{Visibility, create_room, get_room_event, upgrade_room};
use ruma::api::client::state::get_state_event_for_key::v3::StateEventFormat;
use ruma::api::client::state::{get_state_event_for_key, get_state_events};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{Map, Value as JsonValue};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::rooms::{CreateRoom, MembersQuery, MessagesQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(create)
        .ruma(joined)
        .ruma(state)
        .ruma_state_key(state_for_key)
        .ruma(event)
        .ruma(members)
        .ruma(joined_members_of)
        .ruma(messages)
        .ruma(upgrade)
}

/// Parses raw JSON a client sent into a JSON value.
pub fn raw_json<T>(raw: &Raw<T>) -> ApiResult<JsonValue> {
    serde_json::from_str(raw.json().get())
        .map_err(|e| ApiError::BadJson(format!("invalid JSON: {e}")))
}

/// Wraps a JSON value as the raw event type a ruma response holds.
pub fn to_raw<T>(value: &JsonValue) -> ApiResult<Raw<T>> {
    let raw =
        serde_json::value::to_raw_value(value).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(Raw::from_json(raw))
}

fn object(value: JsonValue, what: &str) -> ApiResult<Map<String, JsonValue>> {
    match value {
        JsonValue::Object(map) => Ok(map),
        _ => Err(ApiError::BadJson(format!("{what} must be a JSON object"))),
    }
}

/// `POST /_matrix/client/v3/createRoom`
async fn create(
    state: AppState,
    request: Ruma<create_room::v3::Request>,
) -> ApiResult<create_room::v3::Response> {
    let body = request.body;
    // An alias in an appservice's exclusive namespace is that appservice's to create.
    if let Some(name) = &body.room_alias_name
        && let Ok(alias) = ruma::RoomAliasId::parse(format!("#{name}:{}", state.server_name()))
    {
        state.check_alias_namespace(&alias, request.appservice.as_ref())?;
    }
    let mut initial_state = Vec::new();
    for raw in &body.initial_state {
        let event = raw_json(raw)?;
        let kind = event
            .get("type")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| ApiError::BadJson("initial_state events need a type".into()))?;
        let key = event
            .get("state_key")
            .and_then(JsonValue::as_str)
            .unwrap_or_default();
        let content = event
            .get("content")
            .cloned()
            .unwrap_or_else(|| JsonValue::Object(Map::new()));
        initial_state.push((kind.to_owned(), key.to_owned(), content));
    }
    let creation_content = body
        .creation_content
        .as_ref()
        .map(|raw| raw_json(raw).and_then(|v| object(v, "creation_content")))
        .transpose()?;
    let power_levels = body
        .power_level_content_override
        .as_ref()
        .map(|raw| raw_json(raw).and_then(|v| object(v, "power_level_content_override")))
        .transpose()?;
    let room_id = state
        .create_room(
            &request.identity,
            CreateRoom {
                preset: body.preset.map(|p| p.to_string()),
                public: body.visibility == Visibility::Public,
                room_alias_name: body.room_alias_name,
                name: body.name,
                topic: body.topic,
                invite: body.invite,
                initial_state,
                power_level_content_override: power_levels,
                creation_content,
                is_direct: body.is_direct,
                room_version: body.room_version,
            },
        )
        .await?;
    Ok(create_room::v3::Response::new(room_id))
}

/// `GET /_matrix/client/v3/joined_rooms`
async fn joined(
    state: AppState,
    request: Ruma<joined_rooms::v3::Request>,
) -> ApiResult<joined_rooms::v3::Response> {
    let rooms = state.joined_rooms(&request.identity.user_id).await?;
    Ok(joined_rooms::v3::Response::new(
        rooms
            .into_iter()
            .filter_map(|r| OwnedRoomId::try_from(r).ok())
            .collect(),
    ))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
async fn state(
    state: AppState,
    request: Ruma<get_state_events::v3::Request>,
) -> ApiResult<get_state_events::v3::Response> {
    let events = state
        .room_state(&request.identity, &request.body.room_id)
        .await?;
    Ok(get_state_events::v3::Response::new(
        events.iter().map(to_raw).collect::<ApiResult<_>>()?,
    ))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn state_for_key(
    state: AppState,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    let body = request.body;
    let event = state
        .state_event(
            &request.identity,
            &body.room_id,
            &body.event_type.to_string(),
            &body.state_key,
        )
        .await?;
    let wanted = match body.format {
        StateEventFormat::Event => event,
        _ => event.get("content").cloned().unwrap_or_default(),
    };
    let raw =
        serde_json::value::to_raw_value(&wanted).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
async fn event(
    state: AppState,
    request: Ruma<get_room_event::v3::Request>,
) -> ApiResult<get_room_event::v3::Response> {
    let event = state
        .get_event(
            &request.identity,
            &request.body.room_id,
            &request.body.event_id,
        )
        .await?;
    Ok(get_room_event::v3::Response::new(to_raw(&event)?))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
async fn members(
    state: AppState,
    request: Ruma<get_member_events::v3::Request>,
) -> ApiResult<get_member_events::v3::Response> {
    let body = request.body;
    let query = MembersQuery {
        at: body.at,
        membership: body.membership.map(|m| m.to_string()),
        not_membership: body.not_membership.map(|m| m.to_string()),
    };
    let events = state
        .members(&request.identity, &body.room_id, query)
        .await?;
    Ok(get_member_events::v3::Response::new(
        events.iter().map(to_raw).collect::<ApiResult<_>>()?,
    ))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
async fn joined_members_of(
    state: AppState,
    request: Ruma<joined_members::v3::Request>,
) -> ApiResult<joined_members::v3::Response> {
    let members = state
        .joined_members(&request.identity, &request.body.room_id)
        .await?;
    let mut joined = std::collections::BTreeMap::new();
    for (user, profile) in members {
        let Ok(user_id) = OwnedUserId::try_from(user) else {
            continue;
        };
        let member =
            serde_json::from_value(profile).map_err(|e| ApiError::BadJson(e.to_string()))?;
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
async fn messages(
    state: AppState,
    request: Ruma<get_message_events::v3::Request>,
) -> ApiResult<get_message_events::v3::Response> {
    let body = request.body;
    let filter = body.filter;
    let query = MessagesQuery {
        from: body.from,
        to: body.to,
        backwards: body.dir == Direction::Backward,
        limit: u64::from(body.limit) as usize,
        types: filter.types.unwrap_or_default(),
        not_types: filter.not_types,
        senders: filter
            .senders
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_string())
            .collect(),
        not_senders: filter
            .not_senders
            .into_iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let page = state
        .messages(&request.identity, &body.room_id, query)
        .await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    response.chunk = page.chunk.iter().map(to_raw).collect::<ApiResult<_>>()?;
    Ok(response)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
async fn upgrade(
    state: AppState,
    request: Ruma<upgrade_room::v3::Request>,
) -> ApiResult<upgrade_room::v3::Response> {
    let body = request.body;
    let replacement = state
        .upgrade_room(&request.identity, &body.room_id, body.new_version)
        .await?;
    Ok(upgrade_room::v3::Response::new(replacement))
}
