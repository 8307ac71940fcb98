//! The three scenarios: sending into one room, paging `/messages`, and a room of 10,000 members.

use super::*;

/// Returns whether both targets were met.
pub(crate) async fn send_scenario(options: &Options, synchronous: &str, table: &mut Table) -> bool {
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

pub(crate) async fn messages_scenario(options: &Options, table: &mut Table) {
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

pub(crate) async fn members_scenario(options: &Options, table: &mut Table) {
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
