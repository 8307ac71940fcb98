//! Relations: `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! listing reactions, edits, thread replies and references, narrowed by relation and event type,
//! paged with `limit` and `next_batch` in both directions, and with `recurse` following relations
//! of relations; who may list them; and the latest edit that `GET /rooms/{roomId}/event/{eventId}`
//! and `/messages` bundle into `unsigned.m.relations.m.replace`.

use std::collections::HashSet;
use std::time::Duration;

use complement_tests::{Reply, Server, User, Value, chunk, encode, json, query, room_path, txn_id};

/// `/_matrix/client/v1/rooms/{roomId}/relations/{eventId}{rest}`, with the IDs percent-encoded;
/// `rest` is `""`, `"/{relType}"` or `"/{relType}/{eventType}"`.
fn relations_path(room_id: &str, event_id: &str, rest: &str) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/relations/{}{rest}",
        encode(room_id),
        encode(event_id)
    )
}

async fn relations(
    user: &User,
    room_id: &str,
    event_id: &str,
    rest: &str,
    pairs: &[(&str, &str)],
) -> Reply {
    user.get(&format!(
        "{}{}",
        relations_path(room_id, event_id, rest),
        query(pairs)
    ))
    .await
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn reaction_keys(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["content"]["m.relates_to"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Every relation of `event_id` that a walk with `limit` per page yields, following `next_batch`
/// until the server leaves it out, and the size of each page.
async fn walk(
    user: &User,
    room_id: &str,
    event_id: &str,
    dir: Option<&str>,
    limit: u32,
) -> (Vec<Value>, Vec<usize>) {
    let limit = limit.to_string();
    let mut events = Vec::new();
    let mut pages = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let mut pairs = vec![("limit", limit.as_str())];
        if let Some(dir) = dir {
            pairs.push(("dir", dir));
        }
        if let Some(from) = &from {
            pairs.push(("from", from.as_str()));
        }
        let page = relations(user, room_id, event_id, "", &pairs).await.ok();
        let batch = chunk(&page);
        pages.push(batch.len());
        events.extend(batch);
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => return (events, pages),
        }
    }
    panic!("/relations still had a next_batch after 50 pages");
}

/// Alice's public room, which bob has joined, with alice's message `"root"`.
async fn room_with_root(server: &Server) -> (User, User, String, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let root = alice.send_message(&room, "root").await;
    (alice, bob, room, root)
}

/// Waits long enough that the next event gets a later `origin_server_ts`, which is what orders
/// edits ("the one with the highest origin_server_ts wins").
async fn next_millisecond() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn redact(user: &User, room: &str, event_id: &str) {
    user.put(
        &room_path(
            room,
            &format!("redact/{}/{}", encode(event_id), encode(&txn_id())),
        ),
        json!({"reason": "wrong edit"}),
    )
    .await
    .ok();
}

/// The `unsigned.m.relations.m.replace` bundled with `event_id` by `/event` and by `/messages`,
/// asserting that both agree.
async fn bundled_edit(reader: &User, room: &str, event_id: &str) -> Value {
    let served = reader.event(room, event_id).await;
    let in_history = reader
        .all_messages(room, "b", 50)
        .await
        .into_iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is not in /messages"));
    let edit = served["unsigned"]["m.relations"]["m.replace"].clone();
    assert_eq!(
        in_history["unsigned"]["m.relations"]["m.replace"], edit,
        "/messages bundles the same edit as /event: {in_history:#}\n{served:#}"
    );
    edit
}

#[tokio::test]
async fn reactions_edits_thread_replies_and_references_all_relate_to_their_parent() {
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    let other = alice.send_message(&room, "another message").await;
    let reaction = bob.react(&room, &root, "👍").await;
    let edit = alice.edit(&room, &root, "root (edited)").await;
    bob.react(&room, &other, "👀").await;
    let reply = bob.reply_in_thread(&room, &root, "in a thread").await;
    let reference = bob
        .send_event(
            &room,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "see above",
                "m.relates_to": {"rel_type": "m.reference", "event_id": root},
            }),
        )
        .await;

    let reply_body = relations(&bob, &room, &root, "", &[]).await;
    let page = reply_body.ok();

    assert_eq!(
        event_ids(&chunk(&page)),
        [reference, reply, edit, reaction],
        "every direct relation of the root, newest first, and nothing of the other message:\n{reply_body}"
    );
    assert!(
        chunk(&page)
            .iter()
            .all(|e| e["content"]["m.relates_to"]["event_id"] == root.as_str()),
        "{page:#}"
    );
    assert!(
        page.get("next_batch").is_none(),
        "everything fitted on one page: {page:#}"
    );
    assert!(
        page.get("recursion_depth").is_none(),
        "without recurse there is no recursion_depth: {page:#}"
    );
}

#[tokio::test]
async fn relation_and_event_type_narrow_the_list() {
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    let thumbs = bob.react(&room, &root, "👍").await;
    let vote = bob
        .send_event(
            &room,
            "care.plexus.vote",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "yes"}}),
        )
        .await;
    let heart = alice.react(&room, &root, "❤️").await;
    let reply = bob.reply_in_thread(&room, &root, "in a thread").await;
    let edit = alice.edit(&room, &root, "root (edited)").await;

    let cases: [(&str, Vec<&str>); 6] = [
        ("/m.annotation", vec![&heart, &vote, &thumbs]),
        ("/m.annotation/m.reaction", vec![&heart, &thumbs]),
        ("/m.annotation/care.plexus.vote", vec![&vote]),
        ("/m.thread", vec![&reply]),
        ("/m.replace/m.room.message", vec![&edit]),
        ("/m.reference", vec![]),
    ];
    for (rest, expected) in cases {
        let reply = relations(&bob, &room, &root, rest, &[])
            .await
            .labelled(rest);
        assert_eq!(
            event_ids(&chunk(&reply.ok())),
            expected,
            "newest first:\n{reply}"
        );
    }
}

#[tokio::test]
async fn paging_backwards_by_default_lists_the_newest_first_without_gaps_or_duplicates() {
    let server = Server::start().await;
    let (_alice, bob, room, root) = room_with_root(&server).await;
    for n in 1..=7 {
        bob.react(&room, &root, &format!("r{n}")).await;
    }

    let (events, pages) = walk(&bob, &room, &root, None, 3).await;

    assert_eq!(
        reaction_keys(&events),
        ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]
    );
    assert_eq!(
        pages,
        [3, 3, 1],
        "limit caps each page; the last page has no next_batch"
    );
    let (explicit, _) = walk(&bob, &room, &root, Some("b"), 3).await;
    assert_eq!(
        event_ids(&explicit),
        event_ids(&events),
        "dir=b is the default"
    );
}

#[tokio::test]
async fn paging_forwards_lists_the_oldest_first_without_gaps_or_duplicates() {
    let server = Server::start().await;
    let (_alice, bob, room, root) = room_with_root(&server).await;
    for n in 1..=7 {
        bob.react(&room, &root, &format!("r{n}")).await;
    }

    let (events, pages) = walk(&bob, &room, &root, Some("f"), 2).await;

    assert_eq!(
        reaction_keys(&events),
        ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]
    );
    assert_eq!(pages, [2, 2, 2, 1]);
}

#[tokio::test]
async fn relations_sent_while_paging_do_not_disturb_a_backwards_walk() {
    // A `next_batch` marks a place in the timeline, so reactions that arrive between two pages
    // belong to the newer end and do not shift what the next page holds.
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    for n in 1..=4 {
        bob.react(&room, &root, &format!("r{n}")).await;
    }

    let first = relations(&bob, &room, &root, "", &[("limit", "2")])
        .await
        .ok();
    alice.react(&room, &root, "late").await;
    let next = first["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("two more reactions remain: {first:#}"));
    let second = relations(&bob, &room, &root, "", &[("limit", "2"), ("from", next)])
        .await
        .ok();

    assert_eq!(reaction_keys(&chunk(&first)), ["r4", "r3"]);
    assert_eq!(reaction_keys(&chunk(&second)), ["r2", "r1"], "{second:#}");
}

#[tokio::test]
async fn recurse_includes_an_edit_of_a_thread_reply() {
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    let reply = bob.reply_in_thread(&room, &root, "in a thread").await;
    let reaction = alice.react(&room, &reply, "👍").await;
    let edit = bob.edit(&room, &reply, "in a thread (edited)").await;

    let direct = relations(&alice, &room, &root, "", &[]).await.ok();
    let recursive = relations(&alice, &room, &root, "", &[("recurse", "true")])
        .await
        .ok();

    assert_eq!(
        event_ids(&chunk(&direct)),
        std::slice::from_ref(&reply),
        "without recurse only the thread reply relates to the root: {direct:#}"
    );
    assert_eq!(
        event_ids(&chunk(&recursive)),
        [edit, reaction, reply],
        "with recurse the relations of the reply come too, newest first: {recursive:#}"
    );
    let depth = recursive["recursion_depth"].as_u64().unwrap_or_else(|| {
        panic!("with recurse the answer says how deep the server went: {recursive:#}")
    });
    assert!(
        depth >= 2,
        "the edit is two relations away from the root: {recursive:#}"
    );
}

#[tokio::test]
async fn recurse_follows_at_least_three_levels() {
    // "Homeservers SHOULD traverse at least 3 levels of relationships."
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    let reply = bob.reply_in_thread(&room, &root, "in a thread").await;
    let edit = bob.edit(&room, &reply, "in a thread (edited)").await;
    let reaction_to_edit = alice.react(&room, &edit, "🎉").await;

    let recursive = relations(&alice, &room, &root, "", &[("recurse", "true")])
        .await
        .ok();

    assert_eq!(
        event_ids(&chunk(&recursive)),
        [reaction_to_edit, edit, reply],
        "{recursive:#}"
    );
    assert!(
        recursive["recursion_depth"].as_u64() >= Some(3),
        "{recursive:#}"
    );
    let flat = relations(&alice, &room, &root, "", &[("recurse", "false")])
        .await
        .ok();
    assert!(
        flat.get("recursion_depth").is_none() || flat["recursion_depth"] == json!(1),
        "recurse=false goes no deeper than the direct relations: {flat:#}"
    );
    assert_eq!(chunk(&flat).len(), 1, "{flat:#}");
}

#[tokio::test]
async fn an_unknown_event_has_no_relations() {
    let server = Server::start().await;
    let (_alice, bob, room, _root) = room_with_root(&server).await;

    for rest in ["", "/m.annotation", "/m.annotation/m.reaction"] {
        relations(&bob, &room, "$doesnotexist:localhost", rest, &[])
            .await
            .labelled(rest)
            .assert_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn an_event_of_another_room_is_not_found_through_this_room() {
    let server = Server::start().await;
    let (alice, bob, room, _root) = room_with_root(&server).await;
    let elsewhere = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&elsewhere).await;
    let message = alice.send_message(&elsewhere, "in another room").await;
    bob.react(&elsewhere, &message, "👍").await;

    relations(&bob, &room, &message, "", &[])
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn an_outsider_cannot_list_the_relations_of_a_private_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let message = alice.send_message(&room, "staff only").await;
    alice.react(&room, &message, "👍").await;

    let reply = relations(&outsider, &room, &message, "", &[]).await;

    assert!(
        (reply.status == 404 && reply.errcode() == Some("M_NOT_FOUND"))
            || (reply.status == 403 && reply.errcode() == Some("M_FORBIDDEN")),
        "expected 404 M_NOT_FOUND or 403 M_FORBIDDEN, got\n{reply}"
    );
}

#[tokio::test]
async fn a_member_cannot_list_relations_of_a_message_hidden_from_them() {
    // With `joined` visibility, a message sent before bob joined is not his to read, and so are
    // its relations: "the user does not have permission to read this event" answers 404.
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }],
        }))
        .await;
    let before = alice.send_message(&room, "before bob joined").await;
    alice.react(&room, &before, "🤫").await;
    bob.join(&room).await;
    alice.react(&room, &before, "👋").await;

    relations(&bob, &room, &before, "", &[])
        .await
        .assert_error(404, "M_NOT_FOUND");
    let alice_sees = relations(&alice, &room, &before, "", &[]).await.ok();
    assert_eq!(reaction_keys(&chunk(&alice_sees)), ["👋", "🤫"]);
}

#[tokio::test]
async fn the_latest_edit_is_bundled_with_the_original() {
    let server = Server::start().await;
    let (alice, bob, room, _root) = room_with_root(&server).await;
    let original = alice.send_message(&room, "helo").await;
    let unedited = alice.send_message(&room, "not edited").await;
    alice.edit(&room, &original, "hello").await;
    next_millisecond().await;
    let latest = alice.edit(&room, &original, "hello!").await;

    let edit = bundled_edit(&bob, &room, &original).await;

    assert_eq!(edit["event_id"], latest.as_str(), "{edit:#}");
    assert_eq!(edit["sender"], alice.user_id.as_str(), "{edit:#}");
    assert_eq!(
        edit["content"]["m.new_content"]["body"], "hello!",
        "{edit:#}"
    );
    let served = bob.event(&room, &original).await;
    assert_eq!(
        served["content"]["body"], "helo",
        "the server bundles the edit but does not apply it to the original's content: {served:#}"
    );
    assert!(
        bundled_edit(&bob, &room, &unedited).await.is_null(),
        "a message nobody edited has no m.replace"
    );
}

#[tokio::test]
async fn an_edit_by_another_user_is_not_applied() {
    let server = Server::start().await;
    let (alice, bob, room, _root) = room_with_root(&server).await;
    let only_bob_edited = alice.send_message(&room, "alice's words").await;
    bob.edit(&room, &only_bob_edited, "bob's words").await;
    let both_edited = alice.send_message(&room, "alice's plan").await;
    let alices_edit = alice.edit(&room, &both_edited, "alice's better plan").await;
    next_millisecond().await;
    bob.edit(&room, &both_edited, "bob's plan").await;

    assert!(
        bundled_edit(&alice, &room, &only_bob_edited)
            .await
            .is_null(),
        "an edit is only valid from the original's sender"
    );
    let edit = bundled_edit(&alice, &room, &both_edited).await;
    assert_eq!(
        edit["event_id"],
        alices_edit.as_str(),
        "bob's later edit is ignored: {edit:#}"
    );
}

#[tokio::test]
async fn redacting_an_edit_removes_it_from_the_bundle() {
    let server = Server::start().await;
    let (alice, bob, room, _root) = room_with_root(&server).await;
    let original = alice.send_message(&room, "v1").await;
    let first = alice.edit(&room, &original, "v2").await;
    next_millisecond().await;
    let second = alice.edit(&room, &original, "v3").await;
    assert_eq!(
        bundled_edit(&bob, &room, &original).await["event_id"],
        second.as_str()
    );

    redact(&alice, &room, &second).await;
    let edit = bundled_edit(&bob, &room, &original).await;
    assert_eq!(
        edit["event_id"],
        first.as_str(),
        "the earlier edit is the latest again: {edit:#}"
    );

    redact(&alice, &room, &first).await;
    let edit = bundled_edit(&bob, &room, &original).await;
    assert!(edit.is_null(), "no edit is left: {edit:#}");
}

#[tokio::test]
async fn relations_are_listed_once_each_even_in_a_long_walk() {
    let server = Server::start().await;
    let (alice, bob, room, root) = room_with_root(&server).await;
    for n in 1..=12 {
        let user = if n % 2 == 0 { &alice } else { &bob };
        user.react(&room, &root, &format!("k{n:02}")).await;
        // Unrelated traffic in between, which must not appear in the walk.
        alice.send_message(&room, &format!("chatter {n}")).await;
    }

    let (backwards, _) = walk(&bob, &room, &root, None, 5).await;
    let (mut forwards, _) = walk(&bob, &room, &root, Some("f"), 5).await;
    forwards.reverse();

    let ids = event_ids(&backwards);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 12, "{ids:?}");
    let expected: Vec<String> = (1..=12).rev().map(|n| format!("k{n:02}")).collect();
    assert_eq!(reaction_keys(&backwards), expected);
    assert_eq!(
        event_ids(&forwards),
        ids,
        "both directions list the same events"
    );
}
