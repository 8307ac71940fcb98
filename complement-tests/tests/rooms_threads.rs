//! Threads: the summary a thread root carries in `unsigned.m.relations.m.thread` (latest reply,
//! count, whether the reader took part) through `/event` and `/messages`, and
//! `GET /_matrix/client/v1/rooms/{roomId}/threads` listing thread roots by latest activity, for
//! everyone or only the threads the reader took part in, a page at a time.

use std::collections::HashSet;

use complement_tests::{Reply, Server, User, Value, chunk, encode, json, query};

async fn threads(user: &User, room_id: &str, pairs: &[(&str, &str)]) -> Reply {
    user.get(&format!(
        "/_matrix/client/v1/rooms/{}/threads{}",
        encode(room_id),
        query(pairs)
    ))
    .await
    .labelled(format!("as {}", user.localpart))
}

/// The event IDs of the thread roots on one page of `/threads`.
async fn thread_roots(user: &User, room_id: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let reply = threads(user, room_id, pairs).await;
    event_ids(&chunk(&reply.ok()))
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `m.thread` summary `reader` gets with `root`, from `/event`, asserting that `/messages`
/// carries the same one.
async fn thread_summary(reader: &User, room: &str, root: &str) -> Value {
    let served = reader.event(room, root).await;
    let in_history = reader
        .all_messages(room, "b", 50)
        .await
        .into_iter()
        .find(|e| e["event_id"] == root)
        .unwrap_or_else(|| panic!("{root} is not in /messages"));
    let summary = served["unsigned"]["m.relations"]["m.thread"].clone();
    assert_eq!(
        in_history["unsigned"]["m.relations"]["m.thread"], summary,
        "/messages bundles the same thread summary as /event for {}: {in_history:#}\n{served:#}",
        reader.localpart
    );
    summary
}

/// A public room of alice's that bob and carol have joined.
async fn room_of_three(server: &Server) -> (User, User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;
    (alice, bob, carol, room)
}

#[tokio::test]
async fn a_thread_root_carries_its_latest_reply_and_count() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = room_of_three(&server).await;
    let root = alice.send_message(&room, "Lunch on Friday?").await;
    bob.reply_in_thread(&room, &root, "Yes!").await;
    alice.send_message(&room, "unrelated").await;
    let latest = bob
        .reply_in_thread(&room, &root, "Somewhere with a garden?")
        .await;

    let summary = thread_summary(&carol, &room, &root).await;

    assert_eq!(summary["count"], 2, "{summary:#}");
    let latest_event = &summary["latest_event"];
    assert_eq!(latest_event["event_id"], latest.as_str(), "{summary:#}");
    assert_eq!(latest_event["sender"], bob.user_id.as_str(), "{summary:#}");
    assert_eq!(latest_event["type"], "m.room.message", "{summary:#}");
    assert_eq!(
        latest_event["content"]["body"], "Somewhere with a garden?",
        "the latest event is the whole event: {summary:#}"
    );
    assert_eq!(
        latest_event["content"]["m.relates_to"]["rel_type"], "m.thread",
        "{summary:#}"
    );
}

#[tokio::test]
async fn only_those_who_took_part_have_participated() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = room_of_three(&server).await;
    let root = alice.send_message(&room, "Lunch on Friday?").await;
    bob.reply_in_thread(&room, &root, "Yes!").await;
    carol.send_message(&room, "(not in the thread)").await;

    let for_bob = thread_summary(&bob, &room, &root).await;
    let for_carol = thread_summary(&carol, &room, &root).await;

    assert_eq!(
        for_bob["current_user_participated"], true,
        "bob replied in the thread: {for_bob:#}"
    );
    assert_eq!(
        for_carol["current_user_participated"], false,
        "carol did not: {for_carol:#}"
    );
    assert_eq!(for_bob["count"], 1);
    assert_eq!(for_carol["count"], 1);
}

#[tokio::test]
async fn the_sender_of_the_root_has_participated_in_the_thread() {
    // "The user is considered to have participated if: they created the current event; they
    // created an event with a m.thread relation targeting the current event."
    let server = Server::start().await;
    let (alice, bob, _carol, room) = room_of_three(&server).await;
    let root = alice.send_message(&room, "Lunch on Friday?").await;
    bob.reply_in_thread(&room, &root, "Yes!").await;

    let for_alice = thread_summary(&alice, &room, &root).await;

    assert_eq!(
        for_alice["current_user_participated"], true,
        "{for_alice:#}"
    );
}

#[tokio::test]
async fn a_message_without_replies_has_no_thread_summary() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = room_of_three(&server).await;
    let lonely = alice.send_message(&room, "anyone?").await;
    let other = alice.send_message(&room, "other").await;
    bob.reply_in_thread(&room, &other, "here").await;

    assert!(
        thread_summary(&bob, &room, &lonely).await.is_null(),
        "no replies, no thread"
    );
}

#[tokio::test]
async fn threads_are_listed_by_latest_activity() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = room_of_three(&server).await;
    let a = alice.send_message(&room, "thread a").await;
    let b = alice.send_message(&room, "thread b").await;
    let c = alice.send_message(&room, "thread c").await;
    alice.send_message(&room, "no thread").await;
    bob.reply_in_thread(&room, &a, "a1").await;
    bob.reply_in_thread(&room, &b, "b1").await;
    bob.reply_in_thread(&room, &c, "c1").await;

    assert_eq!(
        thread_roots(&bob, &room, &[]).await,
        [c.clone(), b.clone(), a.clone()],
        "the thread with the latest reply comes first; a message without replies is no thread"
    );

    bob.reply_in_thread(&room, &a, "a2").await;
    let reply = threads(&bob, &room, &[]).await;
    let roots = chunk(&reply.ok());
    assert_eq!(
        event_ids(&roots),
        [a.clone(), c, b],
        "a new reply bumps its thread to the top:\n{reply}"
    );
    assert_eq!(
        roots[0]["unsigned"]["m.relations"]["m.thread"]["count"], 2,
        "every root comes with its thread summary:\n{reply}"
    );
    assert_eq!(
        roots[0]["content"]["body"], "thread a",
        "the chunk holds the roots themselves:\n{reply}"
    );
}

#[tokio::test]
async fn include_participated_lists_only_threads_the_reader_took_part_in() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = room_of_three(&server).await;
    let alices = alice.send_message(&room, "alice's thread").await;
    let bobs = bob.send_message(&room, "bob's thread").await;
    let carols = carol.send_message(&room, "carol's thread").await;
    bob.reply_in_thread(&room, &alices, "bob replies to alice")
        .await;
    alice
        .reply_in_thread(&room, &bobs, "alice replies to bob")
        .await;
    alice
        .reply_in_thread(&room, &carols, "alice replies to carol")
        .await;

    let everything = [carols.clone(), bobs.clone(), alices.clone()];
    assert_eq!(thread_roots(&bob, &room, &[]).await, everything);
    assert_eq!(
        thread_roots(&bob, &room, &[("include", "all")]).await,
        everything
    );
    assert_eq!(
        thread_roots(&bob, &room, &[("include", "participated")]).await,
        [bobs, alices.clone()],
        "bob started one thread and replied in another"
    );
    assert_eq!(
        thread_roots(&carol, &room, &[("include", "participated")]).await,
        [carols],
        "carol only started her own"
    );
    assert_eq!(
        thread_roots(&alice, &room, &[("include", "participated")]).await,
        everything,
        "alice took part in all three"
    );
}

#[tokio::test]
async fn threads_page_by_next_batch_without_gaps_or_duplicates() {
    let server = Server::start().await;
    let (alice, bob, _carol, room) = room_of_three(&server).await;
    let mut roots = Vec::new();
    for n in 1..=5 {
        let root = alice.send_message(&room, &format!("thread {n}")).await;
        bob.reply_in_thread(&room, &root, &format!("reply {n}"))
            .await;
        roots.push(root);
    }

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let mut pairs = vec![("limit", "2")];
        if let Some(from) = &from {
            pairs.push(("from", from.as_str()));
        }
        let page = threads(&bob, &room, &pairs).await.ok();
        let batch = event_ids(&chunk(&page));
        pages.push(batch.len());
        seen.extend(batch);
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }

    roots.reverse();
    assert_eq!(seen, roots, "newest thread first, each once");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        5,
        "no duplicates: {seen:?}"
    );
    assert_eq!(pages, [2, 2, 1], "the last page has no next_batch");
}

#[tokio::test]
async fn an_outsider_cannot_list_the_threads_of_a_private_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let root = alice.send_message(&room, "staff only").await;
    alice
        .reply_in_thread(&room, &root, "still staff only")
        .await;

    let reply = threads(&outsider, &room, &[]).await;

    assert!(
        (reply.status == 403 && reply.errcode() == Some("M_FORBIDDEN"))
            || (reply.status == 404 && reply.errcode() == Some("M_NOT_FOUND")),
        "expected 403 M_FORBIDDEN or 404 M_NOT_FOUND, got\n{reply}"
    );
}

#[tokio::test]
async fn thread_replies_are_the_m_thread_relations_of_the_root() {
    let server = Server::start().await;
    let (alice, bob, carol, room) = room_of_three(&server).await;
    let root = alice.send_message(&room, "Lunch on Friday?").await;
    let first = bob.reply_in_thread(&room, &root, "Yes!").await;
    alice.react(&room, &root, "🍽️").await;
    let second = carol.reply_in_thread(&room, &root, "Can't, sorry").await;

    let reply = carol
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.thread?dir=f",
            encode(&room),
            encode(&root)
        ))
        .await;

    assert_eq!(
        event_ids(&chunk(&reply.ok())),
        [first, second],
        "the thread in order, without the reaction:\n{reply}"
    );
}
