//! The `/sync` scenarios: how fast a message reaches 100 long-polling clients (`sync-fanout`),
//! how long an initial sync of a user in 500 rooms takes (`sync-initial`), and what 100 idle
//! long-polls cost the server (`sync-idle`). Shared pieces (a client that long-polls, counting a
//! process's context switches) live here too, because only these scenarios need them.

use std::collections::HashMap;

use complement_tests::query;
use tokio::sync::watch;

use super::*;

/// Targets from the issue, on a 2-core machine.
const FANOUT_P99: Duration = Duration::from_millis(10);
const INITIAL_P50: Duration = Duration::from_millis(250);
/// "An idle long-poll costs no CPU", read as: the server uses less than half a percent of one
/// core while every client waits (clock ticks are 10 ms, so this is at most 5 ticks in 10 s).
const IDLE_CPU_SECONDS: f64 = 0.05;

/// The `timeout` every long-poll asks for.
const LONG_POLL_MS: u64 = 30_000;
pub(crate) const FANOUT_FILTER: &str = r#"{"room":{"timeline":{"limit":100}}}"#;
pub(crate) const INITIAL_FILTER: &str =
    r#"{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":10}}}"#;
/// Seconds of paced sending before the measured ones, so that every client is already in its
/// long-poll loop and every connection is open when measuring starts.
const FANOUT_WARMUP_SECONDS: usize = 2;
/// How long clients may take to catch up after the last message before they are stopped and
/// whatever they have not seen counts as missed.
const FANOUT_GRACE: Duration = Duration::from_secs(5);
/// Members of each `sync-initial` room besides the syncing user, and messages in each.
const INITIAL_OTHER_MEMBERS: usize = 3;
const INITIAL_MESSAGES_PER_ROOM: usize = 5;
const INITIAL_WARMUP_RUNS: usize = 3;
/// Long-polls are given this long to reach the server before the idle window opens.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

// Scenario: one sender, many long-polling readers. --------------------------------------------

pub(crate) async fn sync_fanout_scenario(options: &Options, table: &mut Table) {
    let synchronous = options.synchronous();
    table.section(format!("sync-fanout (synchronous={synchronous})"));
    progress!("sync-fanout, synchronous={synchronous}: starting a server");
    let bench = Bench::start(synchronous).await;
    let clients = options.get("clients");
    let mut users = bench.users("fanout", clients + 1).await;
    let room_id = room_with_members(&users).await;
    let sender = users.remove(0);
    let rate = options.get("rate");
    let warmup = rate * FANOUT_WARMUP_SECONDS;
    let total = warmup + rate * options.get("seconds");

    progress!("{clients} clients: initial sync, then long-polling");
    let (stop, stopped) = watch::channel(false);
    let mut followers = Vec::new();
    for user in &users {
        let poller = Poller::new(&bench.target(), &user.access_token, FANOUT_FILTER);
        let since = poller.initial_next_batch().await;
        let (room_id, stopped) = (room_id.clone(), stopped.clone());
        followers.push(tokio::spawn(follow(poller, since, room_id, total, stopped)));
    }
    progress!("sending {total} messages at {rate}/s, the first {warmup} unmeasured");
    let token = &sender.access_token;
    let paced = send_paced(&bench.target(), token, &room_id, rate, warmup, total).await;
    let caught_up = Instant::now() + FANOUT_GRACE;
    while Instant::now() < caught_up && !followers.iter().all(|f| f.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let mut logs = Vec::new();
    for follower in followers {
        logs.push(follower.await.expect("a sync client panicked"));
    }

    let report = Deliveries::count(&logs, &paced.sends, warmup);
    let measured = total - warmup;
    let p99 = report.from_sent.percentile(99.0);
    let figure = format!("delivery delay p99, PUT sent -> /sync answer read ({clients} clients)");
    table.row(&figure, ms(p99), "< 10 ms", p99 < FANOUT_P99);
    let spread = report.from_sent.summary(&[50.0, 90.0, 100.0]);
    table.info("delivery delay from PUT sent: p50 / p90 / max", spread);
    let spread = report.from_answered.summary(&[50.0, 99.0, 100.0]);
    let early = report.before_answer;
    table.info(
        "delay from PUT answered: p50 / p99 / max (0 if before the answer)",
        format!("{spread}; {early} before the answer"),
    );
    let expected = report.expected;
    table.row(
        "deliveries missed / duplicated",
        format!("{} / {} of {expected}", report.missed, report.duplicated),
        "0 / 0",
        report.missed == 0 && report.duplicated == 0 && expected > 0,
    );
    let short = logs.iter().filter(|l| l.missed(&paced.sends, warmup) > 0);
    table.info("clients that missed something", short.count());
    let ok = paced.sends[warmup..].iter().filter(|s| s.ok).count();
    let wall = paced.wall.as_secs_f64();
    table.info(
        "messages sent / failed / rate achieved",
        format!("{ok} / {} / {:.1}/s", measured - ok, ok as f64 / wall),
    );
    let put = Latencies::new(paced.sends[warmup..].iter().map(|s| s.latency()).collect());
    table.info(
        "PUT latency p50 / p99 / max",
        put.summary(&[50.0, 99.0, 100.0]),
    );
    // Answers while the measured messages were sent: how far the server batched messages into
    // fewer answers, which it does when it cannot answer every client for every message.
    let window = paced.measuring..paced.measuring + paced.wall;
    let answers = logs.iter().flat_map(|l| &l.answers);
    let answers = answers.filter(|at| window.contains(*at)).count();
    let per_answer = report.delivered as f64 / answers.max(1) as f64;
    table.info(
        "sync answers/s (all clients); measured messages per answer",
        format!("{:.0}; {per_answer:.2}", answers as f64 / wall),
    );
    let limited: usize = logs.iter().map(|l| l.limited).sum();
    let errors: usize = logs.iter().map(|l| l.errors).sum();
    table.info(
        "limited timelines / failed syncs",
        format!("{limited} / {errors}"),
    );
    table.info(
        CPU_FIGURE,
        paced.after.cores_since(&paced.before, paced.wall),
    );
}

/// One message sent by [`send_paced`]: when the PUT left and when its answer was read.
pub(crate) struct Sent {
    pub(crate) sent: Instant,
    pub(crate) answered: Instant,
    pub(crate) ok: bool,
}

impl Sent {
    pub(crate) fn latency(&self) -> Duration {
        self.answered - self.sent
    }
}

pub(crate) struct Paced {
    pub(crate) sends: Vec<Sent>,
    /// CPU counters when the first measured message was due and after the last was answered.
    pub(crate) before: Usage,
    pub(crate) after: Usage,
    pub(crate) measuring: Instant,
    pub(crate) wall: Duration,
}

/// Sends `total` messages, message `i` leaving at `i / rate` seconds after the start on a task
/// of its own, whether or not earlier ones have been answered. This is how independent users
/// load a server: a slow server gets more requests in flight, not fewer messages, so the
/// offered rate stays the asked one. Each message carries its sequence number in
/// `content.seq`, which is how the clients recognise it.
pub(crate) async fn send_paced(
    target: &Target,
    token: &str,
    room_id: &str,
    rate: usize,
    warmup: usize,
    total: usize,
) -> Paced {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let prefix = format!(
        "{}{}",
        target.base_url,
        room_path(room_id, "send/m.room.message/fanout-")
    );
    let (mut in_flight, start) = (Vec::with_capacity(total), Instant::now());
    let (mut before, mut measuring) = (None, start);
    for i in 0..total {
        tokio::time::sleep_until((start + period * i as u32).into()).await;
        if i == warmup {
            before = Some(Usage::of(target.pid));
            measuring = Instant::now();
        }
        let body = json!({"msgtype": "m.text", "body": format!("fanout {i}"), "seq": i});
        let request = target
            .http
            .put(format!("{prefix}{i}"))
            .bearer_auth(token)
            .json(&body);
        in_flight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = timed(request).await;
            let answered = Instant::now();
            if answer.status != 200 {
                eprintln!("a send failed: {} {}", answer.status, answer.text());
            }
            let ok = answer.status == 200;
            Sent { sent, answered, ok }
        }));
    }
    let mut sends = Vec::with_capacity(total);
    for send in in_flight {
        sends.push(send.await.expect("a send task panicked"));
    }
    let after = Usage::of(target.pid);
    let before = before.unwrap_or_else(|| Usage::of(target.pid));
    let wall = measuring.elapsed();
    Paced {
        sends,
        before,
        after,
        measuring,
        wall,
    }
}

/// What one client saw: when each message arrived (by sequence number, so a duplicate shows up
/// as a second arrival), and how its long-polls went.
pub(crate) struct Follow {
    pub(crate) arrivals: Vec<(usize, Instant)>,
    /// When each successful answer was read.
    pub(crate) answers: Vec<Instant>,
    pub(crate) limited: usize,
    pub(crate) errors: usize,
}

impl Follow {
    /// Measured messages that were sent successfully and never arrived.
    fn missed(&self, sends: &[Sent], warmup: usize) -> usize {
        let mut seen = vec![false; sends.len()];
        for (seq, _) in &self.arrivals {
            seen[*seq] = true;
        }
        (warmup..sends.len())
            .filter(|i| sends[*i].ok && !seen[*i])
            .count()
    }
}

/// Long-polls `/sync` from `since` until every one of `total` messages has arrived, or until told
/// to stop. The arrival time is taken when the whole answer has been read, before parsing it.
pub(crate) async fn follow(
    poller: Poller,
    mut since: String,
    room_id: String,
    total: usize,
    mut stopped: watch::Receiver<bool>,
) -> Follow {
    let mut log = Follow {
        arrivals: Vec::with_capacity(total),
        answers: Vec::new(),
        limited: 0,
        errors: 0,
    };
    let mut seen = vec![false; total];
    let mut unseen = total;
    while unseen > 0 {
        let answer = tokio::select! {
            answer = poller.poll(Some(&since), LONG_POLL_MS) => answer,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let at = Instant::now();
        let body = answer.json();
        let next = body["next_batch"].as_str();
        let (200, Some(next)) = (answer.status, next) else {
            log.errors += 1;
            eprintln!("a sync failed: {} {}", answer.status, answer.text());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        since = next.to_owned();
        log.answers.push(at);
        let timeline = &body["rooms"]["join"][&room_id]["timeline"];
        log.limited += usize::from(timeline["limited"].as_bool() == Some(true));
        let events = timeline["events"].as_array().into_iter().flatten();
        for seq in events.filter_map(|e| e["content"]["seq"].as_u64()) {
            let seq = seq as usize;
            if seq < total {
                log.arrivals.push((seq, at));
                unseen -= usize::from(!std::mem::replace(&mut seen[seq], true));
            }
        }
    }
    log
}

/// Every client's arrivals of the measured messages, checked and turned into delays.
pub(crate) struct Deliveries {
    /// From the moment the PUT was sent: an upper bound on the delay after the commit, which
    /// falls somewhere between the PUT leaving and its answer arriving.
    pub(crate) from_sent: Latencies,
    /// From the moment the PUT's answer was read; zero when the message reached the client first.
    pub(crate) from_answered: Latencies,
    pub(crate) before_answer: usize,
    /// Client-message pairs expected, delivered at least once, never delivered, delivered again.
    pub(crate) expected: usize,
    pub(crate) delivered: usize,
    pub(crate) missed: usize,
    pub(crate) duplicated: usize,
}

impl Deliveries {
    pub(crate) fn count(logs: &[Follow], sends: &[Sent], warmup: usize) -> Deliveries {
        let (mut from_sent, mut from_answered) = (Vec::new(), Vec::new());
        let (mut before_answer, mut delivered, mut duplicated) = (0, 0, 0);
        for log in logs {
            let mut seen = vec![false; sends.len()];
            for &(seq, at) in log.arrivals.iter().filter(|(seq, _)| *seq >= warmup) {
                if std::mem::replace(&mut seen[seq], true) {
                    duplicated += 1;
                    continue;
                }
                delivered += 1;
                let send = &sends[seq];
                from_sent.push(at.saturating_duration_since(send.sent));
                before_answer += usize::from(at < send.answered);
                from_answered.push(at.saturating_duration_since(send.answered));
            }
        }
        let ok = sends[warmup..].iter().filter(|s| s.ok).count();
        let missed = logs.iter().map(|l| l.missed(sends, warmup)).sum();
        Deliveries {
            from_sent: Latencies::new(from_sent),
            from_answered: Latencies::new(from_answered),
            before_answer,
            expected: ok * logs.len(),
            delivered,
            missed,
            duplicated,
        }
    }
}

// Scenario: the initial sync of a user in many rooms. ------------------------------------------

pub(crate) async fn sync_initial_scenario(options: &Options, table: &mut Table) {
    let synchronous = options.synchronous();
    table.section(format!("sync-initial (synchronous={synchronous})"));
    progress!("sync-initial, synchronous={synchronous}: starting a server");
    let bench = Bench::start(synchronous).await;
    let reader = bench.server.register_user("reader").await;
    let others = bench.users("member", INITIAL_OTHER_MEMBERS).await;
    let rooms = options.get("rooms");

    progress!(
        "{rooms} rooms of {} members with {INITIAL_MESSAGES_PER_ROOM} messages each",
        INITIAL_OTHER_MEMBERS + 1
    );
    let members = Arc::new([&others[..], std::slice::from_ref(&reader)].concat());
    let built = bounded(rooms, 8, "rooms built", move |_, i| {
        let members = members.clone();
        async move {
            // The room's creator rotates, so that the syncing user never created a room.
            let creator = &members[i % INITIAL_OTHER_MEMBERS];
            let room_id = creator.create_room(json!({"preset": "public_chat"})).await;
            for member in members.iter().filter(|m| m.user_id != creator.user_id) {
                member.join(&room_id).await;
            }
            for m in 0..INITIAL_MESSAGES_PER_ROOM {
                let sender = &members[(i + m) % members.len()];
                sender.send_message(&room_id, &format!("message {m}")).await;
            }
        }
    })
    .await;
    let rate = rooms as f64 / built.wall.as_secs_f64();
    table.info(
        "rooms built (create, 3 joins, 5 messages)",
        format!("{rooms} at {rate:.1}/s"),
    );

    let poller = Poller::new(&bench.target(), &reader.access_token, INITIAL_FILTER);
    let runs = options.get("runs");
    progress!("{INITIAL_WARMUP_RUNS} warm-up and {runs} measured initial syncs");
    for _ in 0..INITIAL_WARMUP_RUNS {
        poller.poll(None, 0).await;
    }
    let (before, measuring) = (Usage::read(&bench.server), Instant::now());
    let mut latencies = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let answer = poller.poll(None, 0).await;
        assert_eq!(answer.status, 200, "initial sync failed: {}", answer.text());
        latencies.push(answer.elapsed);
        last = Some(answer);
    }
    let wall = measuring.elapsed();
    let cpu = Usage::read(&bench.server);

    let latencies = Latencies::new(latencies);
    let p50 = latencies.percentile(50.0);
    let figure = format!("initial sync p50, {rooms} rooms, lazy-loading filter");
    table.row(&figure, ms(p50), "< 250 ms", p50 < INITIAL_P50);
    table.info("initial sync p90 / max", latencies.summary(&[90.0, 100.0]));
    let last = last.expect("at least one run");
    let shape = Shape::of(&last.json());
    table.info(
        "answer size; joined rooms; timeline / state events per room",
        format!(
            "{:.0} KiB; {} (expected {rooms}); {:.1} / {:.1}",
            last.body.len() as f64 / 1024.0,
            shape.rooms,
            shape.timeline as f64 / shape.rooms.max(1) as f64,
            shape.state as f64 / shape.rooms.max(1) as f64,
        ),
    );
    let server_ms = cpu.cpu[0].zip(before.cpu[0]).map(|(a, b)| (a - b) * 1000.0);
    let per_sync = server_ms.map_or("?".to_owned(), |t| format!("{:.0} ms", t / runs as f64));
    table.info("server CPU per initial sync", per_sync);
    table.info(CPU_FIGURE, cpu.cores_since(&before, wall));
}

/// The size of an initial sync's answer, in rooms and events.
struct Shape {
    rooms: usize,
    timeline: usize,
    state: usize,
}

impl Shape {
    fn of(body: &Value) -> Shape {
        let joined = body["rooms"]["join"].as_object().into_iter().flatten();
        let count = |room: &Value, part: &str| room[part]["events"].as_array().map_or(0, Vec::len);
        let mut shape = Shape {
            rooms: 0,
            timeline: 0,
            state: 0,
        };
        for (_, room) in joined {
            shape.rooms += 1;
            shape.timeline += count(room, "timeline");
            shape.state += count(room, "state");
        }
        shape
    }
}

// Scenario: many long-polls and no traffic. -----------------------------------------------------

pub(crate) async fn sync_idle_scenario(options: &Options, table: &mut Table) {
    let synchronous = options.synchronous();
    table.section(format!("sync-idle (synchronous={synchronous})"));
    progress!("sync-idle, synchronous={synchronous}: starting a server");
    let bench = Bench::start(synchronous).await;
    let clients = options.get("clients");
    let users = bench.users("idle", clients).await;
    room_with_members(&users).await;
    let window = Duration::from_secs(options.get("idle-seconds") as u64);

    // The same window without any client first: what the server's own timers cost, so that
    // the figure with clients can be read against it.
    progress!("baseline: {window:?} with no client");
    tokio::time::sleep(IDLE_SETTLE).await;
    let baseline = IdleWindow::measure(&bench, window).await;

    progress!("{clients} clients: initial sync, then one long-poll each");
    let (stop, stopped) = watch::channel(false);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut pollers = Vec::new();
    for user in &users {
        let poller = Poller::new(&bench.target(), &user.access_token, FANOUT_FILTER);
        let mut since = poller.initial_next_batch().await;
        let (mut stopped, answered) = (stopped.clone(), answered.clone());
        pollers.push(tokio::spawn(async move {
            loop {
                let answer = tokio::select! {
                    answer = poller.poll(Some(&since), LONG_POLL_MS) => answer,
                    _ = stopped.wait_for(|stop| *stop) => return,
                };
                answered.fetch_add(1, Ordering::Relaxed);
                if let Some(next) = answer.json()["next_batch"].as_str() {
                    since = next.to_owned();
                }
            }
        }));
    }
    tokio::time::sleep(IDLE_SETTLE).await;
    progress!("measuring {window:?} of idle long-polls");
    let answered_before = answered.load(Ordering::Relaxed);
    let polling = IdleWindow::measure(&bench, window).await;
    let answered_during = answered.load(Ordering::Relaxed) - answered_before;
    let _ = stop.send(true);
    for poller in pollers {
        poller.await.expect("a sync client panicked");
    }

    let seconds = window.as_secs();
    let figure = format!("server CPU during {seconds} s of {clients} idle long-polls");
    let value = polling
        .cpu
        .map_or("?".to_owned(), |s| format!("{s:.2} CPU s"));
    let ok = polling.cpu.is_some_and(|s| s < IDLE_CPU_SECONDS);
    table.row(&figure, value, "~0 (< 0.05 CPU s)", ok);
    let value = baseline
        .cpu
        .map_or("?".to_owned(), |s| format!("{s:.2} CPU s"));
    table.info(
        &format!("server CPU during {seconds} s with no client"),
        value,
    );
    table.info(
        "server context switches: with long-polls / with no client",
        format!("{} / {}", show(polling.switches), show(baseline.switches)),
    );
    table.info(
        "sync answers during the window (expected 0)",
        answered_during,
    );
    table.info(CPU_FIGURE, polling.cores);
}

/// The server's CPU seconds and context switches over a window of waiting.
struct IdleWindow {
    cpu: Option<f64>,
    switches: Option<u64>,
    cores: String,
}

impl IdleWindow {
    async fn measure(bench: &Bench, window: Duration) -> IdleWindow {
        let pid = server_pid(&bench.server);
        let (before, switched) = (Usage::read(&bench.server), pid.and_then(context_switches));
        tokio::time::sleep(window).await;
        let (after, switches) = (Usage::read(&bench.server), pid.and_then(context_switches));
        // Per thread, because the runtime's idle blocking threads exit during a quiet window and
        // take their counts with them: a sum over the whole process could go down.
        let switches = switches.zip(switched).map(|(after, before)| {
            let since = |(tid, n): (&u32, &u64)| n - before.get(tid).copied().unwrap_or(0).min(*n);
            after.iter().map(since).sum()
        });
        IdleWindow {
            cpu: after.cpu[0].zip(before.cpu[0]).map(|(a, b)| a - b),
            switches,
            cores: after.cores_since(&before, window),
        }
    }
}

/// Voluntary and involuntary context switches of each of a process's threads: every time one
/// of them woke up, which CPU time (counted in 10 ms ticks) is too coarse to show.
fn context_switches(pid: u32) -> Option<HashMap<u32, u64>> {
    let mut threads = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_once(':')?.1.trim().parse::<u64>().ok());
        threads.insert(tid, switches.sum());
    }
    Some(threads)
}

fn show(value: Option<u64>) -> String {
    value.map_or("?".to_owned(), |v| v.to_string())
}

// Shared: a client of `/sync`. -----------------------------------------------------------------

/// One user's `/sync` requests with a fixed filter.
pub(crate) struct Poller {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Poller {
    pub(crate) fn new(target: &Target, token: &str, filter: &str) -> Poller {
        let path = "/_matrix/client/v3/sync";
        Poller {
            http: target.http.clone(),
            url: format!("{}{path}{}", target.base_url, query(&[("filter", filter)])),
            token: token.to_owned(),
        }
    }

    /// One `/sync`: an initial one without `since`, or a long-poll of up to `timeout_ms`.
    pub(crate) async fn poll(&self, since: Option<&str>, timeout_ms: u64) -> Answer {
        let mut url = format!("{}&timeout={timeout_ms}", self.url);
        if let Some(since) = since {
            url.push_str(&format!("&since={}", encode(since)));
        }
        timed(self.http.get(url).bearer_auth(&self.token)).await
    }

    /// An initial sync's `next_batch`, where a client starts long-polling.
    pub(crate) async fn initial_next_batch(&self) -> String {
        let answer = self.poll(None, 0).await;
        let body = answer.json();
        assert_eq!(answer.status, 200, "initial sync failed: {body}");
        body["next_batch"]
            .as_str()
            .expect("an initial sync has a next_batch")
            .to_owned()
    }
}
