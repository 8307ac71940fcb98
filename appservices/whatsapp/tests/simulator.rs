//! The simulator driven over HTTP as the bridge will drive it: documented request shapes
//! accepted, malformed ones refused with the documented error objects, the token, the 24-hour
//! window and the rate limits enforced, and media round trips byte-identical. Webhooks and the
//! rest of the inbound side are in `simulator_inbound.rs`.

mod support;

use serde_json::{Value, json};
use support::{CONTACT, Fixture, base, error_code};

#[tokio::test]
async fn every_documented_send_shape_is_accepted() {
    let f = Fixture::new().await;
    let inbound = f.contact_writes("hello").await;
    let (status, media) = f.upload(b"\x89PNG fake", "image/png", "a.png").await;
    assert_eq!(status, 200, "{media}");
    let media_id = media["id"].as_str().unwrap();
    let bodies = [
        json!({"type": "text", "text": {"preview_url": false, "body": "*Hi* there"}}),
        json!({"type": "text", "text": {"body": "a reply"}, "context": {"message_id": inbound}}),
        json!({"type": "image", "image": {"id": media_id, "caption": "pic"}}),
        json!({"type": "image", "image": {"link": "https://example.org/a.png"}}),
        json!({"type": "document", "document": {"id": media_id, "filename": "a.png", "caption": "doc"}}),
        json!({"type": "audio", "audio": {"id": media_id}}),
        json!({"type": "video", "video": {"link": "https://example.org/v.mp4", "caption": "v"}}),
        json!({"type": "sticker", "sticker": {"id": media_id}}),
        json!({"type": "location", "location": {"latitude": 51.5, "longitude": -0.12, "name": "Office", "address": "1 Road"}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ada L", "first_name": "Ada"}, "phones": [{"phone": "+441234", "type": "WORK"}]}]}),
        json!({"type": "reaction", "reaction": {"message_id": inbound, "emoji": "👍"}}),
        json!({"type": "reaction", "reaction": {"message_id": inbound, "emoji": ""}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}}, {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Pick"}, "action": {"button": "Options", "sections": [
            {"title": "S", "rows": [{"id": "r1", "title": "One", "description": "first"}]}]}}}),
        json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
    ];
    for extra in bodies {
        let (status, answer) = f.send(base(extra.clone())).await;
        assert_eq!(status, 200, "{extra} → {answer}");
        assert_eq!(answer["messaging_product"], "whatsapp");
        assert_eq!(
            answer["contacts"],
            json!([{"input": format!("+{CONTACT}"), "wa_id": CONTACT}])
        );
        assert!(
            answer["messages"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("wamid.HBgL"),
            "{answer}"
        );
    }
    let (status, answer) = f
        .send(json!({"messaging_product": "whatsapp", "status": "read", "message_id": inbound, "typing_indicator": {"type": "text"}}))
        .await;
    assert_eq!((status, answer), (200, json!({"success": true})));

    // The control API lists every call with its exact body.
    let calls = f.control(reqwest::Method::GET, "calls", json!(null)).await;
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 17, "upload, 15 sends and the read mark");
    assert_eq!(
        calls[1]["body"],
        base(json!({"type": "text", "text": {"preview_url": false, "body": "*Hi* there"}}))
    );
    assert_eq!(calls[1]["authorization"], "Bearer good-token");
    let messages = f
        .control(reqwest::Method::GET, "messages", json!(null))
        .await;
    assert!(
        messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == inbound.as_str() && m["read"] == true)
    );
}

#[tokio::test]
async fn malformed_requests_get_the_documented_errors() {
    let f = Fixture::new().await;
    let inbound = f.contact_writes("hello").await;
    let cases = [
        (
            json!({"to": CONTACT, "type": "text", "text": {"body": "x"}}),
            100,
        ),
        (
            json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
            100,
        ),
        (base(json!({"type": "image"})), 131008),
        (
            base(json!({"type": "image", "image": {"caption": "no media"}})),
            131008,
        ),
        (
            base(json!({"type": "image", "image": {"id": "1", "link": "https://a/b"}})),
            131009,
        ),
        (
            base(json!({"type": "image", "image": {"id": "999999999999999"}})),
            131009,
        ),
        (
            base(
                json!({"type": "text", "text": {"body": "x"}, "context": {"message_id": "wamid.nope"}}),
            ),
            131009,
        ),
        (
            base(
                json!({"type": "reaction", "reaction": {"message_id": "wamid.nope", "emoji": "👍"}}),
            ),
            131009,
        ),
        (base(json!({"type": "fax", "fax": {}})), 100),
        (base(json!({"type": "text", "text": {"body": ""}})), 131009),
        (
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.unknown"}),
            131009,
        ),
        (
            base(
                json!({"type": "template", "template": {"name": "no_such_template", "language": {"code": "en_US"}}}),
            ),
            132001,
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = f.send(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body} → {answer}");
        if code > 130000 {
            assert_eq!(
                answer["error"]["error_data"]["messaging_product"], "whatsapp",
                "{answer}"
            );
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("(#{code}) "))
            );
        }
    }
    // A message must not reply to another contact's message.
    let (status, _) = f.send(json!({"messaging_product": "whatsapp", "to": "447700900123", "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}, "context": {"message_id": inbound}})).await;
    assert_eq!(status, 400);

    let raw = f
        .http
        .post(f.messages_url())
        .bearer_auth("good-token")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(error_code(&raw.json().await.unwrap()), 100);

    let other = f
        .http
        .post(f.graph("999/messages"))
        .bearer_auth("good-token")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let answer: Value = other.json().await.unwrap();
    assert_eq!(
        (
            error_code(&answer),
            answer["error"]["error_subcode"].as_u64()
        ),
        (100, Some(33))
    );

    let bad_version = f
        .http
        .post(format!(
            "{}/latest/{}/messages",
            f.sim.url(),
            f.sim.config().phone_number_id
        ))
        .bearer_auth("good-token")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);
    assert_eq!(error_code(&bad_version.json().await.unwrap()), 2500);
}

#[tokio::test]
async fn a_bad_token_is_refused_with_190() {
    let f = Fixture::new().await;
    f.contact_writes("hello").await;
    let wrong = f
        .http
        .post(f.messages_url())
        .bearer_auth("stolen")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_code(&wrong.json().await.unwrap()), 190);
    let none = f
        .http
        .post(f.messages_url())
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 400);
    assert_eq!(error_code(&none.json().await.unwrap()), 2500);
    let media = f
        .http
        .get(f.graph("123456789012345"))
        .bearer_auth("stolen")
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 401);
    // Nothing was sent.
    let messages = f
        .control(reqwest::Method::GET, "messages", json!(null))
        .await;
    assert_eq!(
        messages.as_array().unwrap().len(),
        1,
        "only the inbound message"
    );
}

#[tokio::test]
async fn the_24_hour_window_is_enforced_and_templates_pass_outside_it() {
    let f = Fixture::new().await;
    f.control(
        reqwest::Method::POST,
        "contacts",
        json!({"wa_id": CONTACT, "name": "Sheena"}),
    )
    .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "hello?"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 131047), "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "(#131047) Re-engagement message"
    );
    let template = json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let (status, answer) = f.send(base(template.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["messages"][0]["message_status"], "accepted");

    f.contact_writes("hi").await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "welcome"}}))).await.0,
        200
    );
    f.control(
        reqwest::Method::POST,
        "clock",
        json!({"advance": 23 * 3600}),
    )
    .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "still open"}})))
            .await
            .0,
        200
    );
    f.control(reqwest::Method::POST, "clock", json!({"advance": 3600}))
        .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "too late"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 131047));
    assert_eq!(f.send(base(template)).await.0, 200);

    let window = f
        .control(
            reqwest::Method::PUT,
            &format!("contacts/{CONTACT}/window"),
            json!({"open": true}),
        )
        .await;
    assert_eq!(window["window_open"], true);
    assert_eq!(
        f.send(base(json!({"text": {"body": "open again"}})))
            .await
            .0,
        200
    );
    f.control(
        reqwest::Method::PUT,
        &format!("contacts/{CONTACT}/window"),
        json!({"open": false}),
    )
    .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "closed"}}))).await.0,
        400
    );
}

#[tokio::test]
async fn rate_limits_answer_like_the_cloud_api() {
    let f = Fixture::new().await;
    f.contact_writes("hello").await;
    f.control(reqwest::Method::POST, "rate-limit", json!({"code": 130429}))
        .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "x"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 130429));
    assert_eq!(answer["error"]["message"], "(#130429) Rate limit hit");
    f.control(
        reqwest::Method::POST,
        "rate-limit",
        json!({"code": 131056, "count": 2}),
    )
    .await;
    for _ in 0..2 {
        let (status, answer) = f.send(base(json!({"text": {"body": "x"}}))).await;
        assert_eq!((status, error_code(&answer)), (400, 131056));
    }
    // Forced errors are used up; then the real pair rate applies: a burst of 45, then one per 6 s.
    for i in 0..45 {
        let (status, answer) = f
            .send(base(json!({"text": {"body": format!("burst {i}")}})))
            .await;
        assert_eq!(status, 200, "message {i}: {answer}");
    }
    let (status, answer) = f
        .send(base(json!({"text": {"body": "one too many"}})))
        .await;
    assert_eq!((status, error_code(&answer)), (400, 131056), "{answer}");
    f.control(reqwest::Method::POST, "clock", json!({"advance": 6}))
        .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "after waiting"}})))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn media_round_trips_byte_identical() {
    let f = Fixture::new().await;
    let bytes: Vec<u8> = (0..=255u8)
        .cycle()
        .take(70_000)
        .chain(*b"\r\n--b0und\r\n")
        .collect();
    let (status, upload) = f.upload(&bytes, "application/pdf", "report.pdf").await;
    assert_eq!(status, 200, "{upload}");
    let id = upload["id"].as_str().unwrap();
    assert!(id.bytes().all(|b| b.is_ascii_digit()));

    let (_, info) = f.node(id).await;
    assert_eq!(info["messaging_product"], "whatsapp");
    assert_eq!(info["id"], id);
    assert_eq!(info["mime_type"], "application/pdf");
    assert_eq!(info["file_size"], bytes.len().to_string());
    use sha2::Digest;
    assert_eq!(info["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let url = info["url"].as_str().unwrap();

    let anonymous = f.http.get(url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let download = f
        .http
        .get(url)
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let stored = f
        .http
        .get(format!("{}/_sim/media/{id}", f.sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The URL lasts five minutes; a fresh lookup gives a new one.
    f.control(reqwest::Method::POST, "clock", json!({"advance": 301}))
        .await;
    assert_eq!(
        f.http
            .get(url)
            .bearer_auth("good-token")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let (status, refused) = f.upload(b"GIF89a", "image/gif", "a.gif").await;
    assert_eq!((status, error_code(&refused)), (400, 131053));

    let deleted: Value = f
        .http
        .delete(f.graph(id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"success": true}));
    let (status, gone) = f.node(id).await;
    assert_eq!(status, 400);
    assert_eq!(
        (error_code(&gone), gone["error"]["error_subcode"].as_u64()),
        (100, Some(33))
    );
}
