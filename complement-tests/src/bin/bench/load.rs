//! `bench load`: the load tool for any homeserver. Unlike the other scenarios it starts no server:
//! it is given one by URL and speaks only the Client-Server API to it (plus the shared-secret
//! registration `/_synapse/admin/v1/register`, which Synapse and Plexus both serve), so the same
//! run measures Plexus and Synapse alike. Its scenarios are in `load_scenarios.rs`.
//!
//! With `--pid`, every scenario also reports the server's CPU seconds and peak RSS (sampled from
//! `/proc` every few milliseconds, and from `VmHWM` when the kernel lets it be reset), and the
//! tool's own CPU, so that a client bottleneck is visible. `--out FILE` writes the figures as
//! JSON; `bench load-compare SYNAPSE.json PLEXUS.json` prints two such files side by side with
//! the ratios and the targets of the Synapse comparison (`complement-tests/bench-vs-synapse.sh`
//! runs the whole comparison).

use std::sync::atomic::AtomicU64;

use complement_tests::registration_mac;
use tokio::task::JoinHandle;

use super::*;

/// The load tool's scenarios, in the order they run when none is named.
pub(crate) const LOAD_SCENARIOS: [&str; 5] =
    ["send", "fan-out", "initial-sync", "rooms", "big-room"];

/// The numeric flags of `bench load`: name, default, meaning. The defaults keep a run against
/// Synapse (about 50 events/s on two cores) to a few minutes.
const LOAD_FLAGS: &[(&str, usize, &str)] = &[
    (
        "senders",
        10,
        "users sending into one room at once in `send`",
    ),
    ("messages", 50, "measured messages per sender in `send`"),
    (
        "warmup",
        5,
        "unmeasured messages per sender before `send` measures",
    ),
    ("clients", 20, "clients long-polling /sync in `fan-out`"),
    (
        "fanout-messages",
        100,
        "measured messages sent in `fan-out`",
    ),
    (
        "fanout-warmup",
        10,
        "unmeasured messages sent first in `fan-out`",
    ),
    ("rate", 10, "messages/s sent in `fan-out`"),
    ("rooms", 100, "rooms of the syncing user in `initial-sync`"),
    ("room-messages", 10, "messages in each of those rooms"),
    (
        "syncs",
        5,
        "measured initial syncs with, and as many without, lazy-loading",
    ),
    (
        "create",
        50,
        "rooms created sequentially, and again concurrently, in `rooms`",
    ),
    (
        "joiners",
        100,
        "users joining one public room in `big-room`",
    ),
    (
        "parallelism",
        8,
        "requests at once in concurrent `rooms` and `big-room` joins",
    ),
    (
        "listings",
        5,
        "measured /members and /joined_members requests in `big-room`",
    ),
];

/// How often the server's RSS is sampled.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Registrations at once while the accounts are made (not measured).
const REGISTER_PARALLELISM: usize = 4;
/// How long the server is left alone before the idle RSS after the run is read.
const SETTLE: Duration = Duration::from_secs(2);

/// `bench load …` or `bench load-compare …`: runs the mode and exits.
pub(crate) fn load_main(mode: &str, args: Vec<String>) {
    if mode == "load-compare" {
        if let Err(message) = compare(&args) {
            eprintln!("{message}\n\nusage: bench load-compare SYNAPSE.json PLEXUS.json");
            std::process::exit(2);
        }
        return;
    }
    let options = LoadOptions::parse(args.into_iter()).unwrap_or_else(|message| {
        eprintln!("{message}\n\n{}", load_usage());
        std::process::exit(2);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    runtime
        .expect("a tokio runtime")
        .block_on(run_load(options));
}

pub(crate) struct LoadOptions {
    pub(crate) homeserver: String,
    pub(crate) pid: Option<u32>,
    pub(crate) secret: String,
    pub(crate) out: Option<PathBuf>,
    pub(crate) label: String,
    pub(crate) scenarios: Vec<String>,
    numbers: BTreeMap<&'static str, usize>,
}

impl LoadOptions {
    pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> Result<LoadOptions, String> {
        let numbers = LOAD_FLAGS.iter().map(|(n, d, _)| (*n, *d)).collect();
        let (mut homeserver, mut pid, mut secret, mut out, mut label) =
            (None, None, None, None, None);
        let mut o = LoadOptions {
            homeserver: String::new(),
            pid: None,
            secret: String::new(),
            out: None,
            label: String::new(),
            scenarios: Vec::new(),
            numbers,
        };
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err("The load tool.".to_owned());
            }
            let Some(flag) = arg.strip_prefix("--") else {
                if !LOAD_SCENARIOS.contains(&arg.as_str()) {
                    return Err(format!("unknown scenario {arg:?}"));
                }
                o.scenarios.push(arg);
                continue;
            };
            let value = args.next().ok_or(format!("{arg} needs a value"))?;
            match flag {
                "homeserver" => homeserver = Some(value.trim_end_matches('/').to_owned()),
                "pid" => pid = Some(value.parse().map_err(|_| format!("--pid {value:?}"))?),
                "register" => secret = Some(value),
                "out" => out = Some(PathBuf::from(value)),
                "label" => label = Some(value),
                _ => {
                    let known = LOAD_FLAGS.iter().find(|(name, _, _)| *name == flag);
                    let (name, _, _) = known.ok_or(format!("unknown flag {arg}"))?;
                    let number = value.parse().ok().filter(|n| *n > 0);
                    let number =
                        number.ok_or(format!("{arg} needs a positive number, not {value:?}"))?;
                    o.numbers.insert(name, number);
                }
            }
        }
        o.homeserver = homeserver.ok_or("--homeserver URL is required")?;
        o.secret = secret.ok_or("--register SHARED_SECRET is required")?;
        o.label = label.unwrap_or_else(|| o.homeserver.clone());
        (o.pid, o.out) = (pid, out);
        if o.scenarios.is_empty() {
            o.scenarios = LOAD_SCENARIOS.map(str::to_owned).to_vec();
        }
        Ok(o)
    }

    pub(crate) fn get(&self, flag: &str) -> usize {
        self.numbers[flag]
    }
}

fn load_usage() -> String {
    let mut text = "usage: bench load --homeserver URL --register SHARED_SECRET [--pid PID] \
                    [--out FILE.json] [--label NAME] [send] [fan-out] [initial-sync] [rooms] \
                    [big-room] [--flag value]...\n\
                    (no scenario: all of them)\n"
        .to_owned();
    for (name, default, meaning) in LOAD_FLAGS {
        text.push_str(&format!("  --{name:<16} {meaning} ({default})\n"));
    }
    text + "       bench load-compare SYNAPSE.json PLEXUS.json"
}

// The homeserver and its accounts. -------------------------------------------------------------

/// An account made by the tool: its ID and access token.
#[derive(Clone)]
pub(crate) struct Account {
    pub(crate) user_id: String,
    pub(crate) token: String,
}

/// The homeserver under load.
pub(crate) struct Load {
    pub(crate) target: Target,
    secret: String,
    /// Prepended to every localpart, so that a second run against the same server registers new
    /// accounts.
    prefix: String,
}

impl Load {
    /// A timed request with `token`; the body, when given, is sent as JSON.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.target.base_url);
        let mut request = self.target.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        timed(request).await
    }

    /// Registers `name` (prefixed) with the shared secret.
    pub(crate) async fn register(&self, name: &str) -> Account {
        let path = "/_synapse/admin/v1/register";
        let nonce = ok(
            &self.call(reqwest::Method::GET, None, path, None).await,
            "a nonce",
        );
        let nonce = nonce["nonce"].as_str().unwrap_or_default();
        let localpart = format!("{}-{name}", self.prefix);
        let password = format!("{localpart}-load-password");
        let mac = registration_mac(&self.secret, nonce, &localpart, &password, false);
        let body = json!({
            "nonce": nonce, "username": localpart, "password": password, "admin": false, "mac": mac,
        });
        let answer = self
            .call(reqwest::Method::POST, None, path, Some(body))
            .await;
        let session = ok(&answer, "shared-secret registration");
        let field = |name: &str| session[name].as_str().unwrap_or_default().to_owned();
        Account {
            user_id: field("user_id"),
            token: field("access_token"),
        }
    }

    /// Registers `count` accounts named `{name}-{i}`, a few at a time.
    pub(crate) async fn accounts(self: &Arc<Load>, name: &str, count: usize) -> Vec<Account> {
        let (load, name) = (self.clone(), name.to_owned());
        let made = bounded(count, REGISTER_PARALLELISM, "registered", move |_, i| {
            let (load, name) = (load.clone(), name.clone());
            async move { load.register(&format!("{name}-{i}")).await }
        });
        made.await.outputs
    }

    /// `POST /createRoom` with `body`, timed; the room ID is `None` when it failed.
    pub(crate) async fn create_room(
        &self,
        who: &Account,
        body: Value,
    ) -> (Option<String>, Duration) {
        let path = "/_matrix/client/v3/createRoom";
        let answer = self
            .call(reqwest::Method::POST, Some(&who.token), path, Some(body))
            .await;
        (room_id_of(&answer, "createRoom"), answer.elapsed)
    }

    /// A public room created by `who`, which must succeed.
    pub(crate) async fn public_room(&self, who: &Account) -> String {
        let (room_id, _) = self
            .create_room(who, json!({"preset": "public_chat"}))
            .await;
        room_id.unwrap_or_else(|| panic!("{} could not create a room", who.user_id))
    }

    /// `POST /join/{roomId}`, timed; `None` when it failed.
    pub(crate) async fn join(&self, who: &Account, room_id: &str) -> Option<Duration> {
        let path = format!("/_matrix/client/v3/join/{}", encode(room_id));
        let answer = self
            .call(
                reqwest::Method::POST,
                Some(&who.token),
                &path,
                Some(json!({})),
            )
            .await;
        room_id_of(&answer, "join").map(|_| answer.elapsed)
    }

    /// Sends one text message, which must succeed.
    pub(crate) async fn send_text(&self, who: &Account, room_id: &str, txn: &str, text: &str) {
        let path = room_path(room_id, &format!("send/m.room.message/{txn}"));
        let body = json!({"msgtype": "m.text", "body": text});
        let answer = self
            .call(reqwest::Method::PUT, Some(&who.token), &path, Some(body))
            .await;
        ok(&answer, "a message");
    }
}

/// The answer's JSON body, which must be a 200; panics with the answer otherwise.
pub(crate) fn ok(answer: &Answer, what: &str) -> Value {
    assert_eq!(answer.status, 200, "{what} failed: {}", answer.text());
    answer.json()
}

fn room_id_of(answer: &Answer, what: &str) -> Option<String> {
    let room_id = answer.json()["room_id"].as_str().map(str::to_owned);
    if answer.status != 200 || room_id.is_none() {
        eprintln!("{what} failed: {} {}", answer.status, answer.text());
        return None;
    }
    room_id
}

// Figures and what the server used. ------------------------------------------------------------

/// One figure of the run, as `--out` writes it and `load-compare` reads it.
pub(crate) struct Figure {
    /// `scenario.name`, e.g. `send.events_per_s`.
    pub(crate) key: String,
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
}

/// The table printed at the end and the figures written to `--out`.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) table: Table,
    pub(crate) figures: Vec<Figure>,
    /// The scenario figures are recorded under, with `-` written `_`.
    scope: String,
}

impl Report {
    /// Starts the figures of `scenario`.
    pub(crate) fn section(&mut self, scenario: &str) {
        self.table.section(scenario.to_owned());
        self.scope = scenario.replace('-', "_");
    }

    /// Records a figure and shows it in the table.
    pub(crate) fn figure(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.table.info(label, show_value(value, unit));
        let (key, label) = (format!("{}.{key}", self.scope), label.to_owned());
        self.figures.push(Figure {
            key,
            label,
            value,
            unit,
        });
    }

    /// Latency percentiles in milliseconds, as `{key}_p{N}_ms` figures.
    pub(crate) fn latencies(&mut self, keys: &[&str], label: &str, l: &Latencies) {
        for (key, p) in keys.iter().zip([50.0, 95.0, 99.0, 100.0]) {
            let name = if p == 100.0 {
                "max".to_owned()
            } else {
                format!("p{p}")
            };
            let value = l.percentile(p).as_secs_f64() * 1000.0;
            self.figure(key, &format!("{label} {name}"), value, "ms");
        }
    }
}

fn show_value(value: f64, unit: &str) -> String {
    match unit {
        "" => format!("{value:.0}"),
        "ms" | "MB" | "s" | "cores" => format!("{value:.2} {unit}"),
        _ => format!("{value:.1} {unit}"),
    }
}

/// What the server (and the tool) used during one scenario: CPU seconds, and the peak RSS,
/// sampled every [`RSS_SAMPLE_EVERY`] and read from `VmHWM` when writing `5` to
/// `/proc/PID/clear_refs` reset it at the start.
pub(crate) struct Watch {
    pid: Option<u32>,
    before: Usage,
    started: Instant,
    hwm_reset: bool,
    peak_kb: Arc<AtomicU64>,
    sampler: Option<JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn start(pid: Option<u32>) -> Watch {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let hwm_reset =
            pid.is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok());
        let sampler = pid.map(|pid| {
            let peak = peak_kb.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(kb) = status_kb(pid, "VmRSS") {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    tokio::time::sleep(RSS_SAMPLE_EVERY).await;
                }
            })
        });
        Watch {
            pid,
            before: Usage::of(pid),
            started: Instant::now(),
            hwm_reset,
            peak_kb,
            sampler,
        }
    }

    /// Stops sampling and records the scenario's CPU and peak RSS under `scenario`.
    pub(crate) fn finish(mut self, report: &mut Report, peaks: &mut Vec<f64>) {
        if let Some(sampler) = self.sampler.take() {
            sampler.abort();
        }
        let after = Usage::of(self.pid);
        let wall = self.started.elapsed();
        let mut peak = self.peak_kb.load(Ordering::Relaxed);
        if self.hwm_reset {
            peak = peak.max(
                self.pid
                    .and_then(|pid| status_kb(pid, "VmHWM"))
                    .unwrap_or(0),
            );
        }
        let used = |i: usize| Some(after.cpu[i]? - self.before.cpu[i]?);
        if let Some(server) = used(0) {
            report.figure("server_cpu_s", "server CPU, whole scenario", server, "s");
        }
        if let Some(tool) = used(1) {
            report.figure("tool_cpu_s", "load tool CPU, whole scenario", tool, "s");
        }
        if peak > 0 {
            let mb = peak as f64 / 1024.0;
            peaks.push(mb);
            report.figure("peak_rss_mb", "server peak RSS", mb, "MB");
        }
        // The machine's busy time minus the server's and the tool's: another program that took
        // a core while this scenario ran disturbed its figures.
        if let (Some(machine), Some(server), Some(tool)) = (used(2), used(0), used(1)) {
            let others = (machine - server - tool).max(0.0) / wall.as_secs_f64();
            let label = "other programs' CPU, whole scenario";
            report.figure("other_cores", label, others, "cores");
        }
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

// The run. -------------------------------------------------------------------------------------

async fn run_load(options: LoadOptions) {
    let started = Instant::now();
    // reqwest is built without a TLS provider of its own (an https homeserver URL needs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client");
    let target = Target {
        http,
        base_url: options.homeserver.clone(),
        pid: options.pid,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let load = Arc::new(Load {
        target,
        secret: options.secret.clone(),
        prefix: format!("lt{stamp}"),
    });
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    println!(
        "Load run against {} ({}), {date}",
        options.label, options.homeserver
    );
    for (name, value) in machine_facts() {
        println!("  {name:<21} {value}");
    }
    let pid = options.pid;
    println!(
        "  server pid            {}",
        pid.map_or("none (no CPU or RSS figures)".into(), |p| p.to_string())
    );

    let mut report = Report::default();
    let mut peaks = Vec::new();
    report.section("server");
    if let Some(kb) = pid.and_then(|pid| status_kb(pid, "VmRSS")) {
        report.figure(
            "idle_rss_mb",
            "server RSS before the run (idle)",
            kb as f64 / 1024.0,
            "MB",
        );
    }

    // Every scenario draws its users from one pool, registered up front (not measured).
    let pool_size = [
        options.get("senders"),
        options.get("clients") + 1,
        options.get("joiners") + 1,
        options.get("parallelism"),
    ];
    let pool_size = pool_size.into_iter().max().unwrap_or(1);
    progress!("registering {pool_size} accounts with the shared secret");
    report.section("accounts");
    let watch = Watch::start(pid);
    let registering = Instant::now();
    let pool = load.accounts("user", pool_size).await;
    let rate = pool.len() as f64 / registering.elapsed().as_secs_f64();
    report.figure(
        "register_per_s",
        "shared-secret registrations/s (4 at a time)",
        rate,
        "/s",
    );
    watch.finish(&mut report, &mut peaks);
    // Password hashing has a memory profile of its own (argon2id takes 19 MiB per hash), so the
    // scenarios' peak is reported without the registrations too.
    let registration_peak = std::mem::take(&mut peaks);

    for scenario in &options.scenarios {
        let scenario_started = Instant::now();
        report.section(scenario);
        let watch = Watch::start(pid);
        let report = &mut report;
        match scenario.as_str() {
            "send" => load_send(&load, &options, &pool, report).await,
            "fan-out" => load_fanout(&load, &options, &pool, report).await,
            "initial-sync" => load_initial_sync(&load, &options, report).await,
            "rooms" => load_rooms(&load, &options, &pool, report).await,
            _ => load_big_room(&load, &options, &pool, report).await,
        }
        watch.finish(report, &mut peaks);
        progress!("{scenario} took {:.0?}", scenario_started.elapsed());
    }

    report.section("server");
    let all = peaks.iter().chain(&registration_peak);
    if let Some(peak) = all.copied().reduce(f64::max) {
        report.figure("peak_rss_mb", "server peak RSS over the run", peak, "MB");
    }
    if let Some(peak) = peaks.iter().copied().reduce(f64::max) {
        let label = "server peak RSS in the scenarios (registrations excluded)";
        report.figure("peak_rss_scenarios_mb", label, peak, "MB");
    }
    tokio::time::sleep(SETTLE).await;
    if let Some(kb) = pid.and_then(|pid| status_kb(pid, "VmRSS")) {
        report.figure(
            "end_rss_mb",
            "server RSS after the run (idle)",
            kb as f64 / 1024.0,
            "MB",
        );
    }
    report.table.print();
    let seconds = started.elapsed().as_secs_f64();
    println!("\nwhole run: {seconds:.0} s");
    if let Some(out) = &options.out {
        let figures: Vec<Value> = report
            .figures
            .iter()
            .map(|f| json!({"key": f.key, "label": f.label, "value": f.value, "unit": f.unit}))
            .collect();
        let scenarios = &options.scenarios;
        let sizes: BTreeMap<&str, usize> = options.numbers.iter().map(|(k, v)| (*k, *v)).collect();
        let file = json!({
            "label": options.label, "homeserver": options.homeserver, "date": date,
            "seconds": seconds, "scenarios": scenarios, "sizes": sizes, "figures": figures,
        });
        let text = serde_json::to_string_pretty(&file).expect("figures serialise");
        std::fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<LoadOptions, String> {
        LoadOptions::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn the_homeserver_and_the_secret_are_required_and_sizes_override_defaults() {
        let base = ["--homeserver", "http://127.0.0.1:8008/", "--register", "s"];
        let options = parse(&[&base[..], &["rooms", "--pid", "42", "--joiners", "7"]].concat());
        let options = options.unwrap();
        assert_eq!(options.homeserver, "http://127.0.0.1:8008");
        assert_eq!(
            (options.pid, options.scenarios.clone()),
            (Some(42), vec!["rooms".into()])
        );
        assert_eq!((options.get("joiners"), options.get("senders")), (7, 10));
        assert_eq!(parse(&base).unwrap().scenarios, LOAD_SCENARIOS);
        for bad in [&base[..2], &base[2..], &[&base[..], &["sned"]].concat()] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse(&[&base[..], &["--rooms", "0"]].concat()).is_err());
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        let rss = status_kb(std::process::id(), "VmRSS");
        assert!(rss.is_some_and(|kb| kb > 0), "{rss:?}");
    }
}
