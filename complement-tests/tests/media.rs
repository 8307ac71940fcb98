//! The media repository, told from a client's side: files go up and come back byte for byte
//! (empty, small, 50 MB), with headers that keep browsers safe and HTTP ranges; thumbnails come in
//! the sizes and methods asked; asynchronous uploads go through their life cycle; legacy
//! unauthenticated downloads stay off unless configured; operators quarantine and delete; and
//! every bad input gets its Matrix error with nothing left behind.

#[path = "media/support.rs"]
mod support;

use std::time::Duration;

use complement_tests::{Server, encode, json};
use support::*;

#[tokio::test]
async fn files_come_back_byte_for_byte_with_safe_headers() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);

    let config = media.get("/_matrix/client/v1/media/config").await;
    assert_eq!(config.status, 200);
    assert!(config.json()["m.upload.size"].as_u64().unwrap() >= 50_000_000);

    let small = b"Hello, care team!".to_vec();
    let mxc = media
        .upload(small.clone(), "text/plain", Some("notes.txt"))
        .await;
    assert!(mxc.starts_with("mxc://localhost/"), "{mxc}");
    let answer = media.download(&mxc).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.bytes, small);
    assert_eq!(answer.header("content-type"), "text/plain");
    assert_eq!(
        answer.header("content-disposition"),
        "inline; filename=\"notes.txt\""
    );
    assert!(
        answer
            .header("content-security-policy")
            .starts_with("sandbox;")
    );
    assert_eq!(
        answer.header("cross-origin-resource-policy"),
        "cross-origin"
    );

    // The file name in the path wins, and is encoded safely.
    let named = media
        .get(&format!(
            "/_matrix/client/v1/media/download/{}/{}",
            mxc_path(&mxc),
            encode("résumé \"final\".txt")
        ))
        .await;
    assert_eq!(named.bytes, small);
    assert_eq!(
        named.header("content-disposition"),
        "inline; filename=\"r_sum_ _final_.txt\"; filename*=utf-8''r%C3%A9sum%C3%A9%20%22final%22.txt"
    );

    // Unsafe types are attachments.
    let html = media
        .upload(b"<script>alert(1)</script>".to_vec(), "text/html", None)
        .await;
    let answer = media.download(&html).await;
    assert_eq!(answer.header("content-disposition"), "attachment");
    assert_eq!(answer.header("content-type"), "text/html");

    let empty = media
        .upload(Vec::new(), "application/octet-stream", None)
        .await;
    let answer = media.download(&empty).await;
    assert_eq!((answer.status, answer.bytes.len()), (200, 0));

    let big = pattern(50 * 1000 * 1000);
    let big_mxc = media
        .upload(big.clone(), "application/octet-stream", Some("scan.bin"))
        .await;
    let answer = media.download(&big_mxc).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.bytes.len(), big.len());
    assert!(answer.bytes == big, "the 50 MB file came back different");

    // The same content again is stored once: a second id, no second file.
    let files_before = stored_files(server.data_dir()).len();
    let again = media.upload(small.clone(), "text/plain", None).await;
    assert_ne!(again, mxc);
    assert_eq!(media.download(&again).await.bytes, small);
    assert_eq!(stored_files(server.data_dir()).len(), files_before);
}

#[tokio::test]
async fn range_requests_get_part_of_a_file() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let data = pattern(1000);
    let mxc = media.upload(data.clone(), "audio/ogg", None).await;
    let path = format!("/_matrix/client/v1/media/download/{}", mxc_path(&mxc));

    let part = media.get_range(&path, "bytes=10-19").await;
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, &data[10..20]);
    assert_eq!(part.header("content-range"), "bytes 10-19/1000");

    let tail = media.get_range(&path, "bytes=-100").await;
    assert_eq!((tail.status, &tail.bytes[..]), (206, &data[900..]));
    let open = media.get_range(&path, "bytes=990-").await;
    assert_eq!((open.status, &open.bytes[..]), (206, &data[990..]));

    let beyond = media.get_range(&path, "bytes=1000-").await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), "bytes */1000");

    // Syntax the server does not serve as a range gets the whole file.
    let whole = media.get_range(&path, "bytes=0-1,5-6").await;
    assert_eq!((whole.status, whole.bytes.len()), (200, 1000));
}

#[tokio::test]
async fn thumbnails_have_the_sizes_and_methods_asked() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let png = media
        .upload(
            image_bytes(400, 300, image::ImageFormat::Png),
            "image/png",
            None,
        )
        .await;
    let jpeg = media
        .upload(
            image_bytes(1200, 400, image::ImageFormat::Jpeg),
            "image/jpeg",
            None,
        )
        .await;
    // The standard sizes are made in the background, without being asked: five thumbnails of
    // each image. The 400x300 PNG is never enlarged, so its 640x480 and 800x600 thumbnails are
    // the image itself, encoded to the very bytes of the upload: content addressing stores the
    // three once.
    complement_tests::wait_until(
        "thumbnails made in advance",
        Duration::from_secs(30),
        async || stored_files(server.data_dir()).len() == 2 + 5 + 5 - 2,
    )
    .await;

    let cases = [
        (&png, 32, 32, "crop", (32, 32), "image/png"),
        (&png, 96, 96, "crop", (96, 96), "image/png"),
        (&png, 320, 240, "scale", (320, 240), "image/png"),
        // Never enlarged: the 640x480 box keeps the image at 400x300.
        (&png, 640, 480, "scale", (400, 300), "image/png"),
        (&jpeg, 320, 240, "scale", (320, 107), "image/jpeg"),
        (&jpeg, 800, 600, "scale", (800, 267), "image/jpeg"),
        (&jpeg, 50, 50, "crop", (96, 96), "image/jpeg"),
    ];
    for (mxc, width, height, method, expected, content_type) in cases {
        let answer = media.thumbnail(mxc, width, height, method).await;
        assert_eq!(
            answer.status,
            200,
            "{width}x{height} {method}: {}",
            answer.json()
        );
        assert_eq!(answer.header("content-type"), content_type);
        let image = image::load_from_memory(&answer.bytes).expect("a decodable thumbnail");
        assert_eq!(
            (image.width(), image.height()),
            expected,
            "{width}x{height} {method}"
        );
    }

    // `animated` is accepted; the answer is a still image.
    let animated = media
        .get(&format!(
            "/_matrix/client/v1/media/thumbnail/{}?width=32&height=32&method=crop&animated=true",
            mxc_path(&png)
        ))
        .await;
    assert_eq!(animated.status, 200);

    // Bad parameters.
    let base = format!("/_matrix/client/v1/media/thumbnail/{}", mxc_path(&png));
    media
        .get(&format!("{base}?height=32"))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    media
        .get(&format!("{base}?width=-3&height=32"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    media
        .get(&format!("{base}?width=32&height=32&method=stretch"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn corrupt_and_foreign_files_get_no_thumbnail_and_the_server_carries_on() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let mut broken = image_bytes(200, 200, image::ImageFormat::Png);
    broken.truncate(broken.len() / 3);
    let corrupt = media.upload(broken, "image/png", None).await;
    let text = media
        .upload(b"not an image".to_vec(), "image/png", None)
        .await;
    // A PNG header claiming 100,000 x 100,000 pixels: a decompression bomb must be refused
    // before its pixels are allocated.
    let mut bomb = image_bytes(1, 1, image::ImageFormat::Png);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb = media.upload(bomb, "image/png", None).await;

    for (mxc, why) in [
        (&corrupt, "cannot be decoded"),
        (&text, "not an image"),
        (&bomb, "too large"),
    ] {
        let answer = media.thumbnail(mxc, 96, 96, "crop").await;
        answer.assert_error(400, "M_UNKNOWN");
        let message = answer.json()["error"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(why), "{message}");
        // The file itself is still there to download.
        assert_eq!(media.download(mxc).await.status, 200);
    }
    let fine = media
        .upload(
            image_bytes(64, 64, image::ImageFormat::Png),
            "image/png",
            None,
        )
        .await;
    assert_eq!(media.thumbnail(&fine, 32, 32, "crop").await.status, 200);
}

#[tokio::test]
async fn an_asynchronous_upload_goes_through_its_life_cycle() {
    let server = Server::builder()
        .config("media.max_pending_uploads", 3)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let media = Media::of(&alice);

    let created = media
        .send(
            media
                .http
                .post(format!("{}/_matrix/media/v1/create", media.base_url)),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.json());
    let mxc = created.json()["content_uri"].as_str().unwrap().to_owned();
    assert!(created.json()["unused_expires_at"].as_i64().unwrap() > 0);

    // Not uploaded yet: a short wait ends in 504 M_NOT_YET_UPLOADED.
    media
        .get(&format!(
            "/_matrix/client/v1/media/download/{}?timeout_ms=200",
            mxc_path(&mxc)
        ))
        .await
        .assert_error(504, "M_NOT_YET_UPLOADED");

    // A download waiting for it gets the file once it is uploaded.
    let waiting = {
        let media = Media::of(&alice);
        let path = format!(
            "/_matrix/client/v1/media/download/{}?timeout_ms=20000",
            mxc_path(&mxc)
        );
        tokio::spawn(async move { media.get(&path).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Only its creator may upload it.
    Media::of(&bob)
        .put(&mxc, b"bob's".to_vec(), "text/plain")
        .await
        .assert_error(403, "M_FORBIDDEN");
    let put = media
        .put(&mxc, b"late content".to_vec(), "text/plain")
        .await;
    assert_eq!(put.status, 200, "{}", put.json());
    let waited = waiting.await.unwrap();
    assert_eq!(
        (waited.status, &waited.bytes[..]),
        (200, &b"late content"[..])
    );

    media
        .put(&mxc, b"again".to_vec(), "text/plain")
        .await
        .assert_error(409, "M_CANNOT_OVERWRITE_MEDIA");
    media
        .put("mxc://localhost/NoSuchId", b"x".to_vec(), "text/plain")
        .await
        .assert_error(404, "M_NOT_FOUND");
    media
        .put("mxc://elsewhere.example/abc", b"x".to_vec(), "text/plain")
        .await
        .assert_error(404, "M_NOT_FOUND");

    // At most three unused ids at once.
    for _ in 0..3 {
        let created = media
            .send(
                media
                    .http
                    .post(format!("{}/_matrix/media/v1/create", media.base_url)),
            )
            .await;
        assert_eq!(created.status, 200);
    }
    media
        .send(
            media
                .http
                .post(format!("{}/_matrix/media/v1/create", media.base_url)),
        )
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn unused_asynchronous_upload_ids_expire() {
    let server = Server::builder()
        .config("media.pending_upload_lifetime_secs", 1)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let created = media
        .send(
            media
                .http
                .post(format!("{}/_matrix/media/v1/create", media.base_url)),
        )
        .await;
    let mxc = created.json()["content_uri"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    media
        .put(&mxc, b"too late".to_vec(), "text/plain")
        .await
        .assert_error(404, "M_NOT_FOUND");
    media.download(&mxc).await.assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn legacy_unauthenticated_downloads_are_off_unless_configured() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let mxc = media.upload(b"private".to_vec(), "text/plain", None).await;
    let anonymous = Media::anonymous(&server.base_url());

    anonymous
        .download(&mxc)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    for path in [
        format!("/_matrix/media/v3/download/{}", mxc_path(&mxc)),
        format!("/_matrix/media/v3/download/{}/name.txt", mxc_path(&mxc)),
        format!(
            "/_matrix/media/v3/thumbnail/{}?width=32&height=32",
            mxc_path(&mxc)
        ),
        "/_matrix/media/v3/config".to_owned(),
    ] {
        anonymous.get(&path).await.assert_error(404, "M_NOT_FOUND");
        media.get(&path).await.assert_error(404, "M_NOT_FOUND");
    }

    let legacy = Server::builder()
        .config("media.legacy_unauthenticated", true)
        .start()
        .await;
    let bob = legacy.register_user("bob").await;
    let mxc = Media::of(&bob)
        .upload(b"old client".to_vec(), "text/plain", None)
        .await;
    let anonymous = Media::anonymous(&legacy.base_url());
    let answer = anonymous
        .get(&format!("/_matrix/media/v3/download/{}", mxc_path(&mxc)))
        .await;
    assert_eq!(
        (answer.status, &answer.bytes[..]),
        (200, &b"old client"[..])
    );
    assert_eq!(anonymous.get("/_matrix/media/v3/config").await.status, 200);
    // The authenticated endpoints still want a token.
    anonymous
        .download(&mxc)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn oversized_uploads_are_refused_and_leave_nothing_behind() {
    let server = Server::builder()
        .config("media.max_upload_size", 1024 * 1024)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);

    // Declared too large: refused on the headers alone, before any of the body is sent.
    let (status, body) = declared_upload(
        &server.base_url(),
        &alice.access_token,
        "POST /_matrix/media/v3/upload",
        2 * 1024 * 1024,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("M_TOO_LARGE"), "{body}");
    // Streamed without a length (chunked): refused once the limit is passed.
    let (status, body) =
        chunked_upload(&server.base_url(), &alice.access_token, 32, 64 * 1024).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("M_TOO_LARGE"), "{body}");

    // Nothing on disk; the limit itself is fine.
    assert_eq!(
        stored_files(server.data_dir()),
        Vec::<std::path::PathBuf>::new()
    );
    let at_limit = media
        .upload(pattern(1024 * 1024), "application/octet-stream", None)
        .await;
    assert_eq!(media.download(&at_limit).await.bytes.len(), 1024 * 1024);

    // The asynchronous upload has the same limit, and its id stays usable.
    let created = media
        .send(
            media
                .http
                .post(format!("{}/_matrix/media/v1/create", media.base_url)),
        )
        .await;
    let mxc = created.json()["content_uri"].as_str().unwrap().to_owned();
    let (status, body) = declared_upload(
        &server.base_url(),
        &alice.access_token,
        &format!("PUT /_matrix/media/v3/upload/{}", mxc_path(&mxc)),
        2 * 1024 * 1024,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        media.put(&mxc, b"ok".to_vec(), "text/plain").await.status,
        200
    );
}

#[tokio::test]
async fn bad_media_ids_and_unknown_servers_are_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let media = Media::of(&alice);
    let mxc = media
        .upload(b"x".to_vec(), "text/plain", Some("../../../etc/passwd"))
        .await;
    // A path trick in the file name is only a name.
    let answer = media.download(&mxc).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-disposition"),
        "inline; filename=\"../../../etc/passwd\""
    );

    for path in [
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd",
        "/_matrix/client/v1/media/download/localhost/%00",
        "/_matrix/client/v1/media/download/localhost/a%2Fb",
        "/_matrix/client/v1/media/download/localhost/a.b",
        "/_matrix/client/v1/media/download/localhost/NoSuchMedia",
        "/_matrix/client/v1/media/download/bad%20server!/abc",
        "/_matrix/client/v1/media/download/unknown.example/abc",
        "/_matrix/client/v1/media/thumbnail/localhost/..%2Fx?width=32&height=32",
        "/_matrix/client/v1/media/thumbnail/unknown.example/abc?width=32&height=32",
    ] {
        let answer = media.get(path).await;
        assert_eq!(
            (answer.status, answer.json()["errcode"].as_str()),
            (404, Some("M_NOT_FOUND")),
            "{path}: {}",
            answer.json()
        );
    }
}

#[tokio::test]
async fn operators_quarantine_and_delete_media_by_id_room_and_user() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let media = Media::of(&alice);
    let bob_media = Media::of(&bob);

    let one = media.upload(b"one".to_vec(), "text/plain", None).await;
    let shared = media.upload(b"shared".to_vec(), "text/plain", None).await;
    let in_room = bob_media
        .upload(b"posted".to_vec(), "image/png", None)
        .await;
    let bobs_own = bob_media
        .upload(b"bob's".to_vec(), "text/plain", None)
        .await;

    // By id: quarantined media is not found, for its uploader too, until released.
    let quarantine = format!("/_synapse/admin/v1/media/quarantine/{}", mxc_path(&one));
    alice
        .post(&quarantine, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    admin.post(&quarantine, json!({})).await.ok();
    media.download(&one).await.assert_error(404, "M_NOT_FOUND");
    media
        .thumbnail(&one, 32, 32, "crop")
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .post(
            &format!("/_synapse/admin/v1/media/unquarantine/{}", mxc_path(&one)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(media.download(&one).await.status, 200);

    // By room: every mxc:// URI in the room's events.
    let room_id = bob.create_room(json!({"preset": "public_chat"})).await;
    bob.send_event(
        &room_id,
        "m.room.message",
        json!({"msgtype": "m.image", "body": "photo", "url": in_room}),
    )
    .await;
    let listed = admin
        .get(&format!(
            "/_synapse/admin/v1/room/{}/media",
            encode(&room_id)
        ))
        .await
        .ok();
    assert_eq!(listed["local"], json!([in_room]));
    let quarantined = admin
        .post(
            &format!(
                "/_synapse/admin/v1/room/{}/media/quarantine",
                encode(&room_id)
            ),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(quarantined["num_quarantined"], 1);
    media
        .download(&in_room)
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(media.download(&bobs_own).await.status, 200);

    // By user.
    let quarantined = admin
        .post(
            &format!(
                "/_synapse/admin/v1/user/{}/media/quarantine",
                encode(&bob.user_id)
            ),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(quarantined["num_quarantined"], 2);
    media
        .download(&bobs_own)
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Deleting: the id goes; a file another id shares stays.
    let copy = media.upload(b"shared".to_vec(), "text/plain", None).await;
    let deleted = admin
        .delete(
            &format!("/_synapse/admin/v1/media/{}", mxc_path(&shared)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(deleted["total"], 1);
    media
        .download(&shared)
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(media.download(&copy).await.bytes, b"shared");
    admin
        .delete(
            &format!("/_synapse/admin/v1/media/{}", mxc_path(&shared)),
            json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");

    let deleted = admin
        .delete(
            &format!("/_synapse/admin/v1/users/{}/media", encode(&bob.user_id)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(deleted["total"], 2);
    let files = stored_files(server.data_dir());
    let contents: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    assert!(
        !contents.contains(&b"bob's".to_vec()),
        "bob's file is gone from disk"
    );
    assert!(contents.contains(&b"shared".to_vec()));
}

#[tokio::test]
async fn url_previews_are_off_by_default_and_refuse_private_addresses() {
    let page = PreviewPage::start().await;
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let preview = |base: &str| format!("/_matrix/client/v1/media/preview_url?url={}", encode(base));
    Media::of(&alice)
        .get(&preview(&page.url))
        .await
        .assert_error(403, "M_FORBIDDEN");

    let open = Server::builder()
        .config("media.url_preview", true)
        .start()
        .await;
    let bob = open.register_user("bob").await;
    Media::of(&bob)
        .get(&preview(&page.url))
        .await
        .assert_error(403, "M_FORBIDDEN");
    Media::of(&bob)
        .get(&preview("http://169.254.169.254/latest/meta-data"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    let allowed = Server::builder()
        .config("media.url_preview", true)
        .config("media.url_preview_allow", vec!["127.0.0.1/32"])
        .start()
        .await;
    let carol = allowed.register_user("carol").await;
    let media = Media::of(&carol);
    let answer = media.get(&preview(&page.url)).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let body = answer.json();
    assert_eq!(body["og:title"], "Ward rota");
    assert_eq!(body["og:description"], "Who is on call & when");
    let image = body["og:image"].as_str().expect("the image, as media");
    assert!(image.starts_with("mxc://localhost/"), "{image}");
    let stored = media.download(image).await;
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("content-type"), "image/png");
}
