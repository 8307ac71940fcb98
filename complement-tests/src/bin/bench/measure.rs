//! Measuring: bounded concurrency, timed requests, latency percentiles, CPU use, database sizes
//! and the results table.

use super::*;

/// What [`bounded`] did: each job's output in job order, and when each job finished.
pub(crate) struct Bounded<T> {
    pub(crate) outputs: Vec<T>,
    pub(crate) finished: Vec<Duration>,
    pub(crate) wall: Duration,
}

impl<T> Bounded<T> {
    /// Jobs per second over the whole run, its first tenth and its last tenth (by finish time),
    /// which shows whether the work gets slower as the room grows.
    pub(crate) fn rates(&self) -> (f64, f64, f64) {
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
pub(crate) async fn bounded<T, F, Fut>(
    count: usize,
    parallelism: usize,
    verb: &str,
    job: F,
) -> Bounded<T>
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
pub(crate) struct DbSize {
    pub(crate) files: u64,
    /// The WAL the stopped server left behind, before the checkpoint.
    pub(crate) wal_left: u64,
    pub(crate) tables: BTreeMap<String, u64>,
}

impl DbSize {
    pub(crate) fn measure(data_dir: &Path) -> DbSize {
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
    pub(crate) fn growth_since(&self, before: &DbSize) -> Vec<(String, u64)> {
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
pub(crate) struct Bench {
    pub(crate) server: Server,
    pub(crate) http: reqwest::Client,
}

impl Bench {
    pub(crate) async fn start(synchronous: &str) -> Bench {
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

    pub(crate) async fn users(&self, prefix: &str, count: usize) -> Vec<User> {
        let mut users = Vec::with_capacity(count);
        for i in 0..count {
            users.push(self.server.register_user(&format!("{prefix}-{i}")).await);
        }
        users
    }

    /// The server as [`send_concurrently`] and the `/sync` clients address it.
    pub(crate) fn target(&self) -> Target {
        Target {
            http: self.http.clone(),
            base_url: self.server.base_url(),
            pid: server_pid(&self.server),
        }
    }

    /// [`send_concurrently`] with these users, sender `i` being `users[i]`.
    pub(crate) async fn send_concurrently(
        &self,
        users: &[User],
        rooms: &[impl AsRef<str>],
        phase: &'static str,
        count: usize,
    ) -> Bounded<Option<Duration>> {
        let tokens: Vec<&str> = users.iter().map(|u| u.access_token.as_str()).collect();
        send_concurrently(&self.target(), &tokens, rooms, phase, count).await
    }

    /// Pages backwards from the latest event to the room's creation, `PAGE` events at a time;
    /// returns the latencies of the pages fetched with a `from` token ([`Bench::latest_page`]
    /// times the first) and how many events the walk saw.
    pub(crate) async fn walk_back(&self, user: &User, room_id: &str) -> (Vec<Duration>, usize) {
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
    pub(crate) async fn latest_page(&self, user: &User, room_id: &str) -> Duration {
        let answer = self.messages_page(user, room_id, None).await;
        let body = answer.json();
        assert_eq!(answer.status, 200, "/messages failed: {body}");
        let chunk = body["chunk"].as_array().map_or(0, Vec::len);
        assert_eq!(chunk, PAGE, "the latest page must hold {PAGE} events");
        answer.elapsed
    }

    pub(crate) async fn messages_page(
        &self,
        user: &User,
        room_id: &str,
        from: Option<&str>,
    ) -> Answer {
        let path = room_path(room_id, "messages");
        let mut url = format!("{}{path}?dir=b&limit={PAGE}", self.server.base_url());
        if let Some(from) = from {
            url.push_str(&format!("&from={}", encode(from)));
        }
        timed(self.http.get(url).bearer_auth(&user.access_token)).await
    }
}

/// A homeserver as the measuring code sees it: where to send requests, and which process to
/// read CPU and memory figures from (`None` when it is not known, e.g. on another machine).
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: String,
    pub(crate) pid: Option<u32>,
}

/// `count` messages in all from every sender at once, sender `i` (holding `tokens[i]`) sending
/// back to back into `rooms[i]`, or into the only room. A failed send is reported and yields
/// `None`.
pub(crate) async fn send_concurrently(
    target: &Target,
    tokens: &[&str],
    rooms: &[impl AsRef<str>],
    phase: &'static str,
    count: usize,
) -> Bounded<Option<Duration>> {
    let base = &target.base_url;
    let senders: Vec<(String, String)> = (0..tokens.len())
        .map(|i| {
            let path = room_path(rooms[i % rooms.len()].as_ref(), "send/m.room.message/");
            (tokens[i].to_owned(), format!("{base}{path}bench-{phase}-"))
        })
        .collect();
    let (http, senders) = (target.http.clone(), Arc::new(senders));
    bounded(count, tokens.len(), "sent", move |sender, i| {
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

/// The first user creates a public room and the others join it; returns its ID.
pub(crate) async fn room_with_members(users: &[User]) -> String {
    let room_id = users[0].create_room(json!({"preset": "public_chat"})).await;
    for user in &users[1..] {
        user.join(&room_id).await;
    }
    room_id
}

/// One timed exchange: the clock runs from sending the request until the whole body is read
/// (parsing it is not timed).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) elapsed: Duration,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) async fn timed(request: reqwest::RequestBuilder) -> Answer {
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
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort();
        Latencies(all)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len().max(1)) - 1;
        self.0.get(index).copied().unwrap_or_default()
    }

    pub(crate) fn summary(&self, ps: &[f64]) -> String {
        let each: Vec<String> = ps.iter().map(|p| ms(self.percentile(*p))).collect();
        each.join(" / ")
    }
}

/// CPU seconds used so far by the server, by this process, and by the whole machine (every
/// core's non-idle time), and the bytes the server has written through `write` calls (its WAL
/// and its HTTP answers), from `/proc`. The machine's CPU minus the first two is what other
/// programs took during a measurement: a benchmark that shares its cores is disturbed.
pub(crate) struct Usage {
    pub(crate) cpu: [Option<f64>; 3],
    pub(crate) written: Option<u64>,
}

impl Usage {
    pub(crate) fn read(server: &Server) -> Usage {
        Usage::of(server_pid(server))
    }

    /// The same for the server process `pid`; its figures are `None` without one.
    pub(crate) fn of(pid: Option<u32>) -> Usage {
        let pid = pid.map(|pid| pid.to_string());
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
    pub(crate) fn cores_since(&self, before: &Usage, wall: Duration) -> String {
        let used = |i: usize| Some((self.cpu[i]? - before.cpu[i]?) / wall.as_secs_f64());
        let others = || Some(used(2)? - used(0)? - used(1)?);
        let cores = |c: Option<f64>| c.map_or("?".to_owned(), |c| format!("{:.2}", c.max(0.0)));
        let [server, bench] = [used(0), used(1)].map(cores);
        format!("{server} / {bench} / {} cores", cores(others()))
    }

    /// Bytes the server wrote since `before`, per event.
    pub(crate) fn written_per_event(&self, before: &Usage, events: usize) -> String {
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
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields = stat.lines().next()?.split_whitespace().skip(1).take(8);
    let fields: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let idle = fields.get(3)? + fields.get(4)?;
    Some((fields.iter().sum::<u64>() - idle) as f64 / 100.0)
}

/// The server's pid: the process whose command line names this server's config file.
pub(crate) fn server_pid(server: &Server) -> Option<u32> {
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
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The final table: one row per figure, under the scenario set by the last [`Table::section`].
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) section: String,
    pub(crate) rows: Vec<[String; 5]>,
}

impl Table {
    pub(crate) fn section(&mut self, name: String) {
        self.section = name;
    }

    /// A figure with a target.
    pub(crate) fn row(&mut self, figure: &str, value: impl Display, target: &str, passed: bool) {
        let verdict = if passed { "PASS" } else { "FAIL" };
        self.push([figure, &value.to_string(), target, verdict]);
    }

    /// A figure that explains the others.
    pub(crate) fn info(&mut self, figure: &str, value: impl Display) {
        self.push([figure, &value.to_string(), "", ""]);
    }

    pub(crate) fn push(&mut self, cells: [&str; 4]) {
        let [figure, value, target, verdict] = cells.map(str::to_owned);
        self.rows
            .push([self.section.clone(), figure, value, target, verdict]);
    }

    pub(crate) fn print(&self) {
        let header = ["scenario", "figure", "value", "target", "result"];
        let rows: Vec<Vec<String>> = self.rows.iter().map(|row| row.to_vec()).collect();
        print_markdown_table(&header, &rows);
    }
}

/// Prints a Markdown table whose columns are padded to their widest cell.
pub(crate) fn print_markdown_table(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut widths = vec![0; header.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &Vec<String>| {
        let cells = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"));
        println!("| {} |", cells.collect::<Vec<_>>().join(" | "));
    };
    println!();
    line(&header);
    line(&widths.iter().map(|w| "-".repeat(*w)).collect());
    rows.iter().for_each(line);
}
