//! The published room directory: people find public rooms through `/publicRooms` (largest first,
//! in pages, searchable), and room moderators publish or hide their rooms through
//! `/directory/list/room/{roomId}`.

use complement_tests::{Server, User, Value, encode, json, query};

const PUBLIC_ROOMS: &str = "/_matrix/client/v3/publicRooms";

fn list_path(room_id: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", encode(room_id))
}

/// The room IDs of a `/publicRooms` page, in order.
fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk array in {page:#}"))
        .iter()
        .map(|room| room["room_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A public room named `name` that `extra` members join besides its creator.
async fn public_room(creator: &User, name: &str, extra: &[&User]) -> String {
    let room = creator
        .create_room(json!({"visibility": "public", "preset": "public_chat", "name": name}))
        .await;
    for member in extra {
        member.join(&room).await;
    }
    room
}

#[tokio::test]
async fn a_published_room_is_listed_with_its_summary_for_anyone() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let garden = alice
        .create_room(json!({
            "visibility": "public",
            "preset": "public_chat",
            "name": "Community Garden",
            "topic": "Seeds, soil and sunshine",
            "room_alias_name": "garden",
            "initial_state": [
                {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://localhost/leaf"}},
                {"type": "m.room.history_visibility", "state_key": "",
                 "content": {"history_visibility": "world_readable"}},
            ],
        }))
        .await;
    let private = alice
        .create_room(json!({"preset": "private_chat", "name": "Staff only"}))
        .await;

    // Listing the directory needs no account.
    let page = server.client().get(PUBLIC_ROOMS).await.ok();
    assert_eq!(
        room_ids(&page),
        [garden.as_str()],
        "only the published room"
    );
    assert_eq!(page["total_room_count_estimate"], 1);
    assert_eq!(
        page["chunk"][0],
        json!({
            "room_id": garden,
            "name": "Community Garden",
            "topic": "Seeds, soil and sunshine",
            "canonical_alias": "#garden:localhost",
            "avatar_url": "mxc://localhost/leaf",
            "num_joined_members": 1,
            "world_readable": true,
            "guest_can_join": false,
        }),
        "the join rule is left out when it is public, the specification's default"
    );
    assert!(page.get("next_batch").is_none() && page.get("prev_batch").is_none());

    let visibility = |room: String| {
        let client = server.client();
        async move { client.get(&list_path(&room)).await.ok()["visibility"].clone() }
    };
    assert_eq!(visibility(garden).await, "public");
    assert_eq!(visibility(private).await, "private");
}

#[tokio::test]
async fn rooms_are_listed_largest_first_and_follow_who_is_joined() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let quiet = public_room(&alice, "Quiet", &[]).await;
    let busy = public_room(&alice, "Busy", &[&bob, &carol]).await;
    let medium = public_room(&alice, "Medium", &[&bob]).await;

    let page = server.client().get(PUBLIC_ROOMS).await.ok();
    assert_eq!(
        room_ids(&page),
        [busy.clone(), medium.clone(), quiet.clone()]
    );
    let counts: Vec<&Value> = page["chunk"]
        .as_array()
        .map(|rooms| rooms.iter().map(|r| &r["num_joined_members"]).collect())
        .unwrap_or_default();
    assert_eq!(counts, [&json!(3), &json!(2), &json!(1)]);

    // Bob and carol leave the busy room and join the quiet one: the order turns around.
    bob.leave(&busy).await;
    carol.leave(&busy).await;
    bob.join(&quiet).await;
    carol.join(&quiet).await;
    let page = server.client().get(PUBLIC_ROOMS).await.ok();
    assert_eq!(room_ids(&page), [quiet, medium, busy]);
}

#[tokio::test]
async fn pages_walk_the_whole_directory_forwards_and_back() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(public_room(&alice, &format!("Room {i}"), &[]).await);
    }

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let mut pairs = vec![("limit", "3")];
        if let Some(token) = &since {
            pairs.push(("since", token));
        }
        let page = server
            .client()
            .get(&format!("{PUBLIC_ROOMS}{}", query(&pairs)))
            .await
            .ok();
        assert_eq!(page["total_room_count_estimate"], 7);
        assert_eq!(
            page.get("prev_batch").is_some(),
            since.is_some(),
            "only the first page has nothing before it: {page:#}"
        );
        seen.extend(room_ids(&page));
        pages.push(page.clone());
        match page["next_batch"].as_str() {
            Some(next) => since = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "the directory never ends");
    }
    assert_eq!(
        pages.iter().map(|p| room_ids(p).len()).collect::<Vec<_>>(),
        [3, 3, 1]
    );
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    created.sort();
    assert_eq!(sorted, created, "every room once: {seen:?}");

    // From the last page, prev_batch leads back to the second, and from there to the first.
    let back = pages[2]["prev_batch"].as_str().expect("a prev_batch");
    let second = server
        .client()
        .get(&format!(
            "{PUBLIC_ROOMS}{}",
            query(&[("limit", "3"), ("since", back)])
        ))
        .await
        .ok();
    assert_eq!(room_ids(&second), room_ids(&pages[1]));
    assert!(second["next_batch"].is_string());
    let back = second["prev_batch"].as_str().expect("a prev_batch");
    let first = alice
        .post(PUBLIC_ROOMS, json!({"limit": 3, "since": back}))
        .await
        .ok();
    assert_eq!(room_ids(&first), room_ids(&pages[0]));
    assert!(
        first.get("prev_batch").is_none(),
        "nothing before the first page: {first:#}"
    );
}

#[tokio::test]
async fn searching_matches_name_topic_and_alias_and_filters_by_room_type() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let knitting = alice
        .create_room(json!({"visibility": "public", "preset": "public_chat",
                            "name": "Knitting Circle", "topic": "Wool and needles"}))
        .await;
    let pottery = alice
        .create_room(json!({"visibility": "public", "preset": "public_chat",
                            "name": "Clay", "room_alias_name": "pottery-wheel"}))
        .await;
    let crafts = alice
        .create_room(
            json!({"visibility": "public", "preset": "public_chat", "name": "Crafts",
                            "creation_content": {"type": "m.space"}}),
        )
        .await;

    let search = |term: &str| {
        let alice = alice.clone();
        let body = json!({"filter": {"generic_search_term": term}});
        async move { room_ids(&alice.post(PUBLIC_ROOMS, body).await.ok()) }
    };
    assert_eq!(
        search("KNIT").await,
        [knitting.as_str()],
        "by name, in any case"
    );
    assert_eq!(search("needles").await, [knitting.as_str()], "by topic");
    assert_eq!(search("pottery").await, [pottery.as_str()], "by alias");
    assert!(search("origami").await.is_empty());

    let by_type = |types: Value| {
        let alice = alice.clone();
        let body = json!({"filter": {"room_types": types}});
        async move {
            let mut ids = room_ids(&alice.post(PUBLIC_ROOMS, body).await.ok());
            ids.sort();
            ids
        }
    };
    assert_eq!(by_type(json!(["m.space"])).await, [crafts.as_str()]);
    let mut plain = vec![knitting.clone(), pottery.clone()];
    plain.sort();
    assert_eq!(
        by_type(json!([null])).await,
        plain,
        "null means rooms without a type"
    );
    assert_eq!(
        by_type(json!([])).await.len(),
        3,
        "an empty list filters nothing"
    );

    // A search fills its page from rooms further down, and pages on from where it stopped.
    let first = alice
        .post(
            PUBLIC_ROOMS,
            json!({"limit": 1, "filter": {"generic_search_term": "c"}}),
        )
        .await
        .ok();
    assert_eq!(room_ids(&first).len(), 1);
    let next = first["next_batch"].as_str().expect("more rooms match");
    let second = alice
        .post(
            PUBLIC_ROOMS,
            json!({"limit": 5, "since": next, "filter": {"generic_search_term": "c"}}),
        )
        .await
        .ok();
    let mut all = room_ids(&first);
    all.extend(room_ids(&second));
    all.sort();
    let mut expected = vec![knitting, pottery, crafts];
    expected.sort();
    assert_eq!(all, expected, "Circle, Clay and Crafts all contain a c");
}

#[tokio::test]
async fn moderators_publish_and_hide_their_rooms() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "Book club"}))
        .await;
    bob.join(&room).await;
    let listed = async || room_ids(&server.client().get(PUBLIC_ROOMS).await.ok());
    assert!(listed().await.is_empty());

    alice
        .put(&list_path(&room), json!({"visibility": "public"}))
        .await
        .ok();
    assert_eq!(listed().await, [room.as_str()]);

    // Bob is a plain member: he may not change how the room is found.
    bob.put(&list_path(&room), json!({"visibility": "private"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .put(&list_path(&room), json!({"visibility": "private"}))
        .await
        .ok();
    assert!(listed().await.is_empty());

    // Once he may set the canonical alias, he may publish the room too.
    alice.set_power_level(&room, &bob.user_id, 50).await;
    bob.put(&list_path(&room), json!({})).await.ok();
    assert_eq!(
        listed().await,
        [room.as_str()],
        "visibility defaults to public"
    );
}

#[tokio::test]
async fn only_members_with_power_or_server_admins_change_the_listing() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mallory = server.register_user("mallory").await;
    let admin = server.register_admin("admin").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Quiet corner"}))
        .await;

    mallory
        .put(&list_path(&room), json!({"visibility": "public"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    admin
        .put(&list_path(&room), json!({"visibility": "public"}))
        .await
        .ok();
    assert_eq!(
        server.client().get(&list_path(&room)).await.ok()["visibility"],
        "public",
        "a server admin may publish a room without being in it"
    );

    let unknown = "!nowhere:localhost";
    server
        .client()
        .get(&list_path(unknown))
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .put(&list_path(unknown), json!({"visibility": "public"}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .put(&list_path(&room), json!({"visibility": "everyone"}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    server
        .client()
        .put(&list_path(&room), json!({"visibility": "private"}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn bad_directory_requests_are_refused_with_matrix_errors() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    public_room(&alice, "Lobby", &[]).await;
    let get = |pairs: &[(&str, &str)]| {
        let path = format!("{PUBLIC_ROOMS}{}", query(pairs));
        let client = server.client();
        async move { client.get(&path).await }
    };

    for token in ["garbage", "n12", "nX_!room:localhost", "p3_not-a-room"] {
        get(&[("since", token)])
            .await
            .labelled(token)
            .assert_error(400, "M_INVALID_PARAM");
    }
    get(&[("limit", "-1")])
        .await
        .assert_error(400, "M_INVALID_PARAM");
    get(&[("server", "elsewhere.example")])
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        room_ids(&get(&[("server", "localhost")]).await.ok()).len(),
        1
    );
    let empty = get(&[("limit", "0")]).await.ok();
    assert!(room_ids(&empty).is_empty() && empty.get("next_batch").is_none());

    server
        .client()
        .post(PUBLIC_ROOMS, json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    alice
        .post(PUBLIC_ROOMS, json!({"filter": {"room_types": "m.space"}}))
        .await
        .assert_error(400, "M_BAD_JSON");
    let other_network = alice
        .post(PUBLIC_ROOMS, json!({"third_party_instance_id": "irc"}))
        .await
        .ok();
    assert!(
        room_ids(&other_network).is_empty(),
        "no bridged networks yet"
    );
}
