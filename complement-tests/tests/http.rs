//! Behaviour of the HTTP layer around every endpoint: CORS headers, the request body size limit,
//! and the Prometheus `/metrics` endpoint.

use complement_tests::{Method, Reply, Server, json};

fn header_list(reply: &Reply, name: &str) -> Vec<String> {
    let value = reply
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header:\n{reply}\n{:?}", reply.headers));
    value
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn cors_preflight_allows_matrix_clients_in_browsers() {
    let server = Server::start().await;

    let reply = server
        .client()
        .request(Method::OPTIONS, "/_matrix/client/v3/login")
        .header("Origin", "https://app.example.test")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await;

    assert!(
        (200..300).contains(&reply.status),
        "preflight must succeed:\n{reply}"
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("*"),
        "{:?}",
        reply.headers
    );
    let methods = header_list(&reply, "access-control-allow-methods");
    for method in ["get", "post", "put", "delete", "options"] {
        assert!(
            methods.iter().any(|m| m == method),
            "{method} not allowed: {methods:?}"
        );
    }
    let headers = header_list(&reply, "access-control-allow-headers");
    for header in ["x-requested-with", "content-type", "authorization"] {
        assert!(
            headers.iter().any(|h| h == header),
            "{header} not allowed: {headers:?}"
        );
    }
}

#[tokio::test]
async fn every_response_allows_any_origin() {
    let server = Server::start().await;
    let client = server.client();

    let replies = [
        client.get("/_matrix/client/versions").await,
        client
            .request(Method::GET, "/_matrix/client/versions")
            .header("Origin", "https://app.example.test")
            .send()
            .await,
        client.get("/_matrix/client/v3/no_such_endpoint").await,
        client.get("/_matrix/client/v3/account/whoami").await,
        client
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password"}),
            )
            .await,
    ];
    for reply in replies {
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{reply}\n{:?}",
            reply.headers
        );
    }
}

#[tokio::test]
async fn bodies_over_the_configured_limit_are_too_large() {
    let server = Server::builder()
        .config("limits.max_request_bytes", 1024)
        .start()
        .await;
    let alice = server.register_user("alice").await;

    let huge_name = "A".repeat(4096);
    alice
        .put(
            &alice.profile_path("displayname"),
            json!({"displayname": huge_name}),
        )
        .await
        .assert_error(413, "M_TOO_LARGE");
    let huge_login = json!({"type": "m.login.password", "password": "x".repeat(4096)});
    server
        .client()
        .post("/_matrix/client/v3/login", huge_login)
        .await
        .assert_error(413, "M_TOO_LARGE");

    alice.set_displayname("Alice").await;
    assert_eq!(alice.displayname().await.as_deref(), Some("Alice"));
}

/// The summed value of every counter family whose name mentions requests.
fn request_counter_total(metrics: &str) -> f64 {
    let families: Vec<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(name, kind)| kind.trim() == "counter" && name.contains("request"))
        .map(|(name, _)| name)
        .collect();
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let name = series.split('{').next().unwrap_or_default();
            families
                .iter()
                .any(|family| name == *family || name == format!("{family}_total"))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests() {
    let server = Server::builder()
        .config("metrics.enabled", true)
        .start()
        .await;
    let client = server.client();
    client.get("/_matrix/client/versions").await.ok();

    let before = client.get("/metrics").await;
    before.assert_status(200);
    assert!(
        before
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        before.headers
    );
    let before_total = request_counter_total(&before.text);
    assert!(
        before_total >= 1.0,
        "no request counter in\n{}",
        before.text
    );
    for _ in 0..5 {
        client.get("/_matrix/client/versions").await.ok();
    }

    let after = client.get("/metrics").await;
    let after_total = request_counter_total(&after.text);
    assert!(
        after_total >= before_total + 5.0,
        "five requests, counters went {before_total} -> {after_total}"
    );
}

#[tokio::test]
async fn metrics_are_not_served_when_disabled() {
    let server = Server::builder()
        .config("metrics.enabled", false)
        .start()
        .await;

    let reply = server.client().get("/metrics").await;

    reply.assert_status(404);
}
