//! Profiles across servers: a client asks its own server for the profile of another server's user,
//! and its server asks that server over federation (a signed request, checked against the
//! asking server's published key).

use complement_tests::{Federation, Server, encode};

fn profile_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/profile/{}", encode(user_id))
}

#[tokio::test]
async fn a_user_reads_the_profile_of_a_user_on_another_server() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    bob.set_displayname("Bob on hs2").await;

    let profile = alice.get(&profile_path(&bob.user_id)).await.ok();
    assert_eq!(profile["displayname"], "Bob on hs2");
    let field = alice
        .get(&format!("{}/displayname", profile_path(&bob.user_id)))
        .await
        .ok();
    assert_eq!(field["displayname"], "Bob on hs2");

    // And the other way round, on the same pair of servers.
    alice.set_displayname("Alice on hs1").await;
    let profile = bob.get(&profile_path(&alice.user_id)).await.ok();
    assert_eq!(profile["displayname"], "Alice on hs1");

    // A field bob never set, and a user hs2 does not have, are not found.
    alice
        .get(&format!("{}/avatar_url", profile_path(&bob.user_id)))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&profile_path("@nobody:hs2.test"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_server_that_denies_the_asking_server_refuses_the_profile() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation
        .server("hs2.test")
        .config("federation.deny", vec!["hs1.test"])
        .start()
        .await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    bob.set_displayname("Bob").await;

    // hs2 answers hs1 with 403 M_FORBIDDEN, which hs1 passes on to alice, naming hs2.
    let reply = alice.get(&profile_path(&bob.user_id)).await;
    reply.assert_error(403, "M_FORBIDDEN");
    assert!(reply.text.contains("hs2.test refused"), "{reply}");
}

#[tokio::test]
async fn a_server_does_not_ask_servers_it_denies() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation
        .server("hs1.test")
        .config("federation.deny", vec!["hs2.test"])
        .start()
        .await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;

    let reply = alice.get(&profile_path(&bob.user_id)).await;
    reply.assert_error(403, "M_FORBIDDEN");
    assert!(reply.text.contains("not allowed to federate"), "{reply}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_bad_gateway() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let alice = hs1.register_user("alice").await;

    // hs2.test resolves to a forwarding port with nothing behind it.
    let reply = alice.get(&profile_path("@bob:hs2.test")).await;
    reply.assert_status(502);
    assert_eq!(reply.errcode(), Some("M_UNKNOWN"), "{reply}");
}

#[tokio::test]
async fn without_federation_other_servers_users_have_no_profile() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    alice
        .get(&profile_path("@bob:elsewhere.example"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}
