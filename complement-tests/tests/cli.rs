//! The `plexus` command line: `generate-config`, `register-user`, command-line overrides of the
//! config, and refusal of bad config files.

use std::ffi::OsString;

use complement_tests::{CliOutput, Server, Value, json, run_plexus};

/// Runs `plexus register-user --config <server's config> NAME PASSWORD [--admin]`.
async fn register_user_cli(server: &Server, name: &str, password: &str, admin: bool) -> CliOutput {
    let mut args: Vec<OsString> = vec![
        "register-user".into(),
        "--config".into(),
        server.config_path().into(),
    ];
    args.extend([name.into(), password.into()]);
    if admin {
        args.push("--admin".into());
    }
    run_plexus(args).await
}

async fn login(server: &Server, user: &str, password: &str) -> Value {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    });
    server
        .client()
        .post("/_matrix/client/v3/login", body)
        .await
        .ok()
}

#[tokio::test]
async fn generated_config_is_accepted_by_serve() {
    let generated = run_plexus(["generate-config"]).await;
    generated.assert_success();
    assert!(
        generated.stdout.contains("server_name"),
        "the config names the server:\n{}",
        generated.stdout
    );
    assert!(
        generated
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with('#')),
        "the config is commented"
    );

    let server = Server::builder()
        .raw_config(&generated.stdout)
        .start()
        .await;

    server.client().get("/_matrix/client/versions").await.ok();
}

#[tokio::test]
async fn register_user_creates_an_account_while_the_server_runs() {
    let server = Server::start().await;

    register_user_cli(&server, "carol", "carol-password", false)
        .await
        .assert_success();

    let carol = login(&server, "carol", "carol-password").await;
    assert_eq!(carol["user_id"], "@carol:localhost");
}

#[tokio::test]
async fn register_user_works_while_the_server_is_stopped() {
    let mut server = Server::start().await;
    server.stop().await;

    register_user_cli(&server, "carol", "carol-password", false)
        .await
        .assert_success();
    server.restart().await;

    login(&server, "carol", "carol-password").await;
}

#[tokio::test]
async fn register_user_with_admin_grants_the_admin_api() {
    let server = Server::start().await;
    register_user_cli(&server, "root", "root-password", true)
        .await
        .assert_success();
    register_user_cli(&server, "plain", "plain-password", false)
        .await
        .assert_success();

    let root = login(&server, "root", "root-password").await;
    let plain = login(&server, "plain", "plain-password").await;

    let tokens = "/_synapse/admin/v1/registration_tokens";
    let as_user = |session: &Value| {
        server
            .client()
            .with_token(session["access_token"].as_str().unwrap())
    };
    as_user(&root).get(tokens).await.ok();
    as_user(&plain)
        .get(tokens)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn register_user_refuses_a_taken_name() {
    let server = Server::start().await;
    server.register_user("carol").await;

    let output = register_user_cli(&server, "carol", "other-password", false).await;

    assert!(
        !output.status.success(),
        "registering a taken name must fail:\n{output:?}"
    );
    login(&server, "carol", &Server::default_password("carol")).await;
}

#[tokio::test]
async fn command_line_overrides_the_config_server_name() {
    let server = Server::builder()
        .arg("--server-name")
        .arg("cli.localhost")
        .start()
        .await;

    let reply = server
        .client()
        .register_dummy(json!({"username": "dora", "password": "dora-password"}))
        .await;

    assert_eq!(reply.ok()["user_id"], "@dora:cli.localhost");
}

#[tokio::test]
async fn an_unknown_config_key_is_refused_by_name() {
    let refused = Server::builder()
        .config("registration.surprise_key", true)
        .try_start()
        .await;

    let error = refused.err().expect("serve must refuse an unknown key");
    assert!(
        error.status.is_some_and(|s| !s.success()),
        "serve must exit non-zero:\n{error}"
    );
    assert!(
        error.stderr.contains("surprise_key"),
        "the message must name the key:\n{error}"
    );
}

#[tokio::test]
async fn a_config_value_of_the_wrong_type_is_refused_by_name() {
    let refused = Server::builder()
        .config("registration.password_min_length", "eight")
        .try_start()
        .await;

    let error = refused.err().expect("serve must refuse a bad value");
    assert!(
        error.status.is_some_and(|s| !s.success()),
        "serve must exit non-zero:\n{error}"
    );
    assert!(
        error.stderr.contains("password_min_length"),
        "the message must name the key:\n{error}"
    );
}
