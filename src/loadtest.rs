//! Load and failure tests that drive the real daemon binary against a real broker and the
//! real PostgreSQL: `mcpwatch bench ingest` and `mcpwatch bench crash`.
//!
//! Both pre-fill a fresh topic from the traffic [generator](crate::generate), start
//! `mcpwatch run` as a child process, watch its `/metrics` and PostgreSQL, and finally check
//! every service's row count against the generator's tally: `lost` and `duplicates` are
//! measured, not assumed.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::generate::{Tally, Traffic, TrafficArgs};
use crate::ingest::decode::{Decoded, Decoder};
use crate::ingest::IngestConfig;
use crate::store::copy::{day_of, CopyEncoder, COPY_INTO_SAMPLES};
use crate::store::{self, Partitions, StoreConfig};

/// What every load test needs to know.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub brokers: String,
    pub pg_url: String,
    pub samples: usize,
    pub services: usize,
    pub malformed_ratio: f64,
    /// Partitions of the pre-filled topic (must exist or be auto-created by the broker).
    pub topic: String,
    pub dead_letter_topic: String,
    /// Port of the child daemon's HTTP server.
    pub http_port: u16,
    pub writers: usize,
}

/// Produces the traffic into `args.topic`, returning what was produced.
pub fn prefill(args: &LoadArgs, now_ms: i64) -> anyhow::Result<(Tally, Duration)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the load producer")?;
    let mut traffic = traffic(args, now_ms);
    let started = Instant::now();
    for m in traffic.by_ref() {
        send_waiting(&producer, &args.topic, &m.key, &m.payload)?;
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the load producer")?;
    Ok((traffic.tally, started.elapsed()))
}

/// Sends one message, waiting (polling delivery reports) while the producer's queue is full;
/// any other error ends the load test.
fn send_waiting(
    producer: &BaseProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((e, r)) => {
                if !matches!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                ) {
                    bail!("producing to {topic}: {e}");
                }
                record = r;
                producer.poll(Duration::from_millis(5));
            }
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// A child `mcpwatch run` configured through the environment.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn spawn(args: &LoadArgs, schema: &str, group: &str) -> anyhow::Result<Daemon> {
        let exe = std::env::current_exe().context("locating the mcpwatch binary")?;
        let child = Command::new(exe)
            .arg("run")
            .env("MCPWATCH_KAFKA__BROKERS", &args.brokers)
            .env("MCPWATCH_KAFKA__TOPICS", format!("[{}]", args.topic))
            .env("MCPWATCH_KAFKA__DEAD_LETTER_TOPIC", &args.dead_letter_topic)
            .env("MCPWATCH_KAFKA__GROUP_ID", group)
            .env("MCPWATCH_KAFKA__STATISTICS_INTERVAL_MS", "1000")
            .env("MCPWATCH_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("MCPWATCH_INGEST__WRITERS", args.writers.to_string())
            .env("MCPWATCH_STORE__URL", &args.pg_url)
            .env("MCPWATCH_STORE__SCHEMA", schema)
            .env(
                "MCPWATCH_HTTP__LISTEN",
                format!("127.0.0.1:{}", args.http_port),
            )
            .env(
                "MCPWATCH_LOG__FILTER",
                std::env::var("MCPWATCH_LOG__FILTER").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .context("starting mcpwatch run")?;
        Ok(Daemon {
            child,
            port: args.http_port,
        })
    }

    /// One read of `/metrics` (empty while the server is not up), to take several figures
    /// from the same moment with one request.
    pub fn scrape(&self) -> Scrape {
        Scrape(http_get(self.port, "/metrics").unwrap_or_default())
    }

    /// Reads one sample from `/metrics` (None while the server is not up).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.scrape().metric(name)
    }

    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL")?;
        self.child.wait()?;
        Ok(())
    }

    pub fn terminate(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("sending SIGTERM")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("daemon exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        bail!("daemon did not stop within 60 s of SIGTERM")
    }
}

/// A minimal HTTP/1.1 GET over loopback (keeps the load tests free of a client stack).
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Percentile estimate from cumulative histogram buckets (linear inside a bucket).
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lo;
            }
            let inside = (count - below).max(1.0);
            return lo + (le - lo) * ((rank - below) / inside);
        }
        lo = le;
        below = count;
    }
    lo
}

/// Drops and re-creates `schema` with the migrations applied.
pub async fn fresh_schema(pg_url: &str, schema: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let config = StoreConfig {
        url: pg_url.to_string(),
        schema: schema.to_string(),
        ..StoreConfig::default()
    };
    let pool = store::pool(&config)?;
    pool.get()
        .await?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    store::prepare(
        &pool,
        &config,
        &Partitions::default(),
        crate::daemon::now_ms(),
    )
    .await?;
    Ok(pool)
}

/// Compares stored rows per service with the tally: (stored, lost, duplicates).
pub async fn verify(
    pool: &deadpool_postgres::Pool,
    tally: &Tally,
) -> anyhow::Result<(u64, u64, u64)> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT service_id, count(*), count(DISTINCT (ts, series)) FROM samples GROUP BY service_id",
            &[],
        )
        .await?;
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in rows {
        got.insert(
            r.get(0),
            (r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64),
        );
    }
    let (mut stored, mut lost, mut dupes) = (0, 0, 0);
    for (service, &want) in &tally.valid {
        let (n, distinct) = got.remove(service).unwrap_or((0, 0));
        stored += n;
        lost += want.saturating_sub(distinct);
        dupes += (n - distinct) + distinct.saturating_sub(want);
    }
    // rows for services the generator never produced are duplicates of nothing: count them
    for (n, _) in got.values() {
        stored += n;
        dupes += n;
    }
    Ok((stored, lost, dupes))
}

/// What a run left behind: (stored, lost, duplicates) in PostgreSQL and the dead letters.
async fn outcome(
    pool: &deadpool_postgres::Pool,
    args: &LoadArgs,
    tally: &Tally,
) -> anyhow::Result<(u64, u64, u64, u64)> {
    let (stored, lost, duplicates) = verify(pool, tally).await?;
    let dlq = count_topic(
        &args.brokers,
        &args.dead_letter_topic,
        tally.malformed,
        Duration::from_secs(60),
    )?;
    Ok((stored, lost, duplicates, dlq))
}

/// The traffic every load test produces (and the bare COPY regenerates): deterministic for
/// the same arguments and `now_ms`.
fn traffic(args: &LoadArgs, now_ms: i64) -> Traffic {
    generated(args.samples, args.services, args.malformed_ratio, now_ms)
}

/// [`traffic`] from its three inputs, for the benches that need no broker or database.
fn generated(samples: usize, services: usize, malformed_ratio: f64, now_ms: i64) -> Traffic {
    let span_ms = (samples / services.max(1)) as i64 * 100 + 60_000;
    Traffic::new(TrafficArgs {
        services,
        samples,
        malformed_ratio,
        start_ms: now_ms - span_ms,
        step_ms: 100,
        ..TrafficArgs::default()
    })
}

/// Counts the messages in a topic by reading it (brokers may under-report watermarks).
pub fn count_topic(
    brokers: &str,
    topic: &str,
    expect: u64,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("mcpwatch-count-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    let mut last_seen = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                n += 1;
                last_seen = Instant::now();
            }
            Some(Err(e)) => tracing::debug!(error = %e, "count_topic"),
            None if n >= expect && last_seen.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    Ok(n)
}

/// The text of one `/metrics` read.
#[derive(Default)]
pub struct Scrape(String);

impl Scrape {
    /// One sample by its full name, labels included (`name{label="v"}`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.0
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// `_bucket` lines of a histogram: (upper bound, cumulative count).
    pub fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.split_whitespace().next()?.parse().ok()?))
            })
            .collect()
    }
}

/// Samples stored so far (from the child's own counter, falling back to 0 before it is up).
fn stored_so_far(d: &Daemon) -> f64 {
    let scrape = d.scrape();
    scrape
        .metric("mcpwatch_samples_stored_total")
        .unwrap_or(0.0)
        + scrape
            .metric("mcpwatch_store_duplicates_skipped_total")
            .unwrap_or(0.0)
}

fn consumed_so_far(d: &Daemon) -> f64 {
    d.metric("mcpwatch_messages_consumed_total").unwrap_or(0.0)
}

/// Waits until the PostgreSQL offsets of `group` cover `messages`.
async fn wait_offsets(
    pool: &deadpool_postgres::Pool,
    group: &str,
    messages: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let covered: i64 = pool
            .get()
            .await?
            .query_one(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM ingest_offsets WHERE consumer_group = $1",
                &[&group],
            )
            .await?
            .get(0);
        if covered as u64 >= messages {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out: offsets cover {covered} of {messages} messages");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Result of `bench ingest`.
pub struct IngestReport {
    pub samples: usize,
    pub stored: u64,
    pub dlq: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub rate: f64,
    pub raw_copy: f64,
    /// One COPY statement (at most 1000 rows) inside the daemon's transactions.
    pub copy_p50_ms: f64,
    pub copy_p99_ms: f64,
    /// One daemon transaction: BEGIN, its COPYs, offsets, dead-letter wait, COMMIT.
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// Mean rows per daemon transaction (above 1000 when queued batches were grouped).
    pub rows_per_commit: f64,
    /// Mean milliseconds per daemon transaction in each step (COPY and the
    /// `mcpwatch_store_stage_duration_seconds` stages).
    pub stage_ms: Vec<(&'static str, f64)>,
    /// One bare transaction of 1000 rows: BEGIN, COPY, COMMIT.
    pub raw_batch_p50_ms: f64,
    pub raw_batch_p99_ms: f64,
    pub produce_secs: f64,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stages: Vec<String> = self
            .stage_ms
            .iter()
            .map(|(stage, ms)| format!("{stage}={ms:.2}"))
            .collect();
        writeln!(f, "mean_ms_per_commit {}", stages.join(" "))?;
        writeln!(
            f,
            "prefill_secs={:.1} copy1000_p50_ms={:.2} copy1000_p99_ms={:.2} commit_p50_ms={:.2} commit_p99_ms={:.2} rows_per_commit={:.0} raw_batch1000_p50_ms={:.2} raw_batch1000_p99_ms={:.2}",
            self.produce_secs,
            self.copy_p50_ms,
            self.copy_p99_ms,
            self.commit_p50_ms,
            self.commit_p99_ms,
            self.rows_per_commit,
            self.raw_batch_p50_ms,
            self.raw_batch_p99_ms
        )?;
        write!(
            f,
            "samples={} stored={} dlq={} lost={} duplicates={} rate={:.0}/s raw_copy={:.0}/s ratio={:.2}",
            self.samples,
            self.stored,
            self.dlq,
            self.lost,
            self.duplicates,
            self.rate,
            self.raw_copy,
            self.rate / self.raw_copy
        )
    }
}

/// `mcpwatch bench ingest`: drain rate of the daemon vs a bare binary COPY of the same rows.
pub async fn bench_ingest(args: &LoadArgs) -> anyhow::Result<IngestReport> {
    let now = crate::daemon::now_ms();
    let pool = fresh_schema(&args.pg_url, "bench_ingest").await?;
    let (tally, produce) = prefill(args, now)?;
    eprintln!(
        "pre-filled {} with {} messages ({} valid samples, {} malformed) in {:.1}s",
        args.topic,
        tally.messages,
        tally.valid_total(),
        tally.malformed,
        produce.as_secs_f64()
    );
    let group = format!("bench-{now}");
    let daemon = Daemon::spawn(args, "bench_ingest", &group)?;
    // the clock starts at the first consumed message: start-up and group join are excluded
    let deadline = Instant::now() + Duration::from_secs(600);
    while consumed_so_far(&daemon) < 1.0 {
        if Instant::now() > deadline {
            bail!("the daemon consumed nothing within 600 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let started = Instant::now();
    wait_offsets(&pool, &group, tally.messages, Duration::from_secs(1800)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let scrape = daemon.scrape();
    let commits = scrape.histogram("mcpwatch_store_batch_duration_seconds");
    let copies = scrape.histogram("mcpwatch_store_copy_duration_seconds");
    let transactions = scrape
        .metric("mcpwatch_store_batch_rows_count")
        .unwrap_or(0.0)
        .max(1.0);
    let rows_per_commit = scrape
        .metric("mcpwatch_store_batch_rows_sum")
        .unwrap_or(0.0)
        / transactions;
    let mut stage_ms = vec![(
        "copy",
        scrape
            .metric("mcpwatch_store_copy_duration_seconds_sum")
            .unwrap_or(0.0),
    )];
    for stage in crate::store::BatchStage::ALL.map(|s| s.label()) {
        let name = format!("mcpwatch_store_stage_duration_seconds_sum{{stage=\"{stage}\"}}");
        stage_ms.push((stage, scrape.metric(&name).unwrap_or(0.0)));
    }
    for (_, seconds) in &mut stage_ms {
        *seconds *= 1000.0 / transactions;
    }
    daemon.terminate()?;
    let (stored, lost, duplicates, dlq) = outcome(&pool, args, &tally).await?;

    // the bare tool: the same valid rows, binary COPY, 1000 per transaction, one connection
    let (raw_copy, raw_p50, raw_p99) = raw_copy(args, now).await?;
    Ok(IngestReport {
        samples: args.samples,
        stored,
        dlq,
        lost,
        duplicates,
        rate: tally.valid_total() as f64 / elapsed,
        raw_copy,
        copy_p50_ms: histogram_quantile(&copies, 0.5) * 1000.0,
        copy_p99_ms: histogram_quantile(&copies, 0.99) * 1000.0,
        commit_p50_ms: histogram_quantile(&commits, 0.5) * 1000.0,
        commit_p99_ms: histogram_quantile(&commits, 0.99) * 1000.0,
        rows_per_commit,
        stage_ms,
        raw_batch_p50_ms: raw_p50,
        raw_batch_p99_ms: raw_p99,
        produce_secs: produce.as_secs_f64(),
    })
}

/// Regenerates the same traffic, decodes it (untimed) and times a plain binary COPY of the
/// valid rows, 1000 per transaction (BEGIN, COPY, COMMIT), into a fresh copy of the schema. Returns rows/s and the
/// p50/p99 batch latency in ms.
async fn raw_copy(args: &LoadArgs, now: i64) -> anyhow::Result<(f64, f64, f64)> {
    let pool = fresh_schema(&args.pg_url, "bench_raw").await?;
    let traffic = traffic(args, now);
    let mut decoder = Decoder::new(&IngestConfig::default());
    let mut decoded = Decoded::default();
    for m in traffic {
        decoder.decode(&m.payload, crate::daemon::now_ms(), &mut decoded);
    }
    let samples = decoded.samples;
    let client = pool.get().await?;
    Partitions::default()
        .ensure(&client, "samples", samples.iter().map(|s| day_of(s.ts_ms)))
        .await?;
    let mut latencies = Vec::with_capacity(samples.len() / 1000 + 1);
    // prepared once, as the daemon's writers do: a COPY sent as text costs a round trip to
    // parse before every run, which a bare tool would not pay either
    let copy = client.prepare(&COPY_INTO_SAMPLES).await?;
    let started = Instant::now();
    let mut client = client;
    for chunk in samples.chunks(1000) {
        let t = Instant::now();
        let mut enc = CopyEncoder::with_capacity(chunk.len());
        for s in chunk {
            enc.push(s);
        }
        let tx = client.transaction().await?;
        let sink = tx.copy_in::<_, bytes::Bytes>(&copy).await?;
        futures::pin_mut!(sink);
        futures::SinkExt::send(&mut sink, enc.finish()).await?;
        sink.finish().await?;
        tx.commit().await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok((rate, pick(0.5), pick(0.99)))
}

/// Result of `bench crash`.
pub struct CrashReport {
    pub samples: usize,
    pub stored: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub kills: usize,
    pub dlq: u64,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // dead letters are at-least-once: a killed batch may publish its letters twice
        writeln!(f, "dead_letters={}", self.dlq)?;
        write!(
            f,
            "samples={} stored={} lost={} duplicates={} kills={}",
            self.samples, self.stored, self.lost, self.duplicates, self.kills
        )
    }
}

/// `mcpwatch bench crash`: SIGKILL the daemon `kills` times while it drains, restart, verify.
pub async fn bench_crash(args: &LoadArgs, kills: usize) -> anyhow::Result<CrashReport> {
    let now = crate::daemon::now_ms();
    let schema = "bench_crash";
    let pool = fresh_schema(&args.pg_url, schema).await?;
    let (tally, _) = prefill(args, now)?;
    let valid = tally.valid_total() as f64;
    let group = format!("crash-{now}");
    for k in 0..kills {
        let daemon = Daemon::spawn(args, schema, &group)?;
        // each run stores about 1/(kills+1) of the rows before it is killed mid-drain
        let target = valid / (kills as f64 + 1.0);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if stored_so_far(&daemon) >= target || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "kill {}: SIGKILL after {} samples stored in this run",
            k + 1,
            stored_so_far(&daemon)
        );
        daemon.kill()?;
    }
    let daemon = Daemon::spawn(args, schema, &group)?;
    wait_offsets(&pool, &group, tally.messages, Duration::from_secs(1800)).await?;
    daemon.terminate()?;
    let (stored, lost, duplicates, dlq) = outcome(&pool, args, &tally).await?;
    Ok(CrashReport {
        samples: args.samples,
        stored,
        lost,
        duplicates,
        kills,
        dlq,
    })
}

/// Produces `hours` of history for `services` MCP servers (one sample per server every
/// `step_secs`, ending now, no malformed messages) into `topic`: what `load-tests/plans.sh`
/// gives the daemon before it asks for plans. Returns the messages produced.
pub fn produce_history(
    brokers: &str,
    topic: &str,
    services: usize,
    hours: i64,
    step_secs: i64,
    now_ms: i64,
) -> anyhow::Result<(u64, Duration)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the history producer")?;
    let step_ms = step_secs.max(1) * 1000;
    let rounds = (hours * 3_600_000 / step_ms).max(1);
    // one message is one round of one service (round robin); a message may carry several
    // samples (one per instance), so count messages, not samples
    let traffic = Traffic::new(TrafficArgs {
        services,
        samples: usize::MAX,
        malformed_ratio: 0.0,
        start_ms: now_ms - rounds * step_ms,
        step_ms,
        ..TrafficArgs::default()
    })
    .take(services * rounds as usize);
    let started = Instant::now();
    let mut n = 0u64;
    for m in traffic {
        send_waiting(&producer, topic, &m.key, &m.payload)?;
        n += 1;
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the history producer")?;
    Ok((n, started.elapsed()))
}

/// Result of `bench decode`: the source thread's and a writer's CPU per sample, one core.
pub struct DecodeReport {
    pub messages: usize,
    /// Valid samples and malformed messages the generator produced: what the decoder must
    /// turn into `samples` and `rejected`.
    pub produced_valid: u64,
    pub produced_malformed: u64,
    pub samples: usize,
    pub rejected: usize,
    /// Median over the rounds of decoding every payload (fresh decoder each round).
    pub decode_ns_per_sample: f64,
    /// Median over the rounds of encoding the decoded samples as binary COPY, 1000 per batch.
    pub encode_ns_per_sample: f64,
}

impl std::fmt::Display for DecodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "messages={} samples={} rejected={} decode_ns_per_sample={:.0} decode_rate={:.0}/s encode_ns_per_sample={:.0}",
            self.messages,
            self.samples,
            self.rejected,
            self.decode_ns_per_sample,
            1e9 / self.decode_ns_per_sample,
            self.encode_ns_per_sample
        )
    }
}

/// `mcpwatch bench decode`: the same traffic `bench ingest` produces, held in memory, decoded
/// and COPY-encoded on one thread, `rounds` times. No broker and no database: the figures are
/// the daemon's own CPU per sample, the ceiling of one source thread.
pub fn bench_decode(samples: usize, services: usize, rounds: usize) -> DecodeReport {
    let now = crate::daemon::now_ms();
    let mut generator = generated(samples, services, 0.01, now);
    let payloads: Vec<Vec<u8>> = generator.by_ref().map(|m| m.payload).collect();
    let config = IngestConfig::default();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut decode_ns, mut encode_ns) = (Vec::new(), Vec::new());
    let (mut decoded_samples, mut rejected) = (0, 0);
    for _ in 0..rounds.max(1) {
        let mut decoder = Decoder::new(&config);
        let mut out = Decoded::default();
        let mut all = Vec::with_capacity(samples);
        rejected = 0;
        let t = Instant::now();
        for p in &payloads {
            out.clear();
            decoder.decode(p, now, &mut out);
            all.append(&mut out.samples);
            rejected += out.rejected.len();
        }
        decode_ns.push(t.elapsed().as_nanos() as f64 / all.len().max(1) as f64);
        let t = Instant::now();
        let mut bytes = 0;
        for chunk in all.chunks(1000) {
            let mut enc = CopyEncoder::with_capacity(chunk.len());
            for s in chunk {
                enc.push(s);
            }
            bytes += std::hint::black_box(enc.finish()).len();
        }
        std::hint::black_box(bytes);
        encode_ns.push(t.elapsed().as_nanos() as f64 / all.len().max(1) as f64);
        decoded_samples = all.len();
    }
    DecodeReport {
        messages: payloads.len(),
        produced_valid: generator.tally.valid_total(),
        produced_malformed: generator.tally.malformed,
        samples: decoded_samples,
        rejected,
        decode_ns_per_sample: median(decode_ns),
        encode_ns_per_sample: median(encode_ns),
    }
}

#[cfg(test)]
mod tests {
    use super::bench_decode;

    #[test]
    fn the_decode_bench_decodes_the_ingest_traffic_and_rejects_its_malformed_share() {
        let r = bench_decode(20_000, 50, 1);
        // every valid sample is decoded, every malformed message rejected exactly once
        assert_eq!(r.samples as u64, r.produced_valid, "{r}");
        assert_eq!(r.rejected as u64, r.produced_malformed, "{r}");
        assert!(
            r.rejected > 50 && r.rejected < 500,
            "about 1 % malformed: {r}"
        );
        assert!(
            r.decode_ns_per_sample > 0.0 && r.encode_ns_per_sample > 0.0,
            "{r}"
        );
    }
}
