//! Push rules: the server-default rule set, adding, ordering, enabling and removing one's own
//! rules, and what cannot be changed.

use complement_tests::{Server, json};

const RULES: &str = "/_matrix/client/v3/pushrules";

#[tokio::test]
async fn a_new_user_has_the_server_default_rules() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let rules = alice.get(&format!("{RULES}/")).await.ok();
    let overrides = rules["global"]["override"]
        .as_array()
        .unwrap_or_else(|| panic!("{rules:#}"));
    assert!(
        overrides
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master" && r["enabled"] == false)
    );
    let underrides = rules["global"]["underride"].as_array().unwrap();
    assert!(underrides.iter().any(|r| r["rule_id"] == ".m.rule.message"));
    assert_eq!(
        alice.get(&format!("{RULES}/global/")).await.ok(),
        rules["global"],
        "the global scope alone"
    );
}

#[tokio::test]
async fn a_keyword_rule_is_added_changed_and_removed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let rule = format!("{RULES}/global/content/medication");

    alice
        .put(
            &rule,
            json!({"pattern": "medication", "actions": ["notify", {"set_tweak": "highlight"}]}),
        )
        .await
        .ok();
    let stored = alice.get(&rule).await.ok();
    assert_eq!(stored["pattern"], "medication");
    assert_eq!(stored["enabled"], true);

    alice
        .put(&format!("{rule}/enabled"), json!({"enabled": false}))
        .await
        .ok();
    assert_eq!(
        alice.get(&format!("{rule}/enabled")).await.ok()["enabled"],
        false
    );
    alice
        .put(&format!("{rule}/actions"), json!({"actions": []}))
        .await
        .ok();
    assert_eq!(
        alice.get(&format!("{rule}/actions")).await.ok()["actions"],
        json!([])
    );

    let synced = alice.get("/_matrix/client/v3/sync").await.ok();
    let events = synced["account_data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{synced:#}"));
    let push_rules = events
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .expect("push rules reach sync");
    assert!(
        push_rules["content"]["global"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule_id"] == "medication")
    );

    alice.delete(&rule, json!({})).await.ok();
    alice.get(&rule).await.assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn server_default_rules_can_be_toggled_but_not_removed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let master = format!("{RULES}/global/override/.m.rule.master");

    alice
        .put(&format!("{master}/enabled"), json!({"enabled": true}))
        .await
        .ok();
    assert_eq!(
        alice.get(&format!("{master}/enabled")).await.ok()["enabled"],
        true
    );
    alice
        .delete(&master, json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(
            &format!("{RULES}/global/override/.my.rule"),
            json!({"actions": [], "conditions": []}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(
            &format!("{RULES}/global/room/!nowhere:localhost?before=missing"),
            json!({"actions": []}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("{RULES}/global/content/nothing"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    server
        .client()
        .get(&format!("{RULES}/"))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
