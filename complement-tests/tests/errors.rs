//! The shape of failures common to every endpoint: unknown paths and methods, missing and bad
//! access tokens, malformed JSON, and the `{errcode, error}` body itself.

use complement_tests::{Method, Server, json};

#[tokio::test]
async fn unknown_endpoints_are_unrecognized() {
    let server = Server::start().await;

    for path in [
        "/_matrix/client/v3/no_such_endpoint",
        "/_matrix/client/v1/also/not/here",
        "/_synapse/admin/v1/nope",
    ] {
        server
            .client()
            .get(path)
            .await
            .assert_error(404, "M_UNRECOGNIZED");
    }
}

#[tokio::test]
async fn known_paths_with_the_wrong_method_are_unrecognized() {
    let server = Server::start().await;

    let cases = [
        (Method::PUT, "/_matrix/client/versions"),
        (Method::DELETE, "/_matrix/client/v3/login"),
        (Method::GET, "/_matrix/client/v3/logout"),
        (Method::POST, "/_matrix/client/v3/account/whoami"),
    ];
    for (method, path) in cases {
        server
            .client()
            .request(method, path)
            .json(&json!({}))
            .send()
            .await
            .assert_error(405, "M_UNRECOGNIZED");
    }
}

#[tokio::test]
async fn authenticated_endpoints_need_a_token() {
    let server = Server::start().await;
    let client = server.client();

    client
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    client
        .get("/_matrix/client/v3/devices")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    client
        .post("/_matrix/client/v3/logout", json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    client
        .post("/_matrix/client/v3/logout/all", json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    client
        .post(
            "/_matrix/client/v3/account/password",
            json!({"new_password": "whatever-password"}),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_unknown_token_is_rejected() {
    let server = Server::start().await;
    let stranger = server.client().with_token("syt_not_a_real_token");

    stranger
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    stranger
        .get("/_matrix/client/v3/devices")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_rejected() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let login = server
        .client()
        .request(Method::POST, "/_matrix/client/v3/login")
        .raw_json("{not json")
        .send()
        .await;
    login.assert_error(400, "M_NOT_JSON");
    let profile = alice
        .client()
        .request(Method::PUT, &alice.profile_path("displayname"))
        .raw_json("{")
        .send()
        .await;
    profile.assert_error(400, "M_NOT_JSON");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_rejected() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let device = format!("/_matrix/client/v3/devices/{}", alice.device_id);

    alice
        .put(
            &alice.profile_path("displayname"),
            json!({"displayname": 42}),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .put(&device, json!({"display_name": ["not", "a", "string"]}))
        .await
        .assert_error(400, "M_BAD_JSON");
    server
        .client()
        .post("/_matrix/client/v3/refresh", json!({"refresh_token": 7}))
        .await
        .assert_error(400, "M_BAD_JSON");
}

#[tokio::test]
async fn every_error_body_has_an_errcode_and_a_message() {
    let server = Server::start().await;
    let client = server.client();

    let replies = [
        client.get("/_matrix/client/v3/no_such_endpoint").await,
        client
            .request(Method::PUT, "/_matrix/client/versions")
            .send()
            .await,
        client.get("/_matrix/client/v3/account/whoami").await,
        client
            .with_token("bogus")
            .get("/_matrix/client/v3/account/whoami")
            .await,
        client
            .request(Method::POST, "/_matrix/client/v3/login")
            .raw_json("nope")
            .send()
            .await,
    ];
    for reply in replies {
        assert!(reply.status >= 400, "expected an error, got\n{reply}");
        assert!(
            reply.body["errcode"]
                .as_str()
                .is_some_and(|c| c.starts_with("M_"))
                && reply.body["error"].is_string(),
            "an error body is {{errcode, error}}:\n{reply}"
        );
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "errors are JSON:\n{reply}"
        );
    }
}
