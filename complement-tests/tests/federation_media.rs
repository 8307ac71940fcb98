//! Media across servers: a user downloads a file and thumbnails uploaded on another server, which
//! their server fetches over federation (`/_matrix/federation/v1/media/download` and
//! `/thumbnail`, multipart answers, streamed to disk within the receiving server's size limit)
//! and caches; other servers' requests must be signed.

use std::time::Duration;

use complement_tests::{Federation, FederationPeer, Method, Server, ServerKey, User, Value, json};

async fn upload(user: &User, body: Vec<u8>, content_type: &str, filename: &str) -> String {
    let answer = http()
        .post(format!(
            "{}/_matrix/media/v3/upload?filename={filename}",
            user.client().base_url()
        ))
        .bearer_auth(&user.access_token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    body["content_uri"].as_str().unwrap().to_owned()
}

/// Status, content type, content disposition and bytes of a GET with the user's token.
async fn get(user: &User, path: &str) -> (u16, String, String, Vec<u8>) {
    let answer = http()
        .get(format!("{}{path}", user.client().base_url()))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    (
        status,
        content_type,
        disposition,
        answer.bytes().await.unwrap().to_vec(),
    )
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Every file under a server's media directory (stored files and any left in `tmp/`).
fn media_files(server: &Server) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&server.data_dir().join("media"), &mut files);
    files
}

/// The `/proc/PID/status` of a server's process (found by its config file on the command line),
/// so a test can see how much memory it used; `None` where there is no `/proc`.
fn process_status(server: &Server) -> Option<std::path::PathBuf> {
    let config = server.config_path().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&config.as_bytes())
                .then(|| entry.path().join("status"))
        })
}

/// A field of `/proc/PID/status` in KiB (`VmHWM` is the peak resident memory).
fn status_kib(status: &std::path::Path, field: &str) -> u64 {
    let text = std::fs::read_to_string(status).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

#[tokio::test]
async fn a_user_downloads_media_of_another_server_which_is_then_cached() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let mut hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = upload(&alice, data.clone(), "application/pdf", "care-plan.pdf").await;
    let image = upload(&alice, png(640, 480), "image/png", "wound.png").await;
    let file_path = file.strip_prefix("mxc://").unwrap();
    let image_path = image.strip_prefix("mxc://").unwrap();

    let (status, content_type, disposition, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{file_path}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/pdf");
    assert_eq!(disposition, "attachment; filename=\"care-plan.pdf\"");
    assert!(bytes == data, "the file came across different");

    let (status, content_type, _, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/thumbnail/{image_path}?width=96&height=96&method=crop"),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    let thumbnail = image::load_from_memory(&bytes).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (96, 96));

    // With hs1 gone, hs2 still serves what it fetched.
    hs1.stop().await;
    let (status, _, _, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{file_path}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(bytes == data);
    let (status, _, _, _) = get(
        &bob,
        &format!("/_matrix/client/v1/media/thumbnail/{image_path}?width=96&height=96&method=crop"),
    )
    .await;
    assert_eq!(status, 200);
    // Something never fetched cannot be had now.
    let (status, _, _, _) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{image_path}"),
    )
    .await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn a_large_remote_file_streams_across_intact() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;

    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let scan = upload(&alice, data.clone(), "application/octet-stream", "scan.bin").await;
    // The peak memory of hs2 is reset, so it shows what the fetch took.
    let status_file = process_status(&hs2);
    assert!(status_file.is_some() || !cfg!(target_os = "linux"));
    if let Some(status) = &status_file {
        std::fs::write(status.with_file_name("clear_refs"), "5").unwrap();
    }
    let before = status_file.as_deref().map(|s| status_kib(s, "VmHWM"));
    let (status, _, _, bytes) = get(
        &bob,
        &format!(
            "/_matrix/client/v1/media/download/{}",
            scan.strip_prefix("mxc://").unwrap()
        ),
    )
    .await;
    assert_eq!(status, 200);
    if let (Some(status), Some(before)) = (&status_file, before) {
        // Streamed, the fetch takes a few MiB (buffers, the response to bob); held in memory
        // whole it would take the file's 20 MB and more.
        let peak = status_kib(status, "VmHWM");
        assert!(
            peak < before + 12 * 1024,
            "hs2's peak memory grew from {before} KiB to {peak} KiB during the fetch"
        );
    }
    assert_eq!(bytes.len(), data.len());
    assert!(bytes == data, "the 20 MB file came across different");
    // One stored file, nothing left in `tmp/`.
    let files = media_files(&hs2);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(!files[0].starts_with(hs2.data_dir().join("media/tmp")));
}

#[tokio::test]
async fn a_remote_file_over_the_size_limit_is_refused_and_leaves_nothing() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation
        .server("hs2.test")
        .config("media.max_upload_size", 1024 * 1024)
        .start()
        .await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let big = upload(&alice, vec![7; 3_000_000], "application/pdf", "big.pdf").await;
    let small = upload(&alice, b"fits".to_vec(), "text/plain", "small.txt").await;
    let download = |mxc: &str| {
        format!(
            "/_matrix/client/v1/media/download/{}",
            mxc.strip_prefix("mxc://").unwrap()
        )
    };

    // 502 M_TOO_LARGE: the specification's answer for content too large to serve (and
    // Synapse's for remote media over its limit). Asking again fetches again, refused again.
    for _ in 0..2 {
        let (status, _, _, body) = get(&bob, &download(&big)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["errcode"], "M_TOO_LARGE", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("1048576"),
            "{body}"
        );
        assert_eq!(media_files(&hs2), Vec::<std::path::PathBuf>::new());
    }
    let (status, _, _, bytes) = get(&bob, &download(&small)).await;
    assert_eq!((status, bytes.as_slice()), (200, b"fits".as_slice()));
    assert_eq!(media_files(&hs2).len(), 1);
}

#[tokio::test]
async fn unknown_media_and_unknown_servers_are_not_found() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let _hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let bob = hs2.register_user("bob").await;

    let (status, _, _, body) = get(
        &bob,
        "/_matrix/client/v1/media/download/hs1.test/NoSuchMedia",
    )
    .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("M_NOT_FOUND"));

    // A server name with nothing behind it.
    let (status, _, _, _) = get(
        &bob,
        "/_matrix/client/v1/media/download/nowhere.invalid/abc",
    )
    .await;
    assert!(status == 502 || status == 404, "{status}");
}

#[tokio::test]
async fn federation_media_is_signed_multipart_and_only_for_local_media() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let file = upload(&alice, b"signed only".to_vec(), "text/plain", "a.txt").await;
    let media_id = file.rsplit('/').next().unwrap().to_owned();
    let path = format!("/_matrix/federation/v1/media/download/{media_id}");

    hs1.federation_client()
        .get(&path)
        .await
        .assert_error(401, "M_UNAUTHORIZED");

    let as_hs2 = ServerKey::of(&hs2);
    let signed_get = |path: String| {
        let authorization = as_hs2.authorization("GET", &path, "hs1.test", None);
        hs1.federation_client()
            .request(Method::GET, &path)
            .header("Authorization", &authorization)
            .send()
    };
    let reply = signed_get(path.clone()).await;
    reply.assert_status(200);
    let content_type = reply.header("content-type").unwrap_or_default().to_owned();
    let boundary = content_type
        .strip_prefix("multipart/mixed; boundary=")
        .expect("a multipart answer");
    let expected = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: text/plain\r\nContent-Disposition: inline; filename=\"a.txt\"\r\n\r\n\
         signed only\r\n--{boundary}--\r\n"
    );
    assert_eq!(reply.text, expected);

    // Media of another server, cached on hs1, is not hs1's to serve.
    let bobs = upload(&bob, b"from hs2".to_vec(), "text/plain", "b.txt").await;
    let (status, _, _, _) = get(
        &alice,
        &format!(
            "/_matrix/client/v1/media/download/{}",
            bobs.strip_prefix("mxc://").unwrap()
        ),
    )
    .await;
    assert_eq!(status, 200);
    let bobs_id = bobs.rsplit('/').next().unwrap();
    signed_get(format!("/_matrix/federation/v1/media/download/{bobs_id}"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    signed_get(format!(
        "/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32&method=crop"
    ))
    .await
    .assert_error(400, "M_UNKNOWN");
}

#[tokio::test]
async fn a_server_without_authenticated_media_is_asked_the_legacy_way() {
    let peer = FederationPeer::start().await;
    let hs1 = peer.server("hs1.test").start().await;
    let alice = hs1.register_user("alice").await;
    // The peer knows no `/_matrix/federation/v1/media/...` (404 M_UNRECOGNIZED), only the old
    // unauthenticated download.
    peer.handle(
        "GET",
        "/_matrix/media/v3/download/{serverName}/{mediaId}",
        |_| (200, json!({"old": "server"})),
    );
    let path = format!(
        "/_matrix/client/v1/media/download/{}/OldMedia",
        peer.server_name()
    );
    let (status, content_type, _, bytes) = get(&alice, &path).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type, "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"old": "server"})
    );
    let asked = peer
        .wait_for_request("GET", "/_matrix/media/v3/download/")
        .await;
    assert!(asked.uri.contains("allow_remote=false"), "{}", asked.uri);
    peer.wait_for_request("GET", "/_matrix/federation/v1/media/download/OldMedia")
        .await;
}

#[tokio::test]
async fn older_servers_get_legacy_downloads_on_the_federation_listener_only_when_switched_on() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let closed = federation.server("hs1.test").start().await;
    let open = federation
        .server("hs2.test")
        .config("media.legacy_unauthenticated", true)
        .start()
        .await;
    for (server, status) in [(&closed, 404), (&open, 200)] {
        let alice = server.register_user("alice").await;
        let file = upload(&alice, b"for old servers".to_vec(), "text/plain", "o.txt").await;
        let path = format!(
            "/_matrix/media/v3/download/{}?allow_remote=false",
            file.strip_prefix("mxc://").unwrap()
        );
        let reply = server.federation_client().get(&path).await;
        reply.assert_status(status);
        if status == 200 {
            assert_eq!(reply.text, "for old servers");
        } else {
            assert_eq!(reply.errcode(), Some("M_NOT_FOUND"));
        }
    }
}

#[tokio::test]
async fn quarantined_remote_media_is_neither_fetched_nor_served() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let admin = hs2.register_admin("admin").await;
    let bob = hs2.register_user("bob").await;
    let fetched = upload(&alice, b"seen before".to_vec(), "text/plain", "s.txt").await;
    let unseen = upload(&alice, b"never fetched".to_vec(), "text/plain", "u.txt").await;
    let download = |mxc: &str| {
        format!(
            "/_matrix/client/v1/media/download/{}",
            mxc.strip_prefix("mxc://").unwrap()
        )
    };
    assert_eq!(get(&bob, &download(&fetched)).await.0, 200);

    for mxc in [&fetched, &unseen] {
        let path = format!(
            "/_synapse/admin/v1/media/quarantine/{}",
            mxc.strip_prefix("mxc://").unwrap()
        );
        admin.post(&path, json!({})).await.ok();
        let (status, _, _, _) = get(&bob, &download(mxc)).await;
        assert_eq!(status, 404, "{mxc}");
    }
    // hs1 still serves its own users.
    assert_eq!(get(&alice, &download(&unseen)).await.0, 200);
}
