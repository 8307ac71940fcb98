//! Plexus federating with a real Synapse (installed from PyPI into `target/synapse-venv` on first
//! run; see `complement_tests::Synapse`). Both servers are named by IP literal and port
//! (`127.0.0.1:PORT`), so each reaches the other's TLS federation listener directly; neither
//! checks certificates. Stories: each fetches the other's signing key, each reads the other's
//! users' profiles, each one's users join the other's rooms, talk and leave, and each
//! one's users invite the other's, who accept and talk.

use std::time::Duration;

use complement_tests::{
    Federation, Server, ServerKey, Synapse, User, Value, encode, json, now_ms, room_path,
    state_path, wait_until,
};

/// How long an event may take to reach the other server.
const WAIT: Duration = Duration::from_secs(30);

/// A Plexus server named `127.0.0.1:PORT`, federating; and a Synapse.
async fn plexus_and_synapse() -> (Federation, Server, Synapse) {
    let (federation, synapse) = tokio::join!(Federation::loopback(1), Synapse::start());
    let name = federation.names().remove(0);
    let plexus = federation.server(&name).start().await;
    (federation, plexus, synapse)
}

/// The verify keys of `server_name` in a `/_matrix/key/v2/query` answer.
fn queried_keys(answer: &Value, server_name: &str) -> Value {
    let server_keys = answer["server_keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no server_keys in {answer}"));
    let keys = server_keys
        .iter()
        .find(|keys| keys["server_name"] == server_name)
        .unwrap_or_else(|| panic!("no keys of {server_name} in {answer}"));
    keys["verify_keys"].clone()
}

#[tokio::test]
async fn plexus_and_synapse_fetch_each_others_signing_keys() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;

    // Plexus, as a notary, fetches Synapse's key from Synapse.
    let (synapse_key_id, synapse_key) = synapse.signing_key();
    let answer = plexus
        .federation_client()
        .post(
            "/_matrix/key/v2/query",
            json!({"server_keys": {synapse.server_name(): {}}}),
        )
        .await
        .ok();
    let keys = queried_keys(&answer, synapse.server_name());
    assert_eq!(
        keys[synapse_key_id]["key"],
        synapse_key,
        "plexus's notary answer for synapse: {answer}\n--- plexus ---\n{}",
        plexus.stderr_tail()
    );

    // Synapse, asked about Plexus's key, fetches it from Plexus. (Synapse's notary only goes to
    // the server for key ids asked by name; asked for "all keys" it answers from its cache. It
    // also wants `minimum_valid_until_ts`, which the spec makes optional.)
    let plexus_key = ServerKey::of(&plexus);
    let answer = synapse
        .federation_client()
        .post(
            "/_matrix/key/v2/query",
            json!({"server_keys": {plexus.server_name(): {
                &plexus_key.key_id: {"minimum_valid_until_ts": now_ms()},
            }}}),
        )
        .await
        .ok();
    let keys = queried_keys(&answer, plexus.server_name());
    assert_eq!(
        keys[&plexus_key.key_id]["key"],
        plexus_key.public_key(),
        "synapse's notary answer for plexus: {answer}\n--- synapse ---\n{}",
        synapse.log_tail()
    );
}

fn profile_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/profile/{}", encode(user_id))
}

#[tokio::test]
async fn profiles_are_read_across_plexus_and_synapse_both_ways() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;
    let alice = plexus.register_user("alice").await;
    let bob = synapse.register_user("bob").await;
    alice.set_displayname("Alice on Plexus").await;
    bob.set_displayname("Bob on Synapse").await;

    // Alice asks Plexus, which asks Synapse over federation (signed, checked by Synapse).
    let profile = alice.get(&profile_path(&bob.user_id)).await;
    assert_eq!(
        profile.ok()["displayname"],
        "Bob on Synapse",
        "--- synapse ---\n{}",
        synapse.log_tail()
    );
    let field = alice
        .get(&format!("{}/displayname", profile_path(&bob.user_id)))
        .await
        .ok();
    assert_eq!(field["displayname"], "Bob on Synapse");

    // Bob asks Synapse, which asks Plexus (signed, checked by Plexus against Synapse's key).
    let profile = bob.get(&profile_path(&alice.user_id)).await;
    assert_eq!(
        profile.ok()["displayname"],
        "Alice on Plexus",
        "--- plexus ---\n{}\n--- synapse ---\n{}",
        plexus.stderr_tail(),
        synapse.log_tail()
    );

    // A user Synapse does not have is not found, through Plexus.
    alice
        .get(&profile_path(&format!("@nobody:{}", synapse.server_name())))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// `guest` (of the other server) joins `host`'s public room "Garden" through the host's server;
/// then they talk both ways, both servers agree on the members, and the guest's leave reaches
/// the host's server.
async fn join_talk_and_leave(
    plexus: &Server,
    synapse: &Synapse,
    host: &User,
    host_server: &str,
    guest: &User,
) {
    let logs = || {
        format!(
            "--- plexus ---\n{}\n--- synapse ---\n{}",
            plexus.stderr_tail(),
            synapse.log_tail()
        )
    };
    let room = host
        .create_room(json!({"preset": "public_chat", "name": "Garden"}))
        .await;

    let joined = guest.join_via(&room, host_server).await;
    assert_eq!(joined.ok()["room_id"], room.as_str(), "{}", logs());
    let name = guest.get(&state_path(&room, "m.room.name", "")).await;
    assert_eq!(name.ok()["name"], "Garden", "{}", logs());

    host.send_message(&room, "hello from the host").await;
    wait_until("the guest sees the host's message", WAIT, async || {
        guest
            .latest_bodies(&room)
            .await
            .contains(&"hello from the host".to_owned())
    })
    .await;

    guest.send_message(&room, "hello from the guest").await;
    wait_until("the host sees the guest's message", WAIT, async || {
        host.latest_bodies(&room)
            .await
            .contains(&"hello from the guest".to_owned())
    })
    .await;

    let mut both = vec![host.user_id.clone(), guest.user_id.clone()];
    both.sort();
    assert_eq!(host.joined_members(&room).await, both, "{}", logs());
    assert_eq!(guest.joined_members(&room).await, both, "{}", logs());

    guest.leave(&room).await;
    wait_until("the host's server sees the guest leave", WAIT, async || {
        host.joined_members(&room).await == vec![host.user_id.clone()]
    })
    .await;
}

#[tokio::test]
async fn a_plexus_user_joins_a_synapse_room_talks_and_leaves() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;
    let alice = plexus.register_user("alice").await;
    let bob = synapse.register_user("bob").await;
    join_talk_and_leave(&plexus, &synapse, &bob, synapse.server_name(), &alice).await;
}

#[tokio::test]
async fn a_synapse_user_joins_a_plexus_room_talks_and_leaves() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;
    let alice = plexus.register_user("alice").await;
    let bob = synapse.register_user("bob").await;
    join_talk_and_leave(&plexus, &synapse, &alice, plexus.server_name(), &bob).await;
}

/// `host` invites `guest` (of the other server) into a private room "Secret"; the guest's server
/// shows the invite in `/sync`, the guest accepts by joining the room by its id, and they talk.
async fn invite_accept_and_talk(plexus: &Server, synapse: &Synapse, host: &User, guest: &User) {
    let logs = || {
        format!(
            "--- plexus ---\n{}\n--- synapse ---\n{}",
            plexus.stderr_tail(),
            synapse.log_tail()
        )
    };
    let room = host
        .create_room(json!({"preset": "private_chat", "name": "Secret"}))
        .await;
    let invited = host
        .post(
            &room_path(&room, "invite"),
            json!({"user_id": guest.user_id}),
        )
        .await;
    invited.assert_status(200);

    let mut synced = Value::Null;
    wait_until("the guest's server shows the invite", WAIT, async || {
        synced = guest.get("/_matrix/client/v3/sync?timeout=0").await.ok();
        synced["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    let invite_state = synced["rooms"]["invite"][&room]["invite_state"]["events"].clone();
    assert!(
        invite_state
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.room.member"
                && e["state_key"] == guest.user_id.as_str()
                && e["content"]["membership"] == "invite"),
        "no invite event in the invite state: {synced}\n{}",
        logs()
    );

    let joined = guest.post(&room_path(&room, "join"), json!({})).await;
    assert_eq!(joined.ok()["room_id"], room.as_str(), "{}", logs());

    host.send_message(&room, "welcome").await;
    wait_until("the guest sees the welcome", WAIT, async || {
        guest
            .latest_bodies(&room)
            .await
            .contains(&"welcome".to_owned())
    })
    .await;
    guest.send_message(&room, "thanks").await;
    wait_until("the host sees the thanks", WAIT, async || {
        host.latest_bodies(&room)
            .await
            .contains(&"thanks".to_owned())
    })
    .await;
    let mut both = vec![host.user_id.clone(), guest.user_id.clone()];
    both.sort();
    assert_eq!(host.joined_members(&room).await, both, "{}", logs());
    assert_eq!(guest.joined_members(&room).await, both, "{}", logs());
}

#[tokio::test]
async fn a_synapse_user_invites_a_plexus_user_who_joins() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;
    let alice = plexus.register_user("alice").await;
    let bob = synapse.register_user("bob").await;
    invite_accept_and_talk(&plexus, &synapse, &bob, &alice).await;
}

#[tokio::test]
async fn a_plexus_user_invites_a_synapse_user_who_joins() {
    let (_federation, plexus, synapse) = plexus_and_synapse().await;
    let alice = plexus.register_user("alice").await;
    let bob = synapse.register_user("bob").await;
    invite_accept_and_talk(&plexus, &synapse, &alice, &bob).await;
}
