//! `GET /_matrix/client/v3/sync`.

use axum::Router;
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::api::client::sync::sync_events::v3 as sync;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UInt};

use super::rooms::to_raw;
use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service;
use crate::sync::{JoinedRoom, SyncRequest};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(sync_events)
}

/// `GET /_matrix/client/v3/sync`
async fn sync_events(state: AppState, request: Ruma<sync::Request>) -> ApiResult<sync::Response> {
    let body = request.body;
    let filter = match body.filter {
        None => FilterDefinition::default(),
        Some(sync::Filter::FilterDefinition(filter)) => filter,
        Some(sync::Filter::FilterId(id)) => {
            state.get_filter(&request.identity.user_id, &id).await?
        }
        Some(_) => return Err(service::Error::InvalidParam("unsupported filter".into()).into()),
    };
    state
        .presence_from_sync(&request.identity.user_id, &body.set_presence)
        .await?;
    let per_thread = filter.room.timeline.unread_thread_notifications;
    let result = state
        .sync(
            &request.identity,
            SyncRequest {
                since: body.since,
                timeout: body.timeout,
                full_state: body.full_state,
                filter,
            },
        )
        .await?;
    let mut response = sync::Response::new(result.next_batch);
    let mut room_data = result.account_data.rooms;
    let mut ephemeral = result.ephemeral;
    for room in result.rooms.join {
        let (room_id, mut joined) = joined_room(room, per_thread)?;
        if let Some(data) = room_data.remove(&room_id) {
            joined.account_data.events = account_data_events(&data)?;
        }
        if let Some(events) = ephemeral.remove(&room_id) {
            joined.ephemeral.events = events.iter().map(to_raw).collect::<ApiResult<_>>()?;
        }
        response.rooms.join.insert(room_id, joined);
    }
    response.presence.events = result
        .presence
        .iter()
        .map(to_raw)
        .collect::<ApiResult<_>>()?;
    response.account_data.events = account_data_events(&result.account_data.global)?;
    response.to_device.events = result
        .to_device
        .events
        .iter()
        .map(to_raw)
        .collect::<ApiResult<_>>()?;
    let devices = result.device_lists;
    response.device_lists.changed = devices.changed;
    response.device_lists.left = devices.left;
    response.device_one_time_keys_count = devices.one_time_keys_count;
    response.device_unused_fallback_key_types = Some(devices.unused_fallback_key_types);
    for room in result.rooms.leave {
        let room_id = room_id(&room.room_id)?;
        let mut left = sync::LeftRoom::new();
        left.timeline = timeline(&room)?;
        left.state = sync::State::Before(state_events(&room)?);
        response.rooms.leave.insert(room_id, left);
    }
    for (room, events) in result.rooms.invite {
        let mut invited = sync::InvitedRoom::new();
        invited.invite_state.events = events.iter().map(to_raw).collect::<ApiResult<_>>()?;
        response.rooms.invite.insert(room_id(&room)?, invited);
    }
    for (room, events) in result.rooms.knock {
        let mut knocked = sync::KnockedRoom::new();
        knocked.knock_state.events = events.iter().map(to_raw).collect::<ApiResult<_>>()?;
        response.rooms.knock.insert(room_id(&room)?, knocked);
    }
    Ok(response)
}

/// Account data as events: `{type, content}`.
fn account_data_events<T>(
    data: &[(String, serde_json::Value)],
) -> ApiResult<Vec<ruma::serde::Raw<T>>> {
    data.iter()
        .map(|(kind, content)| to_raw(&serde_json::json!({ "type": kind, "content": content })))
        .collect()
}

fn room_id(text: &str) -> ApiResult<OwnedRoomId> {
    OwnedRoomId::try_from(text)
        .map_err(|e| service::Error::Internal(format!("stored room id {text}: {e}")).into())
}

fn timeline(room: &JoinedRoom) -> ApiResult<sync::Timeline> {
    let mut timeline = sync::Timeline::new();
    timeline.limited = room.limited;
    timeline.prev_batch = room.prev_batch.clone();
    timeline.events = room.timeline.iter().map(to_raw).collect::<ApiResult<_>>()?;
    Ok(timeline)
}

fn state_events(room: &JoinedRoom) -> ApiResult<sync::StateEvents> {
    let mut state = sync::StateEvents::new();
    state.events = room.state.iter().map(to_raw).collect::<ApiResult<_>>()?;
    Ok(state)
}

/// A joined room; with `per_thread` (the filter's `unread_thread_notifications`), the unread
/// counts of the main timeline and of each thread apart, else all of them in one count.
fn joined_room(room: JoinedRoom, per_thread: bool) -> ApiResult<(OwnedRoomId, sync::JoinedRoom)> {
    let mut joined = sync::JoinedRoom::new();
    let (notify, highlight) = if per_thread {
        for (root, notify, highlight) in &room.unread.threads {
            let Ok(root) = OwnedEventId::try_from(root.as_str()) else {
                continue;
            };
            let mut counts = UnreadNotificationsCount::new();
            counts.notification_count = UInt::new(*notify);
            counts.highlight_count = UInt::new(*highlight);
            joined.unread_thread_notifications.insert(root, counts);
        }
        room.unread.main
    } else {
        room.unread.total()
    };
    joined.unread_notifications.notification_count = UInt::new(notify);
    joined.unread_notifications.highlight_count = UInt::new(highlight);
    joined.timeline = timeline(&room)?;
    joined.state = sync::State::Before(state_events(&room)?);
    if let Some(summary) = &room.summary {
        joined.summary.heroes = summary
            .heroes
            .iter()
            .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
            .collect();
        joined.summary.joined_member_count = UInt::new(summary.joined);
        joined.summary.invited_member_count = UInt::new(summary.invited);
    }
    Ok((room_id(&room.room_id)?, joined))
}
