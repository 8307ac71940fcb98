//! The performance benchmark of Plexus. It starts the real release `plexus` binary on loopback (a
//! fresh server per scenario, rate limits off, `database.synchronous = "full"` unless told
//! otherwise), drives it over HTTP with bounded concurrency, and prints a table of figures against
//! the targets of the issue that asked for them:
//!
//! - `send`: 10 users send into one room at once; events/s over the wall time, and the p99 latency
//!   of `PUT /rooms/{roomId}/send/m.room.message/{txnId}`.
//! - `messages`: 100-event `/messages` pages (`dir=b`) walking back through a 10,000-event room,
//!   and the latest page without `from`; p50 and p99 latency.
//! - `members`: 10,000 users join one room; the growth of the database files across the joins,
//!   measured with the server stopped and the WAL checkpointed, broken down per table.
//! - `sync-fanout`, `sync-initial`, `sync-idle`: how fast a paced stream of messages reaches 100
//!   long-polling `/sync` clients, the initial sync of a user in 500 rooms, and the server CPU
//!   that 100 idle long-polls cost (`sync_scenarios.rs`).
//! - `fed-send`, `fed-join`: an incoming federation transaction of 50 PDUs, and joining a remote
//!   room of 1,000 members over federation (`federation_scenarios.rs`).
//! - `media`: the server's memory growth while a 200 MB file goes up and comes back, and the
//!   throughput of 100 concurrent downloads of a 1 MB file (`media_scenarios.rs`).
//!
//! `bench load --homeserver URL …` is the load tool: it starts no server and speaks only the
//! Client-Server API to the one it is given, so it measures Synapse as well (`load.rs`).
//!
//! Run it with `cargo build --release -p plexus && cargo run --release -p complement-tests --bin
//! bench [-- scenario... --flag value]`; `--help` lists the flags. It is a benchmark, not a test:
//! it reports figures and never fails a build. `docs/benchmarks.md` records a run.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use complement_tests::{Server, User, encode, json, room_path};
use serde_json::Value;

/// The scenarios, in the order they run when none is named.
const SCENARIOS: [&str; 9] = [
    "send",
    "messages",
    "members",
    "sync-fanout",
    "sync-initial",
    "sync-idle",
    "fed-send",
    "fed-join",
    "media",
];
/// The numeric flags: name, default, meaning.
const FLAGS: &[(&str, usize, &str)] = &[
    ("senders", 10, "concurrent senders in `send`"),
    (
        "per-sender",
        2_000,
        "measured messages per sender in `send`",
    ),
    (
        "warmup",
        100,
        "unmeasured messages per sender before measuring",
    ),
    ("events", 10_000, "messages in the `messages` room"),
    ("walks", 3, "measured backward walks through that room"),
    ("members", 10_000, "users joining the `members` room"),
    (
        "parallelism",
        8,
        "concurrent registrations and joins in `members`",
    ),
    (
        "clients",
        100,
        "long-polling clients in `sync-fanout` and `sync-idle`",
    ),
    ("rate", 100, "messages/s sent in `sync-fanout`"),
    (
        "seconds",
        20,
        "measured seconds of sending in `sync-fanout`",
    ),
    ("rooms", 500, "rooms of the syncing user in `sync-initial`"),
    ("runs", 20, "measured initial syncs in `sync-initial`"),
    ("idle-seconds", 10, "the measured window of `sync-idle`"),
    (
        "transactions",
        20,
        "measured 50-PDU transactions in `fed-send`",
    ),
    (
        "fed-members",
        1_000,
        "members of each hs1 room in `fed-join`",
    ),
    (
        "fed-runs",
        3,
        "federated joins (one room each) in `fed-join`",
    ),
    (
        "media-mb",
        200,
        "MB of the file uploaded and downloaded in `media`",
    ),
    (
        "media-downloads",
        1_000,
        "1 MB downloads (100 at a time) in `media`",
    ),
];

/// Targets from the issue, on a 2-core machine.
const SEND_EVENTS_PER_SEC: f64 = 2_000.0;
const SEND_P99: Duration = Duration::from_millis(50);
const MESSAGES_P50: Duration = Duration::from_millis(5);
const MEMBERS_BYTES: u64 = 10 * 1024 * 1024;
/// The page size `/messages` is measured at.
const PAGE: usize = 100;
/// How often the latest page is fetched, after as many warm-up fetches.
const LATEST_PAGES: usize = 300;
/// Tables holding a room's state as opposed to its timeline (the member events themselves, with
/// their JSON, live in `events`).
const STATE_TABLES: &[&str] = &[
    "state_keys",
    "state_groups",
    "state_group_changes",
    "state_group_deltas",
    "current_state",
    "room_memberships",
];
/// Figures several scenarios report.
const RATES_FIGURE: &str = "events/s in the first / last 10% of the run";
const CPU_FIGURE: &str = "CPU busy: server / bench / other programs";
const WRITTEN_FIGURE: &str = "server write() bytes per event (WAL, HTTP)";

macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[bench] {}", format_args!($($arg)*)) };
}

mod federation_scenarios;
mod load;
mod load_compare;
mod load_scenarios;
mod machine;
mod measure;
mod media_scenarios;
mod scenarios;
mod sync_scenarios;

use federation_scenarios::*;
use load::*;
use load_compare::*;
use load_scenarios::*;
use machine::*;
use measure::*;
use media_scenarios::*;
use scenarios::*;
use sync_scenarios::*;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(mode) = args.next_if(|a| a == "load" || a == "load-compare") {
        return load_main(&mode, args.collect());
    }
    let options = Options::parse(args).unwrap_or_else(|message| {
        eprintln!("{message}\n\n{}", usage());
        std::process::exit(2);
    });
    let bin = plexus_release_bin();
    // SAFETY: no other thread exists yet (the runtime is built below). The harness finds the
    // server through PLEXUS_BIN; its own default looks in `target/<profile>/deps/..`, which is
    // right for tests but not for a binary that lives in `target/release/` itself.
    unsafe { std::env::set_var("PLEXUS_BIN", &bin) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    runtime
        .expect("a tokio runtime")
        .block_on(run(options, bin));
}

/// `$PLEXUS_BIN`, or `plexus` next to this executable (`target/release/plexus`).
fn plexus_release_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PLEXUS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the bench knows its own path");
    let path = exe.with_file_name(format!("plexus{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        let path = path.display();
        eprintln!("no plexus at {path}; run `cargo build --release -p plexus` or set PLEXUS_BIN");
        std::process::exit(2);
    }
    path
}

struct Options {
    scenarios: Vec<String>,
    numbers: BTreeMap<&'static str, usize>,
    synchronous: Option<String>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let numbers = FLAGS
            .iter()
            .map(|(name, default, _)| (*name, *default))
            .collect();
        let mut o = Options {
            scenarios: Vec::new(),
            numbers,
            synchronous: None,
        };
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err("The Plexus benchmark.".to_owned());
            }
            let Some(flag) = arg.strip_prefix("--") else {
                if !SCENARIOS.contains(&arg.as_str()) {
                    return Err(format!("unknown scenario {arg:?}"));
                }
                o.scenarios.push(arg);
                continue;
            };
            let value = args.next().ok_or(format!("{arg} needs a value"))?;
            if flag == "synchronous" {
                if !matches!(value.as_str(), "full" | "normal") {
                    return Err(format!("--synchronous is full or normal, not {value:?}"));
                }
                o.synchronous = Some(value);
                continue;
            }
            let known = FLAGS.iter().find(|(name, _, _)| *name == flag);
            let (name, _, _) = known.ok_or(format!("unknown flag {arg}"))?;
            let number = value.parse().ok().filter(|n| *n > 0);
            let number = number.ok_or(format!("{arg} needs a positive number, not {value:?}"))?;
            o.numbers.insert(name, number);
        }
        if o.scenarios.is_empty() {
            o.scenarios = SCENARIOS.map(str::to_owned).to_vec();
        }
        Ok(o)
    }

    fn get(&self, flag: &str) -> usize {
        self.numbers[flag]
    }

    fn synchronous(&self) -> &str {
        self.synchronous.as_deref().unwrap_or("full")
    }
}

fn usage() -> String {
    let mut text = "usage: bench [send] [messages] [members] [sync-fanout] [sync-initial] \
                    [sync-idle] [fed-send] [fed-join] [media] [--flag value]...\n\
                    (no scenario: all of them)\n\
                    \x20      bench load --homeserver URL ... (the load tool; bench load --help)\n"
        .to_owned();
    for (name, default, meaning) in FLAGS {
        text.push_str(&format!("  --{name:<12} {meaning} ({default})\n"));
    }
    text + "  --synchronous  full or normal, for every scenario (without it, `send` reruns with\n\
            \x20                normal when it misses a target with full)"
}

async fn run(options: Options, bin: PathBuf) {
    let started = Instant::now();
    print_machine(&bin, options.synchronous());
    let mut table = Table::default();
    for scenario in &options.scenarios {
        let scenario_started = Instant::now();
        match scenario.as_str() {
            "send" => {
                let passed = send_scenario(&options, options.synchronous(), &mut table).await;
                if !passed && options.synchronous.is_none() {
                    progress!("send missed a target with synchronous=full; rerunning with normal");
                    send_scenario(&options, "normal", &mut table).await;
                }
            }
            "messages" => messages_scenario(&options, &mut table).await,
            "sync-fanout" => sync_fanout_scenario(&options, &mut table).await,
            "sync-initial" => sync_initial_scenario(&options, &mut table).await,
            "sync-idle" => sync_idle_scenario(&options, &mut table).await,
            "fed-send" => fed_send_scenario(&options, &mut table).await,
            "fed-join" => fed_join_scenario(&options, &mut table).await,
            "media" => media_scenario(&options, &mut table).await,
            _ => members_scenario(&options, &mut table).await,
        }
        progress!("{scenario} took {:.0?}", scenario_started.elapsed());
    }
    table.print();
    println!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
}

// Scenario 1: concurrent senders into one room. -----------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(latencies.percentile(50.0), Duration::from_millis(50));
        assert_eq!(latencies.percentile(99.0), Duration::from_millis(99));
        assert_eq!(latencies.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Latencies::new(Vec::new()).percentile(99.0), Duration::ZERO);
    }

    #[test]
    fn flags_override_defaults_and_nonsense_is_refused() {
        let options = parse(&["members", "--members", "50", "--synchronous", "normal"]).unwrap();
        assert_eq!(options.scenarios, ["members"]);
        assert_eq!((options.get("members"), options.get("senders")), (50, 10));
        assert_eq!(options.synchronous(), "normal");
        assert_eq!(parse(&[]).unwrap().scenarios, SCENARIOS);
        for bad in [
            &["sned"][..],
            &["--members", "0"],
            &["--walks"],
            &["--synchronous", "off"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
