//! Application services, homeserver side: registration files checked at start-up, the
//! `as_token` acting as the bridge's bot or (`?user_id=`) as its ghosts, `?ts=`, namespace users'
//! registration and login, `M_EXCLUSIVE` for everyone else, queries to the bridge for unknown
//! users and aliases, third-party lookups, and the ping.

use std::time::Duration;

use complement_tests::{
    Server, TestAppservice, encode, json, masquerade, query, room_path, state_path, txn_id,
};

const REGISTER: &str = "/_matrix/client/v3/register";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

fn ping_path(id: &str) -> String {
    format!("/_matrix/client/v1/appservice/{id}/ping")
}

#[tokio::test]
async fn a_bad_registration_file_stops_start_up_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-bridge.yaml");
    std::fs::write(
        &path,
        "id: broken\nurl: null\nas_token: a\nsender_localpart: bot\nnamespaces: {}\n",
    )
    .unwrap();

    let refused = Server::builder()
        .config(
            "appservice_registrations",
            vec![path.to_string_lossy().into_owned()],
        )
        .try_start()
        .await;

    let error = refused.err().expect("serve must refuse the registration");
    assert!(
        error.status.is_some_and(|s| !s.success()),
        "serve must exit non-zero:\n{error}"
    );
    assert!(
        error.stderr.contains("broken-bridge.yaml") && error.stderr.contains("hs_token"),
        "the message must name the file and the field:\n{error}"
    );
}

#[tokio::test]
async fn the_bridge_acts_as_its_bot_and_as_the_ghosts_it_registered() {
    let bridge = TestAppservice::start("whatsapp").await;
    let server = bridge.start_server().await;
    let alice = server.register_user("alice").await;
    let as_client = bridge.client();

    // Without user_id the as_token is the bot, registered at start-up.
    let me = as_client.get(WHOAMI).await.ok();
    assert_eq!(me["user_id"], "@_whatsapp_bot:localhost");

    // A ghost is registered without a password, and then acted as.
    let ghost = bridge.register_ghost("_whatsapp_4477").await;
    assert_eq!(ghost, "@_whatsapp_4477:localhost");
    let me = as_client.get(&masquerade(WHOAMI, &ghost)).await.ok();
    assert_eq!(me["user_id"], ghost.as_str());

    // Not in the namespace, or not registered: refused.
    as_client
        .get(&masquerade(WHOAMI, &alice.user_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
    as_client
        .get(&masquerade(WHOAMI, "@_whatsapp_never:localhost"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Without a device (no device masquerading), what belongs to a device is refused clearly.
    let to_device = json!({"messages": {&alice.user_id: {"*": {"hello": "there"}}}});
    as_client
        .put("/_matrix/client/v3/sendToDevice/m.test/t1", to_device)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let pusher = json!({
        "kind": "http", "app_id": "care.plexus.test", "pushkey": "k", "app_display_name": "t",
        "device_display_name": "d", "lang": "en", "data": {"url": "https://push.example/_matrix/push/v1/notify"},
    });
    as_client
        .post("/_matrix/client/v3/pushers/set", pusher)
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // The ghost creates a room and speaks with the bridged message's own timestamp.
    let created = as_client
        .post(
            &masquerade("/_matrix/client/v3/createRoom", &ghost),
            json!({"preset": "public_chat"}),
        )
        .await
        .ok();
    let room_id = created["room_id"].as_str().unwrap().to_owned();
    alice.join(&room_id).await;
    let ts = "1600000000000";
    let send = format!(
        "{}{}",
        room_path(&room_id, &format!("send/m.room.message/{}", txn_id())),
        query(&[("ts", ts)])
    );
    let sent = as_client
        .put(
            &masquerade(&send, &ghost),
            json!({"msgtype": "m.text", "body": "sent yesterday"}),
        )
        .await
        .ok();
    let event = alice
        .event(&room_id, sent["event_id"].as_str().unwrap())
        .await;
    assert_eq!(event["sender"], ghost.as_str());
    assert_eq!(event["origin_server_ts"], 1_600_000_000_000u64);

    let state = format!(
        "{}{}",
        state_path(&room_id, "m.room.topic", ""),
        query(&[("ts", "1600000000500")])
    );
    let set = as_client
        .put(&masquerade(&state, &ghost), json!({"topic": "family"}))
        .await
        .ok();
    let event = alice
        .event(&room_id, set["event_id"].as_str().unwrap())
        .await;
    assert_eq!(event["origin_server_ts"], 1_600_000_000_500u64);

    // The ghost syncs without a device of its own.
    let sync = as_client
        .get(&masquerade("/_matrix/client/v3/sync?timeout=0", &ghost))
        .await
        .ok();
    assert!(sync["rooms"]["join"][&room_id].is_object(), "{sync}");

    // `ts` from anyone but an appservice is ignored.
    let send = format!(
        "{}{}",
        room_path(&room_id, &format!("send/m.room.message/{}", txn_id())),
        query(&[("ts", ts)])
    );
    let sent = alice
        .put(&send, json!({"msgtype": "m.text", "body": "now"}))
        .await
        .ok();
    let event = alice
        .event(&room_id, sent["event_id"].as_str().unwrap())
        .await;
    assert_ne!(event["origin_server_ts"], 1_600_000_000_000u64);
}

#[tokio::test]
async fn namespace_users_are_registered_and_logged_in_only_by_their_bridge() {
    let bridge = TestAppservice::builder("whatsapp")
        .device_masquerading(true)
        .start()
        .await;
    let other = TestAppservice::start("discord").await;
    let server = TestAppservice::configure(Server::builder(), &[&bridge, &other])
        .start()
        .await;
    bridge.attach(&server);
    other.attach(&server);
    let as_client = bridge.client();

    // Outside its namespace, or in another bridge's exclusive namespace: M_EXCLUSIVE.
    as_client
        .post(
            REGISTER,
            json!({"type": "m.login.application_service", "username": "nurse"}),
        )
        .await
        .assert_error(400, "M_EXCLUSIVE");
    other
        .client()
        .post(
            REGISTER,
            json!({"type": "m.login.application_service", "username": "_whatsapp_1"}),
        )
        .await
        .assert_error(400, "M_EXCLUSIVE");
    // The appservice login type needs the as_token.
    server
        .client()
        .post(
            REGISTER,
            json!({"type": "m.login.application_service", "username": "_whatsapp_1"}),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    // Without inhibit_login the ghost gets a session of its own.
    let registered = as_client
        .post(
            REGISTER,
            json!({"type": "m.login.application_service", "username": "_whatsapp_1"}),
        )
        .await
        .ok();
    let token = registered["access_token"].as_str().unwrap();
    let device = registered["device_id"].as_str().unwrap().to_owned();
    let me = server.client().with_token(token).get(WHOAMI).await.ok();
    assert_eq!(me["user_id"], "@_whatsapp_1:localhost");

    // The bridge logs its ghost in.
    let login = json!({
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "_whatsapp_1"},
    });
    let session = as_client
        .post("/_matrix/client/v3/login", login.clone())
        .await
        .ok();
    assert_eq!(session["user_id"], "@_whatsapp_1:localhost");
    server
        .client()
        .post("/_matrix/client/v3/login", login)
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    // Device masquerading: one of the ghost's devices, or M_UNKNOWN_DEVICE.
    let ghost = "@_whatsapp_1:localhost";
    let with_device = format!("{}&device_id={}", masquerade(WHOAMI, ghost), device);
    let me = as_client.get(&with_device).await.ok();
    assert_eq!(me["device_id"], device.as_str());
    let unstable = format!(
        "{}&org.matrix.msc3202.device_id={}",
        masquerade(WHOAMI, ghost),
        device
    );
    assert_eq!(
        as_client.get(&unstable).await.ok()["device_id"],
        device.as_str()
    );
    as_client
        .get(&format!("{}&device_id=NOPE", masquerade(WHOAMI, ghost)))
        .await
        .assert_error(400, "M_UNKNOWN_DEVICE");
}

#[tokio::test]
async fn nobody_else_takes_a_user_or_an_alias_of_an_exclusive_namespace() {
    let bridge = TestAppservice::builder("whatsapp")
        .users("@wa_.*", true)
        .start()
        .await;
    let server = bridge.start_server().await;
    let alice = server.register_user("alice").await;

    for name in ["_whatsapp_x", "wa_1", "_whatsapp_bot"] {
        server
            .client()
            .register_dummy(json!({"username": name, "password": "a-long-password"}))
            .await
            .labelled(name)
            .assert_error(400, "M_EXCLUSIVE");
    }
    server
        .client()
        .get(&format!(
            "/_matrix/client/v3/register/available{}",
            query(&[("username", "wa_2")])
        ))
        .await
        .assert_error(400, "M_EXCLUSIVE");

    alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"room_alias_name": "_whatsapp_family"}),
        )
        .await
        .assert_error(400, "M_EXCLUSIVE");
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    let alias_path = |alias: &str| format!("/_matrix/client/v3/directory/room/{}", encode(alias));
    alice
        .put(
            &alias_path("#_whatsapp_family:localhost"),
            json!({"room_id": room_id}),
        )
        .await
        .assert_error(400, "M_EXCLUSIVE");

    // The bridge may give its own aliases, and only those.
    let bot = bridge.client();
    bot.post(
        &format!("/_matrix/client/v3/join/{}", encode(&room_id)),
        json!({}),
    )
    .await
    .ok();
    bot.put(
        &alias_path("#_whatsapp_family:localhost"),
        json!({"room_id": room_id}),
    )
    .await
    .ok();
    bot.put(
        &alias_path("#family:localhost"),
        json!({"room_id": room_id}),
    )
    .await
    .assert_error(400, "M_EXCLUSIVE");
}

#[tokio::test]
async fn unknown_aliases_and_users_of_a_namespace_are_asked_of_the_bridge() {
    let bridge = TestAppservice::start("whatsapp").await;
    let server = bridge.start_server().await;
    let alice = server.register_user("alice").await;

    // The bridge creates the room behind the alias when asked, as its bot.
    bridge.create_rooms_for_aliases("#_whatsapp_group");
    let joined = alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{}",
                encode("#_whatsapp_group1:localhost")
            ),
            json!({}),
        )
        .await
        .ok();
    assert!(joined["room_id"].as_str().unwrap().starts_with('!'));
    let queries: Vec<_> = bridge
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/_matrix/app/v1/rooms/"))
        .collect();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(
        queries[0].path,
        "/_matrix/app/v1/rooms/#_whatsapp_group1:localhost"
    );
    assert_eq!(
        queries[0].authorization.as_deref(),
        Some("Bearer hs-token-whatsapp")
    );
    alice
        .post(
            &format!(
                "/_matrix/client/v3/join/{}",
                encode("#_whatsapp_nothing:localhost")
            ),
            json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Aliases outside every namespace are never asked about.
    alice
        .post(
            &format!("/_matrix/client/v3/join/{}", encode("#elsewhere:localhost")),
            json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert!(
        !bridge
            .requests()
            .iter()
            .any(|r| r.path.contains("elsewhere")),
        "only namespace aliases are asked about"
    );

    // A ghost the bridge knows comes into being when someone looks it up.
    let registrar = bridge.client();
    bridge.on_user_query(move |user_id: String| {
        let registrar = registrar.clone();
        async move {
            let localpart = user_id
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or("");
            registrar
                .post(
                    REGISTER,
                    json!({
                        "type": "m.login.application_service",
                        "username": localpart,
                        "inhibit_login": true,
                    }),
                )
                .await
                .status
        }
    });
    let profile = |user: &str| format!("/_matrix/client/v3/profile/{}", encode(user));
    alice.get(&profile("@_whatsapp_77:localhost")).await.ok();
    assert!(
        bridge
            .requests()
            .iter()
            .any(|r| r.path == "/_matrix/app/v1/users/@_whatsapp_77:localhost")
    );
    let me = bridge
        .client()
        .get(&masquerade(WHOAMI, "@_whatsapp_77:localhost"))
        .await
        .ok();
    assert_eq!(me["user_id"], "@_whatsapp_77:localhost");

    // The same for a ghost invited when a room is created: asked first, then invited.
    let room = alice
        .create_room(json!({"invite": ["@_whatsapp_78:localhost"]}))
        .await;
    assert!(
        bridge
            .requests()
            .iter()
            .any(|r| r.path == "/_matrix/app/v1/users/@_whatsapp_78:localhost")
    );
    let member = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(&room),
            encode("@_whatsapp_78:localhost")
        ))
        .await
        .ok();
    assert_eq!(member["membership"], "invite");
}

#[tokio::test]
async fn the_ping_reaches_the_bridge_and_reports_its_failures() {
    let bridge = TestAppservice::start("whatsapp").await;
    let silent = TestAppservice::builder("silent").url_null().start().await;
    let down_addr = TestAppservice::reserve_address().await;
    let down = TestAppservice::start_down(TestAppservice::builder("down"), down_addr).await;
    let server = TestAppservice::configure(Server::builder(), &[&bridge, &silent, &down])
        .start()
        .await;
    for appservice in [&bridge, &silent, &down] {
        appservice.attach(&server);
    }
    let alice = server.register_user("alice").await;

    let pong = bridge
        .client()
        .post(&ping_path("whatsapp"), json!({"transaction_id": "ping-1"}))
        .await
        .ok();
    assert!(pong["duration_ms"].is_u64(), "{pong}");
    let pings: Vec<_> = bridge
        .requests()
        .into_iter()
        .filter(|r| r.path == "/_matrix/app/v1/ping")
        .collect();
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].method, "POST");
    assert_eq!(pings[0].body["transaction_id"], "ping-1");

    // Only the appservice itself may ask.
    bridge
        .client()
        .post(&ping_path("silent"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .post(&ping_path("whatsapp"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    server
        .client()
        .post(&ping_path("whatsapp"), json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    silent
        .client()
        .post(&ping_path("silent"), json!({}))
        .await
        .assert_error(400, "M_URL_NOT_SET");
    down.client()
        .post(&ping_path("down"), json!({}))
        .await
        .assert_error(502, "M_CONNECTION_FAILED");

    bridge.set_ping(500, Duration::ZERO);
    let failed = bridge
        .client()
        .post(&ping_path("whatsapp"), json!({}))
        .await;
    failed.assert_error(502, "M_BAD_STATUS");
    assert_eq!(failed.body["status"], 500);
    assert!(
        failed.body["body"]
            .as_str()
            .unwrap()
            .contains("ping refused"),
        "{failed}"
    );

    bridge.set_ping(200, Duration::from_secs(12));
    bridge
        .client()
        .post(&ping_path("whatsapp"), json!({}))
        .await
        .assert_error(504, "M_CONNECTION_TIMEOUT");
}

#[tokio::test]
async fn third_party_lookups_are_answered_by_the_bridges_of_the_protocol() {
    let bridge = TestAppservice::builder("whatsapp")
        .protocol("whatsapp")
        .start()
        .await;
    let server = bridge.start_server().await;
    let alice = server.register_user("alice").await;
    bridge.set_thirdparty(
        "protocol/whatsapp",
        json!({
            "user_fields": ["phone"],
            "location_fields": ["chat"],
            "icon": "mxc://localhost/wa",
            "field_types": {
                "phone": {"regexp": "\\+[0-9]+", "placeholder": "+4477"},
                "chat": {"regexp": ".*", "placeholder": "family"},
            },
            "instances": [{"desc": "WhatsApp", "fields": {}, "network_id": "wa"}],
        }),
    );
    bridge.set_thirdparty(
        "location/whatsapp?chat=family",
        json!([{"alias": "#_whatsapp_family:localhost", "protocol": "whatsapp", "fields": {"chat": "family"}}]),
    );
    bridge.set_thirdparty(
        "user?userid=%40_whatsapp_1%3Alocalhost",
        json!([{"userid": "@_whatsapp_1:localhost", "protocol": "whatsapp", "fields": {"phone": "+4477"}}]),
    );

    let protocols = alice
        .get("/_matrix/client/v3/thirdparty/protocols")
        .await
        .ok();
    let whatsapp = &protocols["whatsapp"];
    assert_eq!(whatsapp["location_fields"], json!(["chat"]));
    assert_eq!(whatsapp["instances"][0]["network_id"], "wa");
    assert!(
        whatsapp["instances"][0]["instance_id"].is_string(),
        "{protocols}"
    );
    alice
        .get("/_matrix/client/v3/thirdparty/protocol/whatsapp")
        .await
        .ok();
    alice
        .get("/_matrix/client/v3/thirdparty/protocol/irc")
        .await
        .assert_error(404, "M_NOT_FOUND");

    let locations = alice
        .get("/_matrix/client/v3/thirdparty/location/whatsapp?chat=family")
        .await
        .ok();
    assert_eq!(locations[0]["alias"], "#_whatsapp_family:localhost");
    let users = alice
        .get(&format!(
            "/_matrix/client/v3/thirdparty/user{}",
            query(&[("userid", "@_whatsapp_1:localhost")])
        ))
        .await
        .ok();
    assert_eq!(users[0]["fields"]["phone"], "+4477");

    // The bridge lists a room in the directory.
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    let list = format!(
        "/_matrix/client/v3/directory/list/appservice/wa/{}",
        encode(&room_id)
    );
    alice
        .put(&list, json!({"visibility": "public"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bridge
        .client()
        .put(&list, json!({"visibility": "public"}))
        .await
        .ok();
    let public = alice.get("/_matrix/client/v3/publicRooms").await.ok();
    assert!(
        public["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == room_id.as_str()),
        "{public}"
    );
}

#[tokio::test]
async fn ghosts_of_a_bridge_without_rate_limits_are_not_limited() {
    let bridge = TestAppservice::start("whatsapp").await;
    let server = TestAppservice::configure(Server::builder(), &[&bridge])
        .rate_limit("message", 0.1, 1)
        .start()
        .await;
    bridge.attach(&server);
    let alice = server.register_user("alice").await;
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    let ghost = bridge.register_ghost("_whatsapp_5").await;
    bridge
        .client()
        .post(
            &masquerade(
                &format!("/_matrix/client/v3/join/{}", encode(&room_id)),
                &ghost,
            ),
            json!({}),
        )
        .await
        .ok();

    for i in 0..5 {
        let send = room_path(&room_id, &format!("send/m.room.message/{}", txn_id()));
        bridge
            .client()
            .put(
                &masquerade(&send, &ghost),
                json!({"msgtype": "m.text", "body": format!("bridged {i}")}),
            )
            .await
            .ok();
    }
    alice.send_message(&room_id, "one").await;
    let send = room_path(&room_id, &format!("send/m.room.message/{}", txn_id()));
    alice
        .put(&send, json!({"msgtype": "m.text", "body": "two"}))
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
}
