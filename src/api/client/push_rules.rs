//! Push rules: `/pushrules/` and `/pushrules/global/{kind}/{ruleId}[/enabled|/actions]`.

use axum::Router;
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};

use super::rooms::to_raw;
use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(all)
        .ruma(global)
        .ruma(get_rule)
        .ruma(set_rule)
        .ruma(delete_rule)
        .ruma(get_enabled)
        .ruma(set_enabled)
        .ruma(get_actions)
        .ruma(set_actions)
        .ruma(notifications)
}

/// `GET /_matrix/client/v3/pushrules/`
async fn all(
    state: AppState,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<get_pushrules_all::v3::Response> {
    Ok(get_pushrules_all::v3::Response::new(
        state.push_rules(&request.identity.user_id).await?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/`
async fn global(
    state: AppState,
    request: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<get_pushrules_global_scope::v3::Response> {
    Ok(get_pushrules_global_scope::v3::Response::new(
        state.push_rules(&request.identity.user_id).await?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn get_rule(
    state: AppState,
    request: Ruma<get_pushrule::v3::Request>,
) -> ApiResult<get_pushrule::v3::Response> {
    let b = request.body;
    let rule = state
        .push_rule(&request.identity.user_id, b.kind, &b.rule_id)
        .await?;
    Ok(get_pushrule::v3::Response::new(rule.into()))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn set_rule(
    state: AppState,
    request: Ruma<set_pushrule::v3::Request>,
) -> ApiResult<set_pushrule::v3::Response> {
    let b = request.body;
    state
        .set_push_rule(
            &request.identity.user_id,
            b.rule,
            b.after.as_deref(),
            b.before.as_deref(),
        )
        .await?;
    Ok(set_pushrule::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn delete_rule(
    state: AppState,
    request: Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<delete_pushrule::v3::Response> {
    let b = request.body;
    state
        .delete_push_rule(&request.identity.user_id, b.kind, &b.rule_id)
        .await?;
    Ok(delete_pushrule::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn get_enabled(
    state: AppState,
    request: Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let b = request.body;
    let rule = state
        .push_rule(&request.identity.user_id, b.kind, &b.rule_id)
        .await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
async fn set_enabled(
    state: AppState,
    request: Ruma<set_pushrule_enabled::v3::Request>,
) -> ApiResult<set_pushrule_enabled::v3::Response> {
    let b = request.body;
    state
        .set_push_rule_enabled(&request.identity.user_id, b.kind, &b.rule_id, b.enabled)
        .await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn get_actions(
    state: AppState,
    request: Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<get_pushrule_actions::v3::Response> {
    let b = request.body;
    let rule = state
        .push_rule(&request.identity.user_id, b.kind, &b.rule_id)
        .await?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
async fn set_actions(
    state: AppState,
    request: Ruma<set_pushrule_actions::v3::Request>,
) -> ApiResult<set_pushrule_actions::v3::Response> {
    let b = request.body;
    state
        .set_push_rule_actions(&request.identity.user_id, b.kind, &b.rule_id, b.actions)
        .await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

/// `GET /_matrix/client/v3/notifications`
async fn notifications(
    state: AppState,
    request: Ruma<get_notifications::v3::Request>,
) -> ApiResult<get_notifications::v3::Response> {
    let b = request.body;
    let limit = b.limit.map_or(20, |l| u64::from(l) as usize);
    let only_highlight = b.only.as_deref() == Some("highlight");
    let (entries, next_token) = state
        .notifications(
            &request.identity.user_id,
            b.from.as_deref(),
            limit,
            only_highlight,
        )
        .await?;
    let mut notifications = Vec::with_capacity(entries.len());
    for entry in entries {
        let ts = ruma::MilliSecondsSinceUnixEpoch(
            ruma::UInt::try_from(entry.ts.max(0) as u64).unwrap_or_default(),
        );
        let room_id = ruma::OwnedRoomId::try_from(entry.room_id.as_str())
            .map_err(|e| crate::service::Error::Internal(e.to_string()))?;
        notifications.push(get_notifications::v3::Notification::new(
            entry.actions,
            to_raw(&entry.event)?,
            entry.read,
            room_id,
            ts,
        ));
    }
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(response)
}
