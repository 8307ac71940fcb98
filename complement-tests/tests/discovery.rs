//! Discovery and feature advertisement: `/versions`, `/.well-known/matrix/{client,server}` and
//! `/capabilities`.

use complement_tests::Server;

#[tokio::test]
async fn versions_lists_v1_spec_versions_without_auth() {
    let server = Server::start().await;

    let reply = server.client().get("/_matrix/client/versions").await;

    let body = reply.ok();
    let versions = body["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions array:\n{reply}"));
    assert!(
        versions.iter().all(|v| v.is_string())
            && versions
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))),
        "a client needs at least one v1.x version it can speak:\n{reply}"
    );
}

#[tokio::test]
async fn well_known_client_points_at_the_public_base_url() {
    let server = Server::builder()
        .config("public_baseurl", "https://matrix.example.test/")
        .start()
        .await;

    let reply = server.client().get("/.well-known/matrix/client").await;

    let body = reply.ok();
    let base_url = body["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no m.homeserver.base_url:\n{reply}"));
    assert_eq!(
        base_url.trim_end_matches('/'),
        "https://matrix.example.test"
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "well-known must be served as JSON:\n{reply:?}\n{:?}",
        reply.headers
    );
}

#[tokio::test]
async fn well_known_client_defaults_to_the_port_actually_listened_on() {
    let server = Server::start().await;
    let port = server
        .base_url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();

    let reply = server.client().get("/.well-known/matrix/client").await;

    let body = reply.ok();
    let base_url = body["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        base_url
            .trim_end_matches('/')
            .ends_with(&format!(":{port}")),
        "a client following base_url must reach this server on port {port}:\n{reply}"
    );
}

#[tokio::test]
async fn login_well_known_matches_the_discovery_document() {
    let server = Server::builder()
        .config("public_baseurl", "https://matrix.example.test")
        .start()
        .await;
    let alice = server.register_user("alice").await;

    let login = server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await
        .ok();

    // The field is optional, but when present clients reconfigure themselves from it.
    if let Some(well_known) = login.get("well_known") {
        let discovery = server.client().get("/.well-known/matrix/client").await.ok();
        assert_eq!(well_known["m.homeserver"], discovery["m.homeserver"]);
    }
}

#[tokio::test]
async fn well_known_server_is_not_found_when_no_delegation_is_configured() {
    let server = Server::start().await;

    server
        .client()
        .get("/.well-known/matrix/server")
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn well_known_server_delegates_to_the_configured_host() {
    let server = Server::builder()
        .config("well_known.server", "matrix.example.test:443")
        .start()
        .await;

    let body = server.client().get("/.well-known/matrix/server").await.ok();

    assert_eq!(body["m.server"], "matrix.example.test:443", "{body:#}");
}

#[tokio::test]
async fn capabilities_need_an_access_token() {
    let server = Server::start().await;

    server
        .client()
        .get("/_matrix/client/v3/capabilities")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn capabilities_do_not_deny_password_change() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let reply = alice.get("/_matrix/client/v3/capabilities").await;

    // Absent means enabled; the server supports POST /account/password.
    let capabilities = &reply.ok()["capabilities"];
    assert_ne!(
        capabilities["m.change_password"]["enabled"], false,
        "password change is supported:\n{reply}"
    );
}

#[tokio::test]
async fn capabilities_advertise_room_versions() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let reply = alice.get("/_matrix/client/v3/capabilities").await;

    let capabilities = &reply.ok()["capabilities"];
    let default_version = capabilities["m.room_versions"]["default"]
        .as_str()
        .unwrap_or_else(|| panic!("no default room version:\n{reply}"));
    assert!(
        capabilities["m.room_versions"]["available"][default_version].is_string(),
        "the default room version must be among the available ones:\n{reply}"
    );
}
