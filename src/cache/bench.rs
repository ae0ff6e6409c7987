//! `mcpwatch bench cache`: the cache's write and read latencies against a real Redis, beside
//! the bare client doing the same work in the same run (the "limit" side).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{Expiration, KeysInterface, Value};
use fred::types::Key;

use super::{
    kind, CacheConfig, CacheError, CacheMetrics, Entry, HotCache, KeySpace, RedisCache, Tier,
};

/// Entries per measured batch.
pub const BENCH_BATCH: usize = 50;
/// Bytes per measured value.
pub const BENCH_VALUE_BYTES: usize = 300;

/// Percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i].as_secs_f64() * 1e6
        };
        Percentiles {
            p50_us: at(0.50),
            p99_us: at(0.99),
        }
    }
}

/// What `run_bench` measured. `Display` ends with the line
/// `batch50_p50_us=… batch50_p99_us=… hit_p50_us=… miss_p50_us=…`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub url: String,
    pub iterations: usize,
    /// The tokio runtime flavour the bench ran on (`multi_thread` or `current_thread`): the
    /// client's router task and the caller hand work across threads on the former.
    pub runtime: &'static str,
    /// `put_batch` of 50 entries (one pipeline of `SET … EX 60`, 300-byte values).
    pub batch50: Percentiles,
    /// `get` of a present key (decode included).
    pub hit: Percentiles,
    /// `get` of an absent key.
    pub miss: Percentiles,
    /// Limit side: the bare fred pipeline of 50 `SET … EX 60`, same values, same connection.
    pub raw_batch50: Percentiles,
    /// Limit side: the bare fred `GET` of a present key.
    pub raw_get: Percentiles,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cache bench: {} iterations against {}, batches of {BENCH_BATCH} x {BENCH_VALUE_BYTES}-byte SET EX, one connection, tokio {} runtime",
            self.iterations,
            super::redis::redact(&self.url),
            self.runtime
        )?;
        writeln!(
            f,
            "limit (bare fred, same run): batch50_p50_us={:.0} batch50_p99_us={:.0} get_p50_us={:.0} get_p99_us={:.0}",
            self.raw_batch50.p50_us, self.raw_batch50.p99_us, self.raw_get.p50_us, self.raw_get.p99_us
        )?;
        writeln!(
            f,
            "seed: batch50 145000 us, hit 85000 us, miss 245000 us; goal: batch50 <= 500 us, hit <= 200 us"
        )?;
        writeln!(
            f,
            "hit_p99_us={:.0} miss_p99_us={:.0}",
            self.hit.p99_us, self.miss.p99_us
        )?;
        write!(
            f,
            "batch50_p50_us={:.0} batch50_p99_us={:.0} hit_p50_us={:.0} miss_p50_us={:.0}",
            self.batch50.p50_us, self.batch50.p99_us, self.hit.p50_us, self.miss.p50_us
        )
    }
}

fn bench_value(i: usize) -> Bytes {
    // A JSON-ish window of points, padded to exactly BENCH_VALUE_BYTES.
    let mut s = format!(
        "{{\"service\":\"svc-{i}\",\"points\":[{{\"t\":1700000000000,\"cpu\":0.{i:03},\"mem\":0.5}}"
    );
    let mut k = 1;
    while s.len() < BENCH_VALUE_BYTES - 2 {
        s.push_str(&format!(
            ",{{\"t\":{},\"cpu\":0.{:03}}}",
            1_700_000_000_000u64 + k * 15_000,
            (i * 7 + k as usize) % 1000
        ));
        k += 1;
    }
    s.truncate(BENCH_VALUE_BYTES - 2);
    s.push_str("]}");
    Bytes::from(s)
}

/// Measures the cache against the Redis at `url`: `iterations` rounds of one 50-entry batch,
/// one hit, one miss, and the same batch and `GET` through the bare client. Writes only under
/// its own prefix (`mcpwatch-bench-<pid>`) and deletes its keys at the end.
pub async fn run_bench(url: &str, iterations: usize) -> Result<BenchReport, CacheError> {
    let iterations = iterations.max(1);
    let config = CacheConfig {
        url: url.to_string(),
        key_prefix: format!("mcpwatch-bench-{}", std::process::id()),
        command_timeout_ms: 2_000,
        ..CacheConfig::default()
    };
    config.validate()?;
    let cache = RedisCache::connect(&config, Arc::new(CacheMetrics::new())).await?;
    if !cache.is_connected() {
        return Err(CacheError::Unavailable(format!(
            "no Redis answering at {}",
            super::redis::redact(url)
        )));
    }
    let keys = KeySpace::new(&config.key_prefix);
    let entries: Vec<Entry> = (0..BENCH_BATCH)
        .map(|j| {
            keys.entry(
                Tier::Recent,
                &format!("svc-{j}"),
                kind::POINTS,
                bench_value(j),
            )
        })
        .collect();
    let raw_keys: Vec<String> = (0..BENCH_BATCH)
        .map(|j| keys.key(Tier::Recent, &format!("raw-{j}"), kind::POINTS))
        .collect();
    let miss_keys: Vec<String> = (0..BENCH_BATCH)
        .map(|j| keys.key(Tier::Recent, &format!("absent-{j}"), kind::POINTS))
        .collect();
    let client = cache.client().clone();

    let raw_batch = || async {
        let pipeline = client.pipeline();
        for (k, e) in raw_keys.iter().zip(&entries) {
            let _: () = pipeline
                .set(
                    k.as_str(),
                    Value::Bytes(e.value.clone()),
                    Some(Expiration::EX(60)),
                    None,
                    false,
                )
                .await?;
        }
        let _: Value = pipeline.all().await?;
        Ok::<(), CacheError>(())
    };

    let warmup = (iterations / 10).clamp(10, 200);
    for i in 0..warmup {
        cache.put_batch(&entries).await?;
        raw_batch().await?;
        cache.get(&entries[i % BENCH_BATCH].key).await?;
        cache.get(&miss_keys[i % BENCH_BATCH]).await?;
    }

    let mut batch = Vec::with_capacity(iterations);
    let mut hit = Vec::with_capacity(iterations);
    let mut miss = Vec::with_capacity(iterations);
    let mut raw = Vec::with_capacity(iterations);
    let mut raw_get = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t = Instant::now();
        cache.put_batch(&entries).await?;
        batch.push(t.elapsed());

        let t = Instant::now();
        raw_batch().await?;
        raw.push(t.elapsed());

        let t = Instant::now();
        let v = cache.get(&entries[i % BENCH_BATCH].key).await?;
        hit.push(t.elapsed());
        if v.as_deref() != Some(&entries[i % BENCH_BATCH].value[..]) {
            return Err(CacheError::Corrupt {
                key: entries[i % BENCH_BATCH].key.clone(),
                reason: "bench read back a different value".to_string(),
            });
        }

        let t = Instant::now();
        let v = cache.get(&miss_keys[i % BENCH_BATCH]).await?;
        miss.push(t.elapsed());
        debug_assert!(v.is_none());

        let t = Instant::now();
        let _: Option<Bytes> = client.get(raw_keys[i % BENCH_BATCH].as_str()).await?;
        raw_get.push(t.elapsed());
    }

    let mut cleanup: Vec<Key> = entries.iter().map(|e| Key::from(e.key.as_str())).collect();
    cleanup.extend(raw_keys.iter().map(|k| Key::from(k.as_str())));
    let _: i64 = client.unlink(cleanup).await?;

    Ok(BenchReport {
        url: url.to_string(),
        iterations,
        runtime: match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
            _ => "multi_thread",
        },
        batch50: Percentiles::of(batch),
        hit: Percentiles::of(hit),
        miss: Percentiles::of(miss),
        raw_batch50: Percentiles::of(raw),
        raw_get: Percentiles::of(raw_get),
    })
}
