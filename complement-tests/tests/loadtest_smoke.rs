//! The load tool (`bench load`, the Plexus-versus-Synapse benchmark) runs every scenario against a
//! server it did not start, at a tiny scale, and reports no lost message. The figures themselves
//! are not checked: a benchmark is not a test.

use std::process::Command;
use std::time::Instant;

use complement_tests::{DEFAULT_SHARED_SECRET, Server, Value};

#[tokio::test(flavor = "multi_thread")]
async fn the_load_tool_runs_every_scenario_against_a_running_server() {
    let server = Server::builder().config("log.level", "warn").start().await;
    // The tool reads the server's CPU and RSS from /proc given its pid, as the comparison
    // script passes it; the harness's process is the one started with this config file.
    let config = server.config_path().to_string_lossy().into_owned();
    let pgrep = Command::new("pgrep").args(["-f", &config]).output();
    let pid = pgrep.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let pid = pid.ok().filter(|p| !p.is_empty() && !p.contains('\n'));
    let out = tempfile::NamedTempFile::new().expect("a temporary file");
    let out_path = out.path().to_string_lossy().into_owned();

    let base_url = server.base_url();
    let mut args = vec!["load", "--homeserver", &base_url];
    args.extend(["--register", DEFAULT_SHARED_SECRET, "--out", &out_path]);
    let tiny = [
        ("senders", "2"),
        ("messages", "3"),
        ("warmup", "1"),
        ("clients", "2"),
        ("fanout-messages", "3"),
        ("fanout-warmup", "1"),
        ("rate", "20"),
        ("rooms", "3"),
        ("room-messages", "2"),
        ("syncs", "1"),
        ("create", "3"),
        ("joiners", "3"),
        ("parallelism", "2"),
        ("listings", "1"),
    ];
    let tiny: Vec<String> = tiny
        .iter()
        .flat_map(|(f, v)| [format!("--{f}"), v.to_string()])
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    command.args(&args).args(&tiny);
    if let Some(pid) = &pid {
        command.args(["--pid", pid]);
    }
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the tool's thread")
        .expect("running bench load");
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "bench load failed:\n{output}");

    let figures: Value = serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap())
        .unwrap_or_else(|e| panic!("--out is not JSON ({e}):\n{output}"));
    let figure = |key: &str| {
        let all = figures["figures"].as_array().expect("a figures array");
        let found = all.iter().find(|f| f["key"] == key);
        found
            .and_then(|f| f["value"].as_f64())
            .unwrap_or_else(|| panic!("no {key} in\n{output}"))
    };
    assert_eq!(figure("fan_out.lost"), 0.0, "{output}");
    assert_eq!(figure("fan_out.duplicated"), 0.0, "{output}");
    for failures in ["send.failed", "rooms.failed", "big_room.failed"] {
        assert_eq!(figure(failures), 0.0, "{failures}:\n{output}");
    }
    assert!(figure("send.events_per_s") > 0.0);
    assert!(figure("initial_sync.lazy_ms") > 0.0);
    assert!(figure("big_room.joined_members_ms") > 0.0);
    if pid.is_some() {
        assert!(figure("server.peak_rss_mb") > 1.0, "{output}");
        assert!(figure("send.server_cpu_s") >= 0.0);
    }
    eprintln!("bench load took {:.1?}:\n{output}", started.elapsed());
}
