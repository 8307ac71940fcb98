//! The scenarios of `bench load`, each against the homeserver given by URL and through the
//! Client-Server API only: `send`, `fan-out`, `initial-sync`, `rooms` and `big-room`. Each records
//! its figures in the [`Report`]; `load.rs` adds the server's CPU and peak RSS around it.

use reqwest::Method;
use tokio::sync::watch;

use super::*;

/// The initial sync without lazy-loading members: every member's state event comes along.
const FULL_MEMBERS_FILTER: &str = r#"{"room":{"timeline":{"limit":10}}}"#;
const MEASURED_CPU: &str = "CPU busy while measuring: server / tool / other programs";
/// How long fan-out clients may take to catch up after the last message was answered, before
/// whatever they have not seen counts as lost. Generous, because Synapse needs seconds.
const FANOUT_GRACE: Duration = Duration::from_secs(15);

// send: U users in one room, each sending M messages back to back, all at once. -----------------

pub(crate) async fn load_send(
    load: &Load,
    options: &LoadOptions,
    pool: &[Account],
    report: &mut Report,
) {
    let senders = &pool[..options.get("senders")];
    let room = [room_of(load, senders).await];
    let tokens: Vec<&str> = senders.iter().map(|a| a.token.as_str()).collect();
    let (warmup, total) = (options.get("warmup"), options.get("messages"));
    let (warmup, total) = (warmup * senders.len(), total * senders.len());
    progress!(
        "send: {warmup} warm-up messages, then {total} measured from {} senders",
        senders.len()
    );
    send_concurrently(&load.target, &tokens, &room, "warmup", warmup).await;
    let before = Usage::of(load.target.pid);
    let run = send_concurrently(&load.target, &tokens, &room, "run", total).await;
    let after = Usage::of(load.target.pid);
    let latencies = Latencies::new(run.outputs.iter().flatten().copied().collect());
    let sent = latencies.len();
    let label = format!("events/s, {} senders into 1 room", senders.len());
    report.figure(
        "events_per_s",
        &label,
        sent as f64 / run.wall.as_secs_f64(),
        "events/s",
    );
    let keys = ["p50_ms", "p95_ms", "p99_ms", "max_ms"];
    report.latencies(&keys, "send latency", &latencies);
    report.figure("failed", "sends failed", (total - sent) as f64, "");
    if let (Some(a), Some(b)) = (after.cpu[0], before.cpu[0]) {
        let per_event = (a - b) * 1000.0 / sent.max(1) as f64;
        report.figure(
            "cpu_ms_per_event",
            "server CPU per sent event",
            per_event,
            "ms",
        );
    }
    report
        .table
        .info(MEASURED_CPU, after.cores_since(&before, run.wall));
}

/// A public room created by the first account and joined by the others.
async fn room_of(load: &Load, members: &[Account]) -> String {
    let room_id = load.public_room(&members[0]).await;
    for member in &members[1..] {
        load.join(member, &room_id)
            .await
            .expect("a member could not join");
    }
    room_id
}

// fan-out: R clients long-poll /sync while one user sends K messages at a fixed rate. ----------

pub(crate) async fn load_fanout(
    load: &Load,
    options: &LoadOptions,
    pool: &[Account],
    report: &mut Report,
) {
    let clients = options.get("clients");
    let room_id = room_of(load, &pool[..=clients]).await;
    let (sender, readers) = (&pool[0], &pool[1..=clients]);
    let (rate, warmup) = (options.get("rate"), options.get("fanout-warmup"));
    let total = warmup + options.get("fanout-messages");

    progress!("fan-out: {clients} clients, initial sync, then long-polling");
    let (stop, stopped) = watch::channel(false);
    let mut followers = Vec::new();
    for reader in readers {
        let poller = Poller::new(&load.target, &reader.token, FANOUT_FILTER);
        let since = poller.initial_next_batch().await;
        let (room_id, stopped) = (room_id.clone(), stopped.clone());
        followers.push(tokio::spawn(follow(poller, since, room_id, total, stopped)));
    }
    progress!("fan-out: sending {total} messages at {rate}/s, the first {warmup} unmeasured");
    let paced = send_paced(&load.target, &sender.token, &room_id, rate, warmup, total).await;
    let caught_up = Instant::now() + FANOUT_GRACE;
    while Instant::now() < caught_up && !followers.iter().all(|f| f.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let mut logs = Vec::new();
    for follower in followers {
        logs.push(follower.await.expect("a sync client panicked"));
    }

    let deliveries = Deliveries::count(&logs, &paced.sends, warmup);
    let label = format!("delay PUT sent -> /sync answer read, {clients} clients");
    report.latencies(
        &["p50_ms", "p95_ms", "p99_ms", "max_ms"],
        &label,
        &deliveries.from_sent,
    );
    report.figure("lost", "deliveries lost", deliveries.missed as f64, "");
    report.figure(
        "duplicated",
        "deliveries duplicated",
        deliveries.duplicated as f64,
        "",
    );
    report
        .table
        .info("deliveries expected", deliveries.expected);
    let ok: Vec<&Sent> = paced.sends[warmup..].iter().filter(|s| s.ok).collect();
    let achieved = ok.len() as f64 / paced.wall.as_secs_f64();
    report.figure(
        "send_rate",
        &format!("messages/s sent (asked {rate}/s)"),
        achieved,
        "/s",
    );
    let put = Latencies::new(ok.iter().map(|s| s.latency()).collect());
    report.latencies(&["put_p50_ms"], "PUT latency", &put);
    let errors: usize = logs.iter().map(|l| l.errors + l.limited).sum();
    report
        .table
        .info("failed syncs + limited timelines", errors);
    report.table.info(
        MEASURED_CPU,
        paced.after.cores_since(&paced.before, paced.wall),
    );
}

// initial-sync: a user in N rooms with S messages each. ------------------------------------------

pub(crate) async fn load_initial_sync(
    load: &Arc<Load>,
    options: &LoadOptions,
    report: &mut Report,
) {
    let (rooms, per_room) = (options.get("rooms"), options.get("room-messages"));
    // Two accounts of their own: the syncing user must be in these rooms and no others.
    let mut two = load.accounts("sync", 2).await;
    let (syncer, member) = (Arc::new(two.remove(0)), Arc::new(two.remove(0)));
    progress!("initial-sync: {rooms} rooms of 2 members with {per_room} messages each");
    let (l, s, m) = (load.clone(), syncer.clone(), member.clone());
    let built = bounded(rooms, 4, "rooms built", move |_, i| {
        let (load, syncer, member) = (l.clone(), s.clone(), m.clone());
        async move {
            let room_id = load.public_room(&member).await;
            load.join(&syncer, &room_id)
                .await
                .expect("the syncing user could not join");
            for n in 0..per_room {
                let from = if n % 2 == 0 { &member } else { &syncer };
                load.send_text(
                    from,
                    &room_id,
                    &format!("r{i}m{n}"),
                    &format!("message {n}"),
                )
                .await;
            }
        }
    })
    .await;
    let rate = rooms as f64 / built.wall.as_secs_f64();
    report.table.info(
        "rooms built/s (create, join, messages)",
        format!("{rate:.1}"),
    );

    let runs = options.get("syncs");
    progress!("initial-sync: 1 warm-up and {runs} measured syncs, with and without lazy-loading");
    // Synapse caches a /sync answer for two minutes under its parameters, `timeout` among them;
    // an initial sync answers at once whatever the timeout, so a new timeout per request keeps
    // every request a real one on either server.
    let mut timeout = 0;
    for (key, filter, what) in [
        ("lazy_ms", INITIAL_FILTER, "lazy-loaded members"),
        ("full_ms", FULL_MEMBERS_FILTER, "all members"),
    ] {
        let poller = Poller::new(&load.target, &syncer.token, filter);
        let (mut latencies, mut seen) = (Vec::new(), 0);
        for run in 0..=runs {
            timeout += 1;
            let answer = poller.poll(None, timeout).await;
            let body = ok(&answer, "an initial sync");
            seen = body["rooms"]["join"].as_object().map_or(0, |r| r.len());
            if run > 0 {
                latencies.push(answer.elapsed);
            }
        }
        let latencies = Latencies::new(latencies);
        let label = format!("initial sync p50, {rooms} rooms, {what}");
        let p50 = latencies.percentile(50.0).as_secs_f64() * 1000.0;
        report.figure(key, &label, p50, "ms");
        let spread = latencies.summary(&[100.0]);
        report.table.info(
            "  max; joined rooms in the answer",
            format!("{spread}; {seen}"),
        );
    }
}

// rooms: creating N rooms one after the other, then N at once. ----------------------------------

pub(crate) async fn load_rooms(
    load: &Arc<Load>,
    options: &LoadOptions,
    pool: &[Account],
    report: &mut Report,
) {
    let (count, parallelism) = (options.get("create"), options.get("parallelism"));
    progress!("rooms: {count} created one after the other");
    let (started, mut latencies) = (Instant::now(), Vec::new());
    for _ in 0..count {
        let (room_id, elapsed) = load.create_room(&pool[0], json!({})).await;
        latencies.extend(room_id.map(|_| elapsed));
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    report.figure(
        "sequential_per_s",
        "rooms/s created sequentially",
        rate,
        "/s",
    );
    let latencies = Latencies::new(latencies);
    report.latencies(&["sequential_p50_ms"], "createRoom latency", &latencies);

    progress!("rooms: {count} created by {parallelism} users at once");
    let (l, creators) = (load.clone(), Arc::new(pool[..parallelism].to_vec()));
    let run = bounded(count, parallelism, "rooms created", move |worker, _| {
        let (load, creators) = (l.clone(), creators.clone());
        async move {
            load.create_room(&creators[worker], json!({}))
                .await
                .0
                .is_some()
        }
    })
    .await;
    let created = run.outputs.iter().filter(|ok| **ok).count();
    let label = format!("rooms/s created by {parallelism} users at once");
    report.figure(
        "concurrent_per_s",
        &label,
        created as f64 / run.wall.as_secs_f64(),
        "/s",
    );
    report.figure(
        "failed",
        "room creations failed",
        (2 * count - latencies.len() - created) as f64,
        "",
    );
}

// big-room: J users join one public room; then /members and /joined_members. -------------------

pub(crate) async fn load_big_room(
    load: &Arc<Load>,
    options: &LoadOptions,
    pool: &[Account],
    report: &mut Report,
) {
    let (joiners, parallelism) = (options.get("joiners"), options.get("parallelism"));
    let creator = &pool[0];
    let room_id = load.public_room(creator).await;
    progress!("big-room: {joiners} users join, {parallelism} at a time");
    let (l, room) = (load.clone(), room_id.clone());
    let accounts = Arc::new(pool[1..=joiners].to_vec());
    let run = bounded(joiners, parallelism, "joined", move |_, i| {
        let (load, accounts, room) = (l.clone(), accounts.clone(), room.clone());
        async move { load.join(&accounts[i], &room).await }
    })
    .await;
    let latencies = Latencies::new(run.outputs.iter().flatten().copied().collect());
    let joined = latencies.len();
    let label = format!("joins/s, {parallelism} at a time");
    report.figure(
        "joins_per_s",
        &label,
        joined as f64 / run.wall.as_secs_f64(),
        "/s",
    );
    report.latencies(
        &["join_p50_ms", "join_p95_ms", "join_p99_ms"],
        "join latency",
        &latencies,
    );
    report.figure("failed", "joins failed", (joiners - joined) as f64, "");

    let runs = options.get("listings");
    for (key, endpoint, field) in [
        ("members_ms", "members", "chunk"),
        ("joined_members_ms", "joined_members", "joined"),
    ] {
        let path = room_path(&room_id, endpoint);
        let (mut latencies, mut count) = (Vec::new(), 0);
        for run in 0..=runs {
            let answer = load
                .call(Method::GET, Some(&creator.token), &path, None)
                .await;
            let body = ok(&answer, endpoint);
            count = body[field]
                .as_array()
                .map_or_else(|| body[field].as_object().map_or(0, |o| o.len()), Vec::len);
            if run > 0 {
                latencies.push(answer.elapsed);
            }
        }
        let p50 = Latencies::new(latencies).percentile(50.0).as_secs_f64() * 1000.0;
        let label = format!("/{endpoint} p50 ({count} members, expected {})", joined + 1);
        report.figure(key, &label, p50, "ms");
    }
}
