//! Presence across servers: a user's presence change reaches the users of other servers who
//! share a room with them, through an `m.presence` EDU, in both directions.

use std::time::Duration;

use complement_tests::{Federation, User, encode, json, wait_until};

fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", encode(user_id))
}

/// Waits until `viewer` reads `user`'s presence as `state` with `status_msg`.
async fn wait_for_presence(viewer: &User, user: &User, state: &str, status_msg: &str) {
    let path = status_path(&user.user_id);
    let what = format!("{} sees {} {state}", viewer.user_id, user.user_id);
    wait_until(&what, Duration::from_secs(20), async || {
        let seen = viewer.get(&path).await.ok();
        seen["presence"] == state && seen["status_msg"] == status_msg
    })
    .await;
}

#[tokio::test]
async fn presence_changes_reach_room_mates_on_other_servers() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join_via(&room, "hs1.test").await.ok();

    alice
        .put(
            &status_path(&alice.user_id),
            json!({"presence": "online", "status_msg": "on ward 3"}),
        )
        .await
        .ok();
    wait_for_presence(&bob, &alice, "online", "on ward 3").await;

    bob.put(
        &status_path(&bob.user_id),
        json!({"presence": "unavailable", "status_msg": "at lunch"}),
    )
    .await
    .ok();
    wait_for_presence(&alice, &bob, "unavailable", "at lunch").await;
}
