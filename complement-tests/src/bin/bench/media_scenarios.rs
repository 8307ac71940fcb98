//! The `media` scenario: a large file (200 MB by default) uploaded and downloaded while the
//! server's resident memory is sampled — files must stream, so its growth stays under 32 MiB —
//! and many concurrent downloads of a 1 MB file (100 at a time), whose throughput must reach
//! 200 MB/s on loopback.

use super::*;

/// Targets from the issue, on a 2-core machine.
const RSS_GROWTH_BYTES: u64 = 32 * 1024 * 1024;
const DOWNLOAD_BYTES_PER_SEC: f64 = 200.0 * 1000.0 * 1000.0;
/// Concurrent downloads of the small file.
const DOWNLOAD_PARALLELISM: usize = 100;
const SMALL_FILE_BYTES: usize = 1000 * 1000;
/// How often the server's memory is sampled during the large transfer.
const RSS_SAMPLE: Duration = Duration::from_millis(20);

pub(crate) async fn media_scenario(options: &Options, table: &mut Table) {
    table.section("media".to_owned());
    let large = options.get("media-mb") * 1000 * 1000;
    let server = Server::builder()
        .config("database.synchronous", options.synchronous())
        .config("rate_limits.enabled", false)
        .config("log.level", "warn")
        .config(
            "media.max_upload_size",
            (large as i64).max(SMALL_FILE_BYTES as i64),
        )
        .start()
        .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("an HTTP client");
    let user = server.register_user("media").await;
    let base = server.base_url();

    // Warm up (first requests allocate the server's pools), then sample memory while a large
    // file goes up and comes back down.
    let warm = upload(&http, &base, &user, vec![1; 1024]).await;
    download(&http, &base, &user, &warm).await;
    let pid = server_pid(&server);
    let before = pid.and_then(rss_bytes).unwrap_or(0);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = pid.and_then(rss_bytes) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_SAMPLE).await;
            }
        })
    };
    progress!("media: uploading and downloading {} MB", large / 1_000_000);
    let body: Vec<u8> = (0..large).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let mxc = upload(&http, &base, &user, body).await;
    let uploaded = started.elapsed();
    let started = Instant::now();
    let received = download(&http, &base, &user, &mxc).await;
    let downloaded = started.elapsed();
    sampler.abort();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    assert_eq!(received, large, "the large file came back whole");
    table.row(
        &format!("server RSS growth, {} MB up and down", large / 1_000_000),
        mib(growth),
        "< 32 MiB",
        pid.is_some() && growth < RSS_GROWTH_BYTES,
    );
    table.info(
        "large upload / download time",
        format!("{uploaded:.1?} / {downloaded:.1?}"),
    );

    let count = options.get("media-downloads");
    let small = upload(&http, &base, &user, vec![7; SMALL_FILE_BYTES]).await;
    progress!("media: {count} downloads of 1 MB, {DOWNLOAD_PARALLELISM} at a time");
    let job = {
        let (http, base, user, small) = (http.clone(), base.clone(), user.clone(), small.clone());
        move |_, _| {
            let (http, base, user, small) =
                (http.clone(), base.clone(), user.clone(), small.clone());
            async move { download(&http, &base, &user, &small).await }
        }
    };
    let run = bounded(count, DOWNLOAD_PARALLELISM, "downloads", job).await;
    let bytes: usize = run.outputs.iter().sum();
    assert_eq!(
        bytes,
        count * SMALL_FILE_BYTES,
        "every download came back whole"
    );
    let rate = bytes as f64 / run.wall.as_secs_f64();
    table.row(
        "1 MB downloads, 100 concurrent",
        format!("{:.0} MB/s", rate / 1_000_000.0),
        ">= 200 MB/s",
        rate >= DOWNLOAD_BYTES_PER_SEC,
    );
}

async fn upload(http: &reqwest::Client, base: &str, user: &User, body: Vec<u8>) -> String {
    let response = http
        .post(format!("{base}/_matrix/media/v3/upload"))
        .bearer_auth(&user.access_token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("the upload is answered");
    assert_eq!(response.status(), 200, "upload");
    let body: Value = response.json().await.expect("a JSON answer");
    let mxc = body["content_uri"].as_str().expect("a content_uri");
    mxc.trim_start_matches("mxc://").to_owned()
}

/// Downloads `server/id` chunk by chunk (never whole in the bench's memory); returns its length.
async fn download(http: &reqwest::Client, base: &str, user: &User, path: &str) -> usize {
    let mut response = http
        .get(format!("{base}/_matrix/client/v1/media/download/{path}"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .expect("the download is answered");
    assert_eq!(response.status(), 200, "download");
    let mut len = 0;
    while let Some(chunk) = response.chunk().await.expect("the body arrives") {
        len += chunk.len();
    }
    len
}

/// A process's resident memory, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
