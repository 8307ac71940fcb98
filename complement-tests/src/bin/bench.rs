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
const SCENARIOS: [&str; 3] = ["send", "messages", "members"];
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

fn main() {
    let options = Options::parse(std::env::args().skip(1)).unwrap_or_else(|message| {
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
    let mut text = "usage: bench [send] [messages] [members] [--flag value]...\n\
                    (no scenario: all of them)\n"
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
            _ => members_scenario(&options, &mut table).await,
        }
        progress!("{scenario} took {:.0?}", scenario_started.elapsed());
    }
    table.print();
    println!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
}

// Scenario 1: concurrent senders into one room. -----------------------------------------------

/// Returns whether both targets were met.
async fn send_scenario(options: &Options, synchronous: &str, table: &mut Table) -> bool {
    table.section(format!("send (synchronous={synchronous})"));
    progress!("send, synchronous={synchronous}: starting a server");
    let bench = Bench::start(synchronous).await;
    let users = bench.users("sender", options.get("senders")).await;
    let room = [room_with_members(&users).await];
    let warmup = options.get("warmup") * users.len();
    let total = options.get("per-sender") * users.len();

    progress!("warm-up: {warmup} messages");
    bench
        .send_concurrently(&users, &room, "warmup", warmup)
        .await;
    progress!("measuring {total} messages from {} senders", users.len());
    let before = Usage::read(&bench.server);
    let run = bench.send_concurrently(&users, &room, "run", total).await;
    let after = Usage::read(&bench.server);
    let latencies = Latencies::new(run.outputs.iter().flatten().copied().collect());
    let (sent, failed) = (latencies.len(), total - latencies.len());

    let rate = sent as f64 / run.wall.as_secs_f64();
    let p99 = latencies.percentile(99.0);
    let (rate_ok, p99_ok) = (rate >= SEND_EVENTS_PER_SEC && failed == 0, p99 < SEND_P99);
    let figure = format!("throughput, 1 room, concurrent senders: {}", users.len());
    table.row(
        &figure,
        format!("{rate:.0} events/s"),
        ">= 2000 events/s",
        rate_ok,
    );
    table.row("send latency p99", ms(p99), "< 50 ms", p99_ok);
    let spread = latencies.summary(&[50.0, 90.0, 100.0]);
    table.info("send latency p50 / p90 / max", spread);
    let wall = run.wall.as_secs_f64();
    table.info(
        "events sent / failed / wall time",
        format!("{sent} / {failed} / {wall:.1} s"),
    );
    let (_, first, last) = run.rates();
    table.info(RATES_FIGURE, format!("{first:.0} / {last:.0}"));
    table.info(CPU_FIGURE, after.cores_since(&before, run.wall));
    table.info(WRITTEN_FIGURE, after.written_per_event(&before, sent));

    // The same load spread over one room per sender shows whether the limit is the per-room
    // ordering of events or the server as a whole.
    let mut rooms = Vec::new();
    for user in &users {
        rooms.push(user.create_room(json!({"preset": "public_chat"})).await);
    }
    progress!("comparison: {total} messages, each sender into its own room");
    let spread = bench
        .send_concurrently(&users, &rooms, "spread", total)
        .await;
    let latencies = Latencies::new(spread.outputs.iter().flatten().copied().collect());
    let rate = latencies.len() as f64 / spread.wall.as_secs_f64();
    let value = format!("{rate:.0} events/s, {}", ms(latencies.percentile(99.0)));
    table.info("comparison: one room per sender, events/s and p99", value);
    rate_ok && p99_ok
}

// Scenario 2: paging back through a long room. ------------------------------------------------

async fn messages_scenario(options: &Options, table: &mut Table) {
    let synchronous = options.synchronous();
    table.section(format!("messages (synchronous={synchronous})"));
    progress!("messages, synchronous={synchronous}: starting a server");
    let bench = Bench::start(synchronous).await;
    let users = bench.users("writer", 10).await;
    let room_id = room_with_members(&users).await;

    let events = options.get("events");
    progress!("filling the room with {events} messages");
    let fill = bench
        .send_concurrently(&users, &[&room_id], "fill", events)
        .await;
    assert!(
        fill.outputs.iter().all(Option::is_some),
        "filling the room failed"
    );
    let rate = events as f64 / fill.wall.as_secs_f64();
    table.info(
        "room filled by 10 concurrent senders",
        format!("{events} messages, {rate:.0}/s"),
    );

    let reader = &users[0];
    progress!("warm-up: one walk and {LATEST_PAGES} latest pages");
    bench.walk_back(reader, &room_id).await;
    for _ in 0..LATEST_PAGES {
        bench.latest_page(reader, &room_id).await;
    }
    progress!(
        "measuring {} walks and {LATEST_PAGES} latest pages",
        options.get("walks")
    );
    let (before, measuring) = (Usage::read(&bench.server), Instant::now());
    let (mut paged, mut latest, mut walked) = (Vec::new(), Vec::new(), 0);
    for _ in 0..options.get("walks") {
        let (latencies, events) = bench.walk_back(reader, &room_id).await;
        paged.extend(latencies);
        walked = events;
    }
    for _ in 0..LATEST_PAGES {
        latest.push(bench.latest_page(reader, &room_id).await);
    }
    let cpu = Usage::read(&bench.server).cores_since(&before, measuring.elapsed());

    let (paged, latest) = (Latencies::new(paged), Latencies::new(latest));
    for (figure, latencies) in [
        ("page with `from`", &paged),
        ("latest page, no `from`", &latest),
    ] {
        let p50 = latencies.percentile(50.0);
        table.row(
            &format!("{figure}: p50"),
            ms(p50),
            "< 5 ms",
            p50 < MESSAGES_P50,
        );
        let tail = latencies.summary(&[90.0, 99.0, 100.0]);
        table.info(&format!("{figure}: p90 / p99 / max"), tail);
    }
    let pages = format!("{} + {} / {walked}", paged.len(), latest.len());
    table.info("pages measured / events in a walk", pages);
    table.info(CPU_FIGURE, cpu);
}

// Scenario 3: the disk cost of a room with many members. ---------------------------------------

async fn members_scenario(options: &Options, table: &mut Table) {
    let synchronous = options.synchronous();
    let (count, parallelism) = (options.get("members"), options.get("parallelism"));
    table.section(format!("members (synchronous={synchronous})"));
    progress!("members, synchronous={synchronous}: starting a server");
    let mut bench = Bench::start(synchronous).await;
    let creator = bench.server.register_user("creator").await;

    progress!("registering {count} users, {parallelism} at a time");
    let client = bench.server.client();
    let registered = bounded(count, parallelism, "registered", move |_, i| {
        let client = client.clone();
        async move {
            let localpart = format!("member-{i}");
            let password = Server::default_password(&localpart);
            let body = json!({"username": localpart, "password": password});
            let session = client.register_dummy(body).await.ok();
            session["access_token"]
                .as_str()
                .expect("a token")
                .to_owned()
        }
    })
    .await;
    let rate = count as f64 / registered.wall.as_secs_f64();
    table.info(
        "registrations (dummy flow, argon2id)",
        format!("{count} at {rate:.0}/s"),
    );

    let room_id = creator.create_room(json!({"preset": "public_chat"})).await;
    bench.server.stop().await;
    let before = DbSize::measure(bench.server.data_dir());
    bench.server.restart().await;

    progress!("{count} users join, {parallelism} at a time");
    let path = format!("/_matrix/client/v3/join/{}", encode(&room_id));
    let url = format!("{}{path}", bench.server.base_url());
    let (http, tokens) = (bench.http.clone(), Arc::new(registered.outputs));
    let usage = Usage::read(&bench.server);
    let joins = bounded(count, parallelism, "joined", move |_, i| {
        let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
        async move {
            let answer = timed(http.post(url).bearer_auth(&tokens[i]).json(&json!({}))).await;
            assert_eq!(answer.status, 200, "join failed: {}", answer.text());
            answer.elapsed
        }
    })
    .await;
    let after_joins = Usage::read(&bench.server);
    let joined = creator.joined_members(&room_id).await.len();
    bench.server.stop().await;
    let after = DbSize::measure(bench.server.data_dir());

    let growth = after.files.saturating_sub(before.files);
    let ok = growth < MEMBERS_BYTES && joined == count + 1;
    let figure = format!("DB growth over {count} joins, all tables");
    table.row(&figure, mib(growth), "< 10 MiB", ok);
    let per_table = after.growth_since(&before);
    let state_tables = per_table
        .iter()
        .filter(|(t, _)| STATE_TABLES.contains(&t.as_str()));
    let state: u64 = state_tables.map(|(_, bytes)| bytes).sum();
    let state_ok = state < MEMBERS_BYTES && !per_table.is_empty();
    table.row(
        "  state tables only (dbstat)",
        mib(state),
        "< 10 MiB",
        state_ok,
    );
    let (was, is) = (mib(before.files), mib(after.files));
    table.info("DB files before / after the joins", format!("{was} / {is}"));
    let (was, is) = (mib(before.wal_left), mib(after.wal_left));
    table.info(
        "WAL left after SIGTERM: before / after",
        format!("{was} / {is}"),
    );
    for (name, bytes) in per_table.iter().filter(|(_, bytes)| *bytes >= 64 * 1024) {
        table.info(&format!("  table {name} with its indexes"), mib(*bytes));
    }
    let expected = count + 1;
    table.info(
        "joined members (joined_members)",
        format!("{joined} (expected {expected})"),
    );
    let (all, first, last) = joins.rates();
    table.info("joins/s", format!("{all:.0}"));
    table.info(RATES_FIGURE, format!("{first:.0} / {last:.0}"));
    let spread = Latencies::new(joins.outputs).summary(&[50.0, 99.0, 100.0]);
    table.info("join latency p50 / p99 / max", spread);
    table.info(CPU_FIGURE, after_joins.cores_since(&usage, joins.wall));
    table.info(WRITTEN_FIGURE, after_joins.written_per_event(&usage, count));
}

/// What [`bounded`] did: each job's output in job order, and when each job finished.
struct Bounded<T> {
    outputs: Vec<T>,
    finished: Vec<Duration>,
    wall: Duration,
}

impl<T> Bounded<T> {
    /// Jobs per second over the whole run, its first tenth and its last tenth (by finish time),
    /// which shows whether the work gets slower as the room grows.
    fn rates(&self) -> (f64, f64, f64) {
        let mut finished = self.finished.clone();
        finished.sort();
        let (n, tenth) = (finished.len(), (finished.len() / 10).max(1));
        let rate = |from: usize, to: usize| {
            let start = from.checked_sub(1).map_or(Duration::ZERO, |i| finished[i]);
            (to - from) as f64 / (finished[to - 1] - start).as_secs_f64()
        };
        let all = n as f64 / self.wall.as_secs_f64();
        (all, rate(0, tenth), rate(n - tenth, n))
    }
}

/// Runs `job(worker, i)` for `i` in `0..count` on `parallelism` workers, each running its jobs
/// back to back; reports progress every 1000 jobs.
async fn bounded<T, F, Fut>(count: usize, parallelism: usize, verb: &str, job: F) -> Bounded<T>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..parallelism)
        .map(|worker| {
            let (next, job, verb) = (next.clone(), job.clone(), verb.to_owned());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return done;
                    }
                    done.push((i, job(worker, i).await, started.elapsed()));
                    if (i + 1) % 1000 == 0 {
                        progress!("  {} {verb}", i + 1);
                    }
                }
            })
        })
        .collect();
    let mut done = Vec::new();
    for worker in workers {
        done.extend(worker.await.expect("a worker panicked"));
    }
    let wall = started.elapsed();
    done.sort_by_key(|(i, _, _)| *i);
    let finished = done.iter().map(|(_, _, at)| *at).collect();
    let outputs = done.into_iter().map(|(_, output, _)| output).collect();
    Bounded {
        outputs,
        finished,
        wall,
    }
}

/// The size of `plexus.db` with its `-wal` and `-shm` files, and the bytes each table (with its
/// indexes) takes according to SQLite's `dbstat`. Measured while the server is stopped, after
/// checkpointing the WAL into the main file.
struct DbSize {
    files: u64,
    /// The WAL the stopped server left behind, before the checkpoint.
    wal_left: u64,
    tables: BTreeMap<String, u64>,
}

impl DbSize {
    fn measure(data_dir: &Path) -> DbSize {
        let db = data_dir.join("plexus.db").to_string_lossy().into_owned();
        let size = |suffix: &str| std::fs::metadata(format!("{db}{suffix}")).map_or(0, |m| m.len());
        let wal_left = size("-wal");
        // What a clean close of the last connection does: fold the WAL into the main file.
        if command_output("sqlite3", &[&db, "PRAGMA wal_checkpoint(TRUNCATE);"]).is_none() {
            eprintln!("note: no sqlite3 CLI: the WAL is not checkpointed, no per-table breakdown");
        }
        let files = size("") + size("-wal") + size("-shm");
        let query = "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d \
                     JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name";
        let out = command_output("sqlite3", &["-readonly", &db, query]).unwrap_or_default();
        let tables = out
            .lines()
            .filter_map(|line| line.split_once('|'))
            .map(|(name, bytes)| (name.to_owned(), bytes.trim().parse().unwrap_or(0)))
            .collect();
        DbSize {
            files,
            wal_left,
            tables,
        }
    }

    /// Growth per table, largest first.
    fn growth_since(&self, before: &DbSize) -> Vec<(String, u64)> {
        let was = |name: &String| before.tables.get(name).copied().unwrap_or(0);
        let mut growth: Vec<(String, u64)> = self
            .tables
            .iter()
            .map(|(name, &bytes)| (name.clone(), bytes.saturating_sub(was(name))))
            .collect();
        growth.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
        growth
    }
}

// Shared pieces. -------------------------------------------------------------------------------

/// A server under benchmark and the HTTP client that times requests to it.
struct Bench {
    server: Server,
    http: reqwest::Client,
}

impl Bench {
    async fn start(synchronous: &str) -> Bench {
        // `warn` keeps the per-request `answered` lines (info) out of the pipe this process
        // drains, which would otherwise cost the bench client CPU the server competes for.
        let server = Server::builder()
            .config("database.synchronous", synchronous)
            .config("rate_limits.enabled", false)
            .config("log.level", "warn")
            .start()
            .await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build();
        Bench {
            server,
            http: http.expect("an HTTP client"),
        }
    }

    async fn users(&self, prefix: &str, count: usize) -> Vec<User> {
        let mut users = Vec::with_capacity(count);
        for i in 0..count {
            users.push(self.server.register_user(&format!("{prefix}-{i}")).await);
        }
        users
    }

    /// `count` messages in all from every user at once, each user sending back to back into
    /// `rooms[user]`, or into the only room. A failed send is reported and yields `None`.
    async fn send_concurrently(
        &self,
        users: &[User],
        rooms: &[impl AsRef<str>],
        phase: &'static str,
        count: usize,
    ) -> Bounded<Option<Duration>> {
        let base = self.server.base_url();
        let senders: Vec<(String, String)> = (0..users.len())
            .map(|i| {
                let path = room_path(rooms[i % rooms.len()].as_ref(), "send/m.room.message/");
                (
                    users[i].access_token.clone(),
                    format!("{base}{path}bench-{phase}-"),
                )
            })
            .collect();
        let (http, senders) = (self.http.clone(), Arc::new(senders));
        bounded(count, users.len(), "sent", move |sender, i| {
            let (http, senders) = (http.clone(), senders.clone());
            async move {
                let body = json!({"msgtype": "m.text", "body": format!("{phase} message {i}")});
                let (token, prefix) = &senders[sender];
                let request = http
                    .put(format!("{prefix}{i}"))
                    .bearer_auth(token)
                    .json(&body);
                let answer = timed(request).await;
                if answer.status != 200 {
                    eprintln!("a send failed: {} {}", answer.status, answer.text());
                    return None;
                }
                Some(answer.elapsed)
            }
        })
        .await
    }

    /// Pages backwards from the latest event to the room's creation, `PAGE` events at a time;
    /// returns the latencies of the pages fetched with a `from` token ([`Bench::latest_page`]
    /// times the first) and how many events the walk saw.
    async fn walk_back(&self, user: &User, room_id: &str) -> (Vec<Duration>, usize) {
        let (mut from, mut latencies, mut events) = (None::<String>, Vec::new(), 0);
        loop {
            let answer = self.messages_page(user, room_id, from.as_deref()).await;
            let body = answer.json();
            assert_eq!(answer.status, 200, "/messages failed: {body}");
            let chunk = body["chunk"].as_array().map_or(0, Vec::len);
            assert!(chunk <= PAGE, "a page of limit={PAGE} held {chunk} events");
            if from.is_some() {
                latencies.push(answer.elapsed);
            }
            events += chunk;
            match body["end"].as_str() {
                Some(end) if chunk > 0 && from.as_deref() != Some(end) => from = Some(end.into()),
                _ => return (latencies, events),
            }
        }
    }

    /// Fetches and times the latest page (no `from`), checking that it is full.
    async fn latest_page(&self, user: &User, room_id: &str) -> Duration {
        let answer = self.messages_page(user, room_id, None).await;
        let body = answer.json();
        assert_eq!(answer.status, 200, "/messages failed: {body}");
        let chunk = body["chunk"].as_array().map_or(0, Vec::len);
        assert_eq!(chunk, PAGE, "the latest page must hold {PAGE} events");
        answer.elapsed
    }

    async fn messages_page(&self, user: &User, room_id: &str, from: Option<&str>) -> Answer {
        let path = room_path(room_id, "messages");
        let mut url = format!("{}{path}?dir=b&limit={PAGE}", self.server.base_url());
        if let Some(from) = from {
            url.push_str(&format!("&from={}", encode(from)));
        }
        timed(self.http.get(url).bearer_auth(&user.access_token)).await
    }
}

/// The first user creates a public room and the others join it; returns its ID.
async fn room_with_members(users: &[User]) -> String {
    let room_id = users[0].create_room(json!({"preset": "public_chat"})).await;
    for user in &users[1..] {
        user.join(&room_id).await;
    }
    room_id
}

/// One timed exchange: the clock runs from sending the request until the whole body is read
/// (parsing it is not timed).
struct Answer {
    status: u16,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn timed(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("a request failed: {e}"));
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("reading a body failed: {e}"));
    let elapsed = started.elapsed();
    Answer {
        status,
        body: body.to_vec(),
        elapsed,
    }
}

/// Latencies, sorted, with nearest-rank percentiles.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort();
        Latencies(all)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn percentile(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len().max(1)) - 1;
        self.0.get(index).copied().unwrap_or_default()
    }

    fn summary(&self, ps: &[f64]) -> String {
        let each: Vec<String> = ps.iter().map(|p| ms(self.percentile(*p))).collect();
        each.join(" / ")
    }
}

/// CPU seconds used so far by the server, by this process, and by the whole machine (every
/// core's non-idle time), and the bytes the server has written through `write` calls (its WAL
/// and its HTTP answers), from `/proc`. The machine's CPU minus the first two is what other
/// programs took during a measurement: a benchmark that shares its cores is disturbed.
struct Usage {
    cpu: [Option<f64>; 3],
    written: Option<u64>,
}

impl Usage {
    fn read(server: &Server) -> Usage {
        let pid = server_pid(server).map(|pid| pid.to_string());
        let server_cpu = pid.as_deref().and_then(cpu_seconds);
        let written = pid.and_then(|pid| {
            let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:")?.trim().parse().ok())
        });
        let cpu = [server_cpu, cpu_seconds("self"), machine_busy_seconds()];
        Usage { cpu, written }
    }

    /// Average cores busy since `before`: server / bench client / everything else.
    fn cores_since(&self, before: &Usage, wall: Duration) -> String {
        let used = |i: usize| Some((self.cpu[i]? - before.cpu[i]?) / wall.as_secs_f64());
        let others = || Some(used(2)? - used(0)? - used(1)?);
        let cores = |c: Option<f64>| c.map_or("?".to_owned(), |c| format!("{:.2}", c.max(0.0)));
        let [server, bench] = [used(0), used(1)].map(cores);
        format!("{server} / {bench} / {} cores", cores(others()))
    }

    /// Bytes the server wrote since `before`, per event.
    fn written_per_event(&self, before: &Usage, events: usize) -> String {
        let bytes = self
            .written
            .zip(before.written)
            .map(|(now, then)| now - then);
        bytes.map_or("?".to_owned(), |b| {
            format!("{:.1} KiB", b as f64 / 1024.0 / events as f64)
        })
    }
}

/// Non-idle time of all cores, from the first line of `/proc/stat` (user, nice, system, idle,
/// iowait, irq, softirq, steal, in 1/100 s).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields = stat.lines().next()?.split_whitespace().skip(1).take(8);
    let fields: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let idle = fields.get(3)? + fields.get(4)?;
    Some((fields.iter().sum::<u64>() - idle) as f64 / 100.0)
}

/// The server's pid: the process whose command line names this server's config file.
fn server_pid(server: &Server) -> Option<u32> {
    let config = server.config_path().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut args = cmdline.split(|b| *b == 0);
            args.any(|arg| arg == config.as_bytes()).then_some(pid)
        })
}

/// utime + stime from `/proc/<pid>/stat`, in seconds (Linux counts 100 clock ticks a second).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The final table: one row per figure, under the scenario set by the last [`Table::section`].
#[derive(Default)]
struct Table {
    section: String,
    rows: Vec<[String; 5]>,
}

impl Table {
    fn section(&mut self, name: String) {
        self.section = name;
    }

    /// A figure with a target.
    fn row(&mut self, figure: &str, value: impl Display, target: &str, passed: bool) {
        let verdict = if passed { "PASS" } else { "FAIL" };
        self.push([figure, &value.to_string(), target, verdict]);
    }

    /// A figure that explains the others.
    fn info(&mut self, figure: &str, value: impl Display) {
        self.push([figure, &value.to_string(), "", ""]);
    }

    fn push(&mut self, cells: [&str; 4]) {
        let [figure, value, target, verdict] = cells.map(str::to_owned);
        self.rows
            .push([self.section.clone(), figure, value, target, verdict]);
    }

    fn print(&self) {
        let header = ["scenario", "figure", "value", "target", "result"].map(str::to_owned);
        let mut widths = [0; 5];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 5]| {
            let cells = row.iter().zip(widths).map(|(cell, w)| format!("{cell:w$}"));
            println!("| {} |", cells.collect::<Vec<_>>().join(" | "));
        };
        println!();
        line(&header);
        line(&widths.map(|w| "-".repeat(w)));
        self.rows.iter().for_each(line);
    }
}

/// The facts a figure means nothing without: cores, CPU, memory, disk, commit and settings.
fn print_machine(bin: &Path, synchronous: &str) {
    let proc_field = |file: &str, key: &str| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let field = text
            .lines()
            .find_map(|l| Some(l.strip_prefix(key)?.split_once(':')?.1));
        field.map_or("unknown".to_owned(), |value| value.trim().to_owned())
    };
    let memory = proc_field("/proc/meminfo", "MemTotal");
    let memory = memory.trim_end_matches(" kB").parse::<f64>().ok();
    let memory = memory.map_or("unknown".to_owned(), |kb| {
        format!("{:.1} GiB", kb / 1048576.0)
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let temp = std::env::temp_dir();
    let df = command_output(
        "df",
        &["-h", "--output=source,fstype,size", &temp.to_string_lossy()],
    );
    let disk = df
        .as_deref()
        .and_then(|out| out.lines().nth(1))
        .unwrap_or("unknown");
    let disk = disk.split_whitespace().collect::<Vec<_>>().join(" ");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        let mut all = vec!["-C", repo.to_str().unwrap_or(".")];
        all.extend(args);
        command_output("git", &all)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]);
    let dirty = if dirty.is_some_and(|s| !s.is_empty()) {
        " + uncommitted changes"
    } else {
        ""
    };
    let bin_text = bin.to_string_lossy();
    let built = command_output("date", &["-u", "-r", &bin_text, "+%Y-%m-%d %H:%M UTC"]);
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    println!("Plexus benchmark, {date}");
    println!("  cores (nproc)         {cores}");
    println!(
        "  CPU                   {}",
        proc_field("/proc/cpuinfo", "model name")
    );
    println!("  memory                {memory}");
    println!("  data directory disk   {} on {disk}", temp.display());
    println!("  commit                {commit}{dirty}");
    println!(
        "  server binary         {bin_text} (built {})",
        built.unwrap_or_default()
    );
    println!("  database.synchronous  {synchronous}");
    println!("  rate_limits.enabled   false (log.level warn)");
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    out.status.success().then_some(text)
}

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
