//! The write-behind writer: the only path by which the pipeline writes to the cache.
//!
//! Producers (ingest, features, the forecaster) call [`CacheSender::offer`], a `try_send` on a
//! bounded queue: it never waits, and when the queue is full the entry is dropped and counted
//! (`mcpwatch_cache_dropped_total{reason="full"}`) — the store has the data, the cache is
//! best-effort. One task drains the queue in pipelines of up to `batch_size` entries.
//!
//! When a write fails or times out the writer flips to [`CacheMode::Degraded`] (readiness and
//! `mcpwatch_cache_degraded` show it), stops writing, and keeps the newest value of each key
//! (at most `max_pending_refill` keys) while it probes the backend with back-off. When the
//! backend answers again it writes the held values that have not outlived their TTL (the
//! refill), flips back to [`CacheMode::Ready`] and carries on. While ready it also runs the
//! memory guard every `memory_check_interval_ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    CacheConfig, CacheError, CacheMetrics, CacheMode, Entry, HotCache, Pressure, TierTtls,
};

/// What the writer did over its life, returned by [`CacheWriter::close`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub written: u64,
    pub batches: u64,
    /// Dropped by the writer (outlived their TTL while held, refill full, or left at shutdown
    /// while degraded). Drops at `offer` (queue full) are only in the metrics.
    pub dropped: u64,
    pub refilled: u64,
    /// Times the cache went degraded.
    pub outages: u64,
}

/// The producers' handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct CacheSender {
    /// Sending half of the bounded write-behind queue (`None` when the cache is disabled).
    /// Cloned into every producer; the queue closes when the writer shuts down.
    tx: Option<mpsc::Sender<Entry>>,
    /// Shared metrics (owned by the daemon's registry); counts drops at the door.
    metrics: Arc<CacheMetrics>,
}

impl CacheSender {
    /// Queues `entry` for the cache without waiting. `false` when it was dropped (queue full
    /// or writer gone — counted) or the cache is disabled.
    pub fn offer(&self, entry: Entry) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(entry) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped("full", 1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped("closed", 1);
                false
            }
        }
    }

    /// Offers every entry; returns how many were queued.
    pub fn offer_all(&self, entries: impl IntoIterator<Item = Entry>) -> usize {
        let mut queued = 0;
        for entry in entries {
            queued += usize::from(self.offer(entry));
        }
        queued
    }

    /// Whether offers go anywhere (`false` for a disabled cache).
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }
}

/// The write-behind writer task and its handles.
pub struct CacheWriter {
    /// A producer handle kept so [`CacheWriter::sender`] can hand out clones.
    sender: CacheSender,
    /// Readiness view of the cache. The task owns the `watch::Sender` and is the only writer;
    /// readiness, `/metrics` and [`super::ReadThrough`] hold receivers.
    status: watch::Receiver<CacheMode>,
    /// Tells the task to drain and stop. Owned here so that dropping the writer stops the task.
    shutdown: Option<oneshot::Sender<()>>,
    /// The task, owned so [`CacheWriter::close`] can wait for the drain.
    task: Option<JoinHandle<WriterStats>>,
}

impl CacheWriter {
    /// Probes the backend once (bounded by the command timeout) to set the initial mode, then
    /// spawns the writer task. Must run inside a tokio runtime.
    pub async fn start(
        cache: Arc<dyn HotCache>,
        config: &CacheConfig,
        metrics: Arc<CacheMetrics>,
    ) -> CacheWriter {
        let timeout = config.command_timeout();
        let initial = match tokio::time::timeout(timeout * 2, cache.health()).await {
            Ok(h) => h.mode,
            Err(_) => CacheMode::Degraded,
        };
        metrics.set_mode(initial);
        if initial == CacheMode::Degraded {
            warn!(backend = %cache.backend().as_str(), "hot cache unavailable at start: running degraded until it answers");
        }
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        let (mode_tx, status) = watch::channel(initial);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let min_backoff = Duration::from_millis(config.reconnect_min_ms);
        let now = Instant::now();
        let task = Task {
            cache,
            rx,
            mode_tx,
            metrics: metrics.clone(),
            batch_size: config.batch_size,
            timeout,
            ttls: config.ttl.clone(),
            pending: HashMap::new(),
            max_pending: config.max_pending_refill,
            min_backoff,
            max_backoff: Duration::from_millis(config.reconnect_max_ms),
            backoff: min_backoff,
            next_probe: now + min_backoff,
            guard_every: Duration::from_millis(config.memory_check_interval_ms),
            next_guard: now,
            last_pressure: Pressure::Ok,
            stats: WriterStats::default(),
        };
        let task = tokio::spawn(task.run(shutdown_rx));
        CacheWriter {
            sender: CacheSender {
                tx: Some(tx),
                metrics,
            },
            status,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A writer for `backend = "none"`: offers go nowhere, status says disabled.
    pub fn disabled(metrics: Arc<CacheMetrics>) -> CacheWriter {
        let (_, status) = watch::channel(CacheMode::Disabled);
        metrics.set_mode(CacheMode::Disabled);
        CacheWriter {
            sender: CacheSender { tx: None, metrics },
            status,
            shutdown: None,
            task: None,
        }
    }

    /// A producer handle.
    pub fn sender(&self) -> CacheSender {
        self.sender.clone()
    }

    /// A receiver of the cache's mode, for readiness and [`super::ReadThrough`].
    pub fn status(&self) -> watch::Receiver<CacheMode> {
        self.status.clone()
    }

    pub fn mode(&self) -> CacheMode {
        *self.status.borrow()
    }

    pub fn is_degraded(&self) -> bool {
        self.mode() == CacheMode::Degraded
    }

    /// Stops the writer: writes what is queued (and, if the backend is up, what is held for
    /// the refill), then returns the totals. Entries offered after this are dropped.
    pub async fn close(mut self) -> WriterStats {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => WriterStats::default(),
        }
    }
}

struct Held {
    entry: Entry,
    since: Instant,
}

struct Task {
    /// The backend, shared with the read path; this task is its only writer.
    cache: Arc<dyn HotCache>,
    /// Receiving half of the write-behind queue; this task is its only reader.
    rx: mpsc::Receiver<Entry>,
    /// The mode everybody else watches; this task is its only writer.
    mode_tx: watch::Sender<CacheMode>,
    /// Shared metrics (owned by the daemon's registry).
    metrics: Arc<CacheMetrics>,
    batch_size: usize,
    timeout: Duration,
    ttls: TierTtls,
    /// Newest value per key while degraded, written back on recovery.
    pending: HashMap<String, Held>,
    max_pending: usize,
    min_backoff: Duration,
    max_backoff: Duration,
    backoff: Duration,
    next_probe: Instant,
    guard_every: Duration,
    next_guard: Instant,
    last_pressure: Pressure,
    stats: WriterStats,
}

impl Task {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> WriterStats {
        let mut buf: Vec<Entry> = Vec::with_capacity(self.batch_size);
        let tick_every = self.min_backoff.min(Duration::from_millis(100));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // Before the queue, so probes and guards run even under a constant stream.
                _ = tick.tick() => self.on_tick().await,
                n = self.rx.recv_many(&mut buf, self.batch_size) => {
                    if n == 0 {
                        break;
                    }
                    self.metrics.queue_depth.set(self.rx.len() as i64);
                    self.write(&mut buf).await;
                }
            }
        }
        self.drain(&mut buf).await;
        self.stats
    }

    fn mode(&self) -> CacheMode {
        *self.mode_tx.borrow()
    }

    fn set_mode(&mut self, mode: CacheMode, why: Option<&CacheError>) {
        if self.mode() == mode {
            return;
        }
        // Metrics and counters first, the watch last: whoever wakes on the change sees them.
        self.metrics.set_mode(mode);
        match mode {
            CacheMode::Degraded => {
                self.stats.outages += 1;
                self.backoff = self.min_backoff;
                self.next_probe = Instant::now() + self.backoff;
                warn!(
                    error = why.map(|e| e.to_string()).unwrap_or_default(),
                    "hot cache degraded: ingestion goes on without it, reads go to the database"
                );
            }
            CacheMode::Ready => {
                self.metrics.recoveries.inc();
                info!("hot cache available again: refilling");
            }
            CacheMode::Disabled => {}
        }
        self.mode_tx.send_replace(mode);
    }

    /// Writes one batch, or holds it while degraded.
    async fn write(&mut self, buf: &mut Vec<Entry>) {
        if self.mode() != CacheMode::Ready {
            for e in buf.drain(..) {
                self.hold(e, Instant::now());
            }
            return;
        }
        let deadline = self.timeout * (buf.len().div_ceil(self.batch_size) as u32 + 1);
        let r = match tokio::time::timeout(deadline, self.cache.put_batch(buf)).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout {
                op: "put",
                after: deadline,
            }),
        };
        match r {
            Ok(n) => {
                self.stats.written += n as u64;
                self.stats.batches += buf.len().div_ceil(self.batch_size) as u64;
                buf.clear();
            }
            Err(e) => {
                self.set_mode(CacheMode::Degraded, Some(&e));
                let now = Instant::now();
                for entry in buf.drain(..) {
                    self.hold(entry, now);
                }
            }
        }
    }

    /// Keeps the newest value of a key for the refill, within `max_pending`.
    fn hold(&mut self, entry: Entry, since: Instant) {
        if let Some(held) = self.pending.get_mut(&entry.key) {
            *held = Held { entry, since };
        } else if self.pending.len() < self.max_pending {
            self.pending
                .insert(entry.key.clone(), Held { entry, since });
        } else {
            self.metrics.dropped("degraded", 1);
            self.stats.dropped += 1;
        }
        self.metrics.pending_refill.set(self.pending.len() as i64);
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        match self.mode() {
            CacheMode::Degraded if now >= self.next_probe => self.probe().await,
            CacheMode::Ready if !self.cache.is_available() => {
                let e = CacheError::Unavailable("connection lost".to_string());
                self.set_mode(CacheMode::Degraded, Some(&e));
            }
            CacheMode::Ready if now >= self.next_guard => {
                self.next_guard = now + self.guard_every;
                self.guard().await;
            }
            _ => {}
        }
    }

    async fn probe(&mut self) {
        let healthy = match tokio::time::timeout(self.timeout * 2, self.cache.health()).await {
            Ok(h) => h.mode == CacheMode::Ready,
            Err(_) => false,
        };
        if !healthy {
            self.backoff = (self.backoff * 2).min(self.max_backoff);
            self.next_probe = Instant::now() + self.backoff;
            return;
        }
        self.set_mode(CacheMode::Ready, None);
        self.refill().await;
    }

    /// Writes the held entries that have not outlived their TTL.
    async fn refill(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut fresh = Vec::with_capacity(self.pending.len());
        let mut expired = 0u64;
        for (_, held) in self.pending.drain() {
            if now.duration_since(held.since) < self.ttls.get(held.entry.tier) {
                fresh.push(held);
            } else {
                expired += 1;
            }
        }
        self.metrics.dropped("expired", expired);
        self.stats.dropped += expired;
        // Oldest first, so a newer value of the same window never loses to an older one.
        fresh.sort_by_key(|h| h.since);
        let mut rest = fresh.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Held> = rest.by_ref().take(self.batch_size).collect();
            let entries: Vec<Entry> = chunk.iter().map(|h| h.entry.clone()).collect();
            let r = match tokio::time::timeout(self.timeout * 2, self.cache.put_batch(&entries))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(CacheError::Timeout {
                    op: "put",
                    after: self.timeout * 2,
                }),
            };
            match r {
                Ok(n) => {
                    self.stats.written += n as u64;
                    self.stats.batches += 1;
                    self.stats.refilled += n as u64;
                    self.metrics.refilled.inc_by(n as u64);
                }
                Err(e) => {
                    self.set_mode(CacheMode::Degraded, Some(&e));
                    for held in chunk.into_iter().chain(rest) {
                        self.hold(held.entry, held.since);
                    }
                    return;
                }
            }
        }
        self.metrics.pending_refill.set(self.pending.len() as i64);
    }

    async fn guard(&mut self) {
        let r = match tokio::time::timeout(Duration::from_secs(60), self.cache.memory_guard()).await
        {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout {
                op: "memory_guard",
                after: Duration::from_secs(60),
            }),
        };
        match r {
            Ok(report) => {
                if report.pressure != self.last_pressure || !report.evicted.is_empty() {
                    match report.pressure {
                        Pressure::Ok => info!(
                            used_bytes = report.used_bytes_after,
                            budget_bytes = report.budget_bytes,
                            "hot cache memory back under its warning level"
                        ),
                        Pressure::Warn => warn!(
                            used_bytes = report.used_bytes_before,
                            budget_bytes = report.budget_bytes,
                            "hot cache memory above its warning level"
                        ),
                        Pressure::Over => warn!(
                            used_bytes = report.used_bytes_before,
                            after_bytes = report.used_bytes_after,
                            budget_bytes = report.budget_bytes,
                            evicted = ?report.evicted,
                            "hot cache over its memory budget: evicted coldest tiers first"
                        ),
                    }
                }
                self.last_pressure = report.pressure;
            }
            Err(e) => self.set_mode(CacheMode::Degraded, Some(&e)),
        }
    }

    /// At shutdown: write what is queued and held if the backend is up, else drop it.
    async fn drain(&mut self, buf: &mut Vec<Entry>) {
        self.rx.close();
        while let Ok(e) = self.rx.try_recv() {
            buf.push(e);
            if buf.len() >= self.batch_size {
                self.write(buf).await;
            }
        }
        if !buf.is_empty() {
            self.write(buf).await;
        }
        if self.mode() == CacheMode::Ready {
            self.refill().await;
        }
        let left = self.pending.len() as u64;
        if left > 0 {
            self.metrics.dropped("closed", left);
            self.stats.dropped += left;
            self.pending.clear();
            self.metrics.pending_refill.set(0);
        }
        self.metrics.queue_depth.set(0);
    }
}
