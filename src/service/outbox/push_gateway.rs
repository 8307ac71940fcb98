//! The Push Gateway API as the push outbox speaks it: the one HTTP client, the body of
//! `POST /_matrix/push/v1/notify` for one notification and one pusher (ruma's `Notification`), and
//! what the gateway's answer means for delivery. No storage and no scheduling here.

use std::sync::Arc;
use std::time::Duration;

use ruma::api::push_gateway::send_event_notification::v1::{
    Device, Notification, NotificationCounts, NotificationPriority, PusherData,
};
use ruma::events::TimelineEventType;
use ruma::push::{Action, HttpPusherData, PushFormat};
use ruma::{EventId, OwnedRoomAliasId, RoomId, SecondsSinceUnixEpoch, UInt, UserId};
use serde_json::Value as JsonValue;

use crate::storage::pushers::PusherRow;

/// How long one notify request may take before it counts as failed (and is retried later).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client that talks to push gateways: TLS through rustls with ring and the Mozilla
/// roots, no redirects (a gateway answers where it was told to be), and a timeout per request.
pub(crate) fn gateway_client() -> reqwest::Client {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("plexus/", env!("CARGO_PKG_VERSION")));
    let builder = match tls {
        Ok(tls) => builder.tls_backend_preconfigured(tls),
        Err(e) => {
            tracing::error!(error = %e, "cannot configure TLS for push gateways");
            builder
        }
    };
    // Building fails only on a configuration this function never makes (the unit test below
    // builds it); it is not on any request's path.
    builder
        .build()
        .expect("the push gateway client configuration is valid")
}

/// What the push outbox knows about one notification when it sends it.
pub(crate) struct NotificationFacts {
    /// The event in the client format.
    pub event: JsonValue,
    pub actions: Vec<Action>,
    pub highlight: bool,
    /// Rooms with unread notifications for the user: the badge.
    pub unread_rooms: u64,
    pub room_name: Option<String>,
    pub room_alias: Option<OwnedRoomAliasId>,
    pub sender_display_name: Option<String>,
}

/// The notification for one pusher: the whole event's facts, or with `format: event_id_only`
/// only the event and room ids, priority and counts. `devices` carries the pusher's data without
/// its `url`, and the tweaks of the push rule that matched.
pub(crate) fn notification(pusher: &PusherRow, facts: NotificationFacts) -> Notification {
    let data: Option<HttpPusherData> = serde_json::from_str(&pusher.data).ok();
    let event_id_only = data
        .as_ref()
        .is_some_and(|d| d.format == Some(PushFormat::EventIdOnly));
    let field = |name: &str| facts.event.get(name).and_then(JsonValue::as_str);
    let kind = field("type").unwrap_or_default();

    let mut device = Device::new(pusher.key.app_id.clone(), pusher.key.pushkey.clone());
    device.pushkey_ts = UInt::try_from(pusher.pushkey_ts)
        .ok()
        .map(SecondsSinceUnixEpoch);
    device.data = data.map(PusherData::from).unwrap_or_default();
    device.tweaks = facts
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::SetTweak(tweak) => Some(tweak.clone()),
            _ => None,
        })
        .collect();

    let mut notification = Notification::new(vec![device]);
    notification.event_id = field("event_id").and_then(|id| EventId::parse(id).ok());
    notification.room_id = field("room_id").and_then(|id| RoomId::parse(id).ok());
    notification.counts = NotificationCounts::new(
        UInt::try_from(facts.unread_rooms).unwrap_or(UInt::MAX),
        UInt::MIN,
    );
    notification.prio = if facts.highlight || matches!(kind, "m.room.message" | "m.room.encrypted")
    {
        NotificationPriority::High
    } else {
        NotificationPriority::Low
    };
    if event_id_only {
        return notification;
    }
    notification.event_type = Some(TimelineEventType::from(kind));
    notification.sender = field("sender").and_then(|id| UserId::parse(id).ok());
    notification.sender_display_name = facts.sender_display_name;
    notification.room_name = facts.room_name;
    notification.room_alias = facts.room_alias;
    notification.user_is_target = kind == "m.room.member"
        && field("state_key").is_some_and(|target| target == pusher.key.user_id);
    notification.content = facts
        .event
        .get("content")
        .and_then(|content| serde_json::value::to_raw_value(content).ok());
    notification
}

/// What a gateway's answer means for delivery.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Accepted (2xx); the push keys it says are no longer valid.
    Accepted { rejected: Vec<String> },
    /// Not delivered for now (no connection, timeout, 5xx, 429): try again later.
    Retry(String),
    /// Refused for good (any other status): this notification is skipped.
    Refused(String),
}

/// Sends one notification to a gateway.
pub(crate) async fn notify(
    client: &reqwest::Client,
    url: &str,
    notification: &Notification,
) -> Outcome {
    let body = serde_json::json!({ "notification": notification });
    let response = match client.post(url).json(&body).send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Retry(transport_error(e)),
    };
    let status = response.status();
    if status.is_success() {
        // A gateway that accepted but answered no usable body rejected nothing.
        let answer: JsonValue = response.json().await.unwrap_or_default();
        let rejected = answer
            .get("rejected")
            .and_then(JsonValue::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Outcome::Accepted { rejected };
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry(format!("the gateway answered {status}"))
    } else {
        Outcome::Refused(format!("the gateway answered {status}"))
    }
}

/// A transport failure in words that never include the URL (which may carry secrets).
fn transport_error(error: reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut words = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        words.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    words
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::pushers::PusherKey;

    fn pusher(data: JsonValue) -> PusherRow {
        PusherRow {
            key: PusherKey {
                user_id: "@bob:x".into(),
                app_id: "care.plexus.app".into(),
                pushkey: "key".into(),
            },
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: "en".into(),
            data: data.to_string(),
            pushkey_ts: 1_700_000_000,
            last_event_nid: 0,
            failures: 0,
            retry_ts: None,
        }
    }

    fn facts(kind: &str, highlight: bool) -> NotificationFacts {
        let mut actions = vec![
            json!("notify"),
            json!({"set_tweak": "sound", "value": "default"}),
        ];
        if highlight {
            actions.push(json!({"set_tweak": "highlight"}));
        }
        NotificationFacts {
            event: json!({
                "event_id": "$ev", "room_id": "!room:x", "sender": "@alice:x", "type": kind,
                "state_key": "@bob:x", "content": {"membership": "invite"},
            }),
            actions: serde_json::from_value(JsonValue::Array(actions)).unwrap(),
            highlight,
            unread_rooms: 2,
            room_name: Some("Ward 3".into()),
            room_alias: None,
            sender_display_name: Some("Alice".into()),
        }
    }

    #[test]
    fn a_full_notification_carries_the_event_and_the_pusher_data_without_its_url() {
        let data = json!({"url": "http://gw/_matrix/push/v1/notify", "custom": 1});
        let sent = notification(&pusher(data), facts("m.room.member", true));
        let body = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            body,
            json!({
                "event_id": "$ev", "room_id": "!room:x", "type": "m.room.member",
                "sender": "@alice:x", "sender_display_name": "Alice", "room_name": "Ward 3",
                "user_is_target": true, "content": {"membership": "invite"},
                "counts": {"unread": 2},
                "devices": [{
                    "app_id": "care.plexus.app", "pushkey": "key", "pushkey_ts": 1_700_000_000,
                    "data": {"custom": 1},
                    "tweaks": {"sound": "default", "highlight": true},
                }],
            })
        );
    }

    #[test]
    fn event_id_only_leaves_out_the_event_and_quiet_events_are_low_priority() {
        let data = json!({"url": "http://gw/_matrix/push/v1/notify", "format": "event_id_only"});
        let sent = notification(&pusher(data), facts("m.room.member", false));
        let body = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            body,
            json!({
                "event_id": "$ev", "room_id": "!room:x", "prio": "low",
                "counts": {"unread": 2},
                "devices": [{
                    "app_id": "care.plexus.app", "pushkey": "key", "pushkey_ts": 1_700_000_000,
                    "data": {"format": "event_id_only"},
                    "tweaks": {"sound": "default"},
                }],
            })
        );
    }

    #[test]
    fn the_gateway_client_builds() {
        gateway_client();
    }
}
