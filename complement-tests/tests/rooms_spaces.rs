//! Spaces: `/hierarchy` lists the rooms a space links to (and theirs), with their summaries and
//! child links, leaving out rooms the user could neither join nor read.

use complement_tests::{Server, Value, json};

fn hierarchy_path(space: &str, query: &str) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/hierarchy{query}",
        complement_tests::encode(space)
    )
}

fn room_ids(body: &Value) -> Vec<String> {
    body["rooms"]
        .as_array()
        .map(|rooms| {
            rooms
                .iter()
                .filter_map(|r| r["room_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_space_lists_its_rooms_and_sub_spaces() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let space = alice
        .create_room(json!({"preset": "public_chat", "name": "Care home", "creation_content": {"type": "m.space"}}))
        .await;
    let wing = alice
        .create_room(json!({"preset": "public_chat", "name": "East wing", "creation_content": {"type": "m.space"}}))
        .await;
    let lounge = alice
        .create_room(json!({"preset": "public_chat", "name": "Lounge", "topic": "Tea at 4"}))
        .await;
    let office = alice
        .create_room(json!({"preset": "private_chat", "name": "Office"}))
        .await;
    let ward = alice
        .create_room(json!({"preset": "public_chat", "name": "Ward 1"}))
        .await;
    for (parent, child) in [
        (&space, &wing),
        (&space, &lounge),
        (&space, &office),
        (&wing, &ward),
    ] {
        alice
            .set_state(
                parent,
                "m.space.child",
                child,
                json!({"via": ["localhost"], "suggested": child == &lounge}),
            )
            .await;
    }
    // A child link without `via` is a removed link.
    let gone = alice
        .create_room(json!({"preset": "public_chat", "name": "Old"}))
        .await;
    alice
        .set_state(&space, "m.space.child", &gone, json!({}))
        .await;
    bob.join(&space).await;

    let body = bob.get(&hierarchy_path(&space, "")).await.ok();
    let ids = room_ids(&body);
    assert_eq!(ids[0], space, "the space itself comes first");
    for expected in [&wing, &lounge, &ward] {
        assert!(ids.contains(expected), "{expected} is listed: {body:#}");
    }
    assert!(
        !ids.contains(&office),
        "bob cannot join the private office: {body:#}"
    );
    assert!(!ids.contains(&gone), "a link without via is not followed");
    let lounge_entry = body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == lounge.as_str())
        .unwrap();
    assert_eq!(lounge_entry["name"], "Lounge");
    assert_eq!(lounge_entry["topic"], "Tea at 4");
    assert_eq!(lounge_entry["num_joined_members"], 1);
    let space_entry = &body["rooms"][0];
    assert_eq!(space_entry["room_type"], "m.space");
    assert_eq!(
        space_entry["children_state"].as_array().map(Vec::len),
        Some(3),
        "{space_entry:#}"
    );

    let suggested = room_ids(
        &bob.get(&hierarchy_path(&space, "?suggested_only=true"))
            .await
            .ok(),
    );
    assert_eq!(suggested, vec![space.clone(), lounge.clone()]);
    let shallow = room_ids(&bob.get(&hierarchy_path(&space, "?max_depth=0")).await.ok());
    assert_eq!(shallow, vec![space.clone()]);
}

#[tokio::test]
async fn the_hierarchy_pages_through_a_large_space() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let space = alice
        .create_room(json!({"preset": "public_chat", "creation_content": {"type": "m.space"}}))
        .await;
    let mut children = Vec::new();
    for i in 0..7 {
        let child = alice
            .create_room(json!({"preset": "public_chat", "name": format!("Room {i}")}))
            .await;
        alice
            .set_state(
                &space,
                "m.space.child",
                &child,
                json!({"via": ["localhost"]}),
            )
            .await;
        children.push(child);
    }

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("?limit=3&from={token}"),
            None => "?limit=3".to_owned(),
        };
        let body = alice.get(&hierarchy_path(&space, &query)).await.ok();
        let page = room_ids(&body);
        assert!(page.len() <= 3);
        seen.extend(page);
        match body["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        8,
        "the space and its seven rooms, once each: {seen:?}"
    );
    for child in &children {
        assert!(seen.contains(child));
    }
}

#[tokio::test]
async fn a_private_space_is_hidden_from_outsiders() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mallory = server.register_user("mallory").await;
    let space = alice
        .create_room(json!({"preset": "private_chat", "creation_content": {"type": "m.space"}}))
        .await;

    mallory
        .get(&hierarchy_path(&space, ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .get(&hierarchy_path(&space, "?from=nonsense"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}
