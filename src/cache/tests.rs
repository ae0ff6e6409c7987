//! Tests of the hot cache. The `redis_*` tests run against real Redis servers: the shared one
//! at `MCPWATCH_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`, each test under its own
//! key prefix, cleaned up after), and — for outages, slowness and eviction — a private
//! `redis-server` each test starts on a free port and stops itself.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{ClientLike, KeysInterface};
use fred::types::Key;
use prometheus_client::registry::Registry;

use super::*;
use crate::sample::{Lifecycle, Origin, Sample, Status};

// ---------------------------------------------------------------- helpers

fn shared_url() -> String {
    std::env::var("MCPWATCH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn test_config(url: &str, name: &str) -> CacheConfig {
    CacheConfig {
        url: url.to_string(),
        key_prefix: format!("mcpwatch-test-{}-{name}", std::process::id()),
        command_timeout_ms: 300,
        connect_timeout_ms: 1_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        memory_check_interval_ms: 200,
        ..CacheConfig::default()
    }
}

async fn shared_redis(name: &str) -> (RedisCache, CacheConfig, Arc<CacheMetrics>) {
    let config = test_config(&shared_url(), name);
    let metrics = Arc::new(CacheMetrics::new());
    let cache = RedisCache::connect(&config, metrics.clone()).await.unwrap();
    assert!(
        cache.is_connected(),
        "no Redis at {} — start one (apt-get install redis-server) or set MCPWATCH_TEST_REDIS_URL",
        shared_url()
    );
    (cache, config, metrics)
}

/// Deletes every key under the test's prefix.
async fn cleanup(cache: &RedisCache) {
    let pattern = format!("{}:*", cache.key_space().prefix());
    let mut cursor = "0".to_string();
    loop {
        let (next, keys): (String, Vec<Key>) = cache
            .client()
            .scan_page(cursor, pattern.clone(), Some(1000), None)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = cache.client().unlink(keys).await.unwrap();
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
}

/// A private redis-server on a free port, stopped and restarted by the test that owns it.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for_mode(
    rx: &mut tokio::sync::watch::Receiver<CacheMode>,
    want: CacheMode,
    within: Duration,
) {
    let r = tokio::time::timeout(within, rx.wait_for(|m| *m == want)).await;
    assert!(r.is_ok(), "cache did not become {want:?} within {within:?}");
}

fn entries(keys: &KeySpace, tier: Tier, n: usize, bytes: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let mut v = format!("{{\"i\":{i},\"pad\":\"");
            while v.len() < bytes.saturating_sub(2) {
                v.push(char::from(b'a' + (v.len() * 7 + i) as u8 % 26));
            }
            v.push_str("\"}");
            keys.entry(tier, &format!("svc-{i}"), "points", v)
        })
        .collect()
}

fn memory(config: &CacheConfig) -> (Arc<MemoryCache>, Arc<CacheMetrics>) {
    let metrics = Arc::new(CacheMetrics::new());
    (Arc::new(MemoryCache::new(config, metrics.clone())), metrics)
}

// ---------------------------------------------------------------- config, keys, codec

#[test]
fn default_config_is_valid_and_matches_the_issue() {
    let c = CacheConfig::default();
    c.validate().unwrap();
    assert_eq!(c.url, "redis://127.0.0.1:6379");
    assert_eq!(c.batch_size, 50);
    assert_eq!(c.compress_over_bytes, 1024);
    assert_eq!(c.memory_budget_bytes, 200 * 1024 * 1024);
    let secs: Vec<u64> = Tier::ALL.iter().map(|t| c.ttl.secs(*t)).collect();
    assert_eq!(secs, vec![15, 60, 300, 3600, 3600, 3600]);
}

#[test]
fn config_deserialises_partially_and_rejects_unknown_keys() {
    let c: CacheConfig = serde_json::from_str(
        r#"{"backend":"memory","ttl":{"realtime_secs":5},"eviction_order":["realtime","recent","stats","hourly","features","forecast"]}"#,
    )
    .unwrap();
    assert_eq!(c.backend, CacheBackend::Memory);
    assert_eq!(c.ttl.realtime_secs, 5);
    assert_eq!(c.ttl.recent_secs, 60);
    assert_eq!(c.eviction_order[0], Tier::Realtime);
    c.validate().unwrap();
    assert!(serde_json::from_str::<CacheConfig>(r#"{"batchsize":50}"#).is_err());
    let back: CacheConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn validate_names_the_key_and_the_fix() {
    let cases: Vec<(CacheConfig, &str)> = vec![
        (
            CacheConfig {
                batch_size: 0,
                ..Default::default()
            },
            "cache.batch_size",
        ),
        (
            CacheConfig {
                url: "http://x".into(),
                ..Default::default()
            },
            "cache.url",
        ),
        (
            CacheConfig {
                key_prefix: "a*b".into(),
                ..Default::default()
            },
            "cache.key_prefix",
        ),
        (
            CacheConfig {
                ttl: TierTtls {
                    stats_secs: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
            "cache.ttl.stats_secs",
        ),
        (
            CacheConfig {
                eviction_order: vec![Tier::Hourly, Tier::Hourly],
                ..Default::default()
            },
            "cache.eviction_order",
        ),
        (
            CacheConfig {
                eviction_order: vec![Tier::Hourly],
                ..Default::default()
            },
            "cache.eviction_order",
        ),
        (
            CacheConfig {
                memory_warn_ratio: 1.5,
                ..Default::default()
            },
            "cache.memory_warn_ratio",
        ),
        (
            CacheConfig {
                channel_capacity: 10,
                ..Default::default()
            },
            "cache.channel_capacity",
        ),
        (
            CacheConfig {
                memory_budget_bytes: 10,
                ..Default::default()
            },
            "cache.memory_budget_bytes",
        ),
    ];
    for (config, key) in cases {
        let err = config.validate().unwrap_err();
        match &err {
            CacheError::Config { key: k, fix, .. } => {
                assert_eq!(*k, key);
                assert!(
                    fix.contains("set") || fix.contains("use") || fix.contains("list"),
                    "{err}"
                );
            }
            other => panic!("expected a config error, got {other}"),
        }
        assert!(err.to_string().contains(key), "{err}");
    }
    // a memory or disabled cache does not care about the URL
    CacheConfig {
        backend: CacheBackend::Memory,
        url: String::new(),
        ..Default::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn key_layout_round_trips() {
    let ks = KeySpace::new("mcpwatch");
    let key = ks.key(Tier::Realtime, "github-mcp", kind::LATEST);
    assert_eq!(key, "mcpwatch:realtime:github-mcp:latest");
    assert_eq!(
        ks.parse(&key),
        Some((Tier::Realtime, "github-mcp", "latest"))
    );
    // service ids may contain ':'; kinds may not
    let key = ks.key(Tier::Forecast, "ns:svc:1", kind::FORECAST);
    assert_eq!(
        ks.parse(&key),
        Some((Tier::Forecast, "ns:svc:1", "forecast"))
    );
    assert_eq!(ks.tier_pattern(Tier::Hourly), "mcpwatch:hourly:*");
    assert_eq!(KeySpace::new("other").parse(&key), None);
    for t in Tier::ALL {
        assert_eq!(Tier::parse(t.as_str()), Some(t));
    }
}

#[test]
fn source_and_mode_serialise_as_the_api_says() {
    assert_eq!(serde_json::to_string(&Source::Cache).unwrap(), "\"cache\"");
    assert_eq!(
        serde_json::to_string(&Source::Database).unwrap(),
        "\"database\""
    );
    assert_eq!(serde_json::to_string(&Source::None).unwrap(), "\"none\"");
    assert_eq!(
        serde_json::to_string(&CacheMode::Degraded).unwrap(),
        "\"degraded\""
    );
    assert_eq!(Source::Database.to_string(), "database");
}

#[test]
fn codec_marks_and_round_trips() {
    // small: plain, marker 0x00
    let small = b"{\"cpu\":0.5}".to_vec();
    let (stored, compressed) = codec::encode(&small, 1024);
    assert!(!compressed);
    assert_eq!(stored[0], codec::PLAIN);
    assert_eq!(codec::decode(stored).unwrap(), Bytes::from(small));
    // large and compressible: LZ4, marker 0x01, smaller
    let big =
        serde_json::to_vec(&(0..400).map(|i| (i, i as f64 * 0.25)).collect::<Vec<_>>()).unwrap();
    assert!(big.len() > 1024);
    let (stored, compressed) = codec::encode(&big, 1024);
    assert!(compressed);
    assert_eq!(stored[0], codec::LZ4);
    assert!(stored.len() < big.len());
    assert_eq!(codec::decode(stored).unwrap(), Bytes::from(big.clone()));
    // exactly at the threshold: not compressed ("over 1 KiB")
    let (stored, compressed) = codec::encode(&vec![b'a'; 1024], 1024);
    assert!(!compressed);
    assert_eq!(stored.len(), 1025);
    // large but incompressible: stays plain
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (stored, compressed) = codec::encode(&noise, 1024);
    assert!(!compressed);
    assert_eq!(codec::decode(stored).unwrap(), Bytes::from(noise));
    // corrupt values are errors, not panics
    assert!(codec::decode(Bytes::new()).is_err());
    assert!(codec::decode(Bytes::from_static(b"\x07abc")).is_err());
    assert!(codec::decode(Bytes::from_static(b"\x01\xff\xff\xff\xff")).is_err());
    assert!(codec::decode(Bytes::from_static(b"\x01\x10\x00\x00\x00garbage")).is_err());
}

#[test]
fn sample_view_round_trips_a_sample() {
    let mut s = Sample::new("filesystem-mcp", 1_700_000_000_000, Origin::Mcp);
    s.series = 42;
    s.cpu = Some(0.25);
    s.memory = Some(0.5);
    s.response_time_ms = Some(12.5);
    s.status = Some(Status::Degraded);
    s.event = Some(Lifecycle::Add);
    s.instance_id = Some("i-1".into());
    let ks = KeySpace::new("mcpwatch");
    let e = SampleView::latest_entry(&s, &ks);
    assert_eq!(e.key, "mcpwatch:realtime:filesystem-mcp:latest");
    assert_eq!(e.tier, Tier::Realtime);
    let back: SampleView = serde_json::from_slice(&e.value).unwrap();
    assert_eq!(back.to_sample(), s);
}

#[test]
fn metrics_register_under_mcpwatch_cache_names() {
    let metrics = CacheMetrics::new();
    metrics.lookup("hit", Some(Duration::from_micros(80)));
    metrics.read(Source::Cache, Duration::from_micros(90));
    metrics.error("get");
    metrics.dropped("full", 2);
    metrics.evicted(Tier::Hourly, 3);
    metrics.set_budget(1 << 20);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for needle in [
        "mcpwatch_cache_lookups_total{result=\"hit\"} 1",
        "mcpwatch_cache_lookup_duration_seconds_bucket{",
        "mcpwatch_cache_read_duration_seconds_count{source=\"cache\"} 1",
        "mcpwatch_cache_reads_total{source=\"cache\"} 1",
        "mcpwatch_cache_hit_ratio 1.0",
        "mcpwatch_cache_errors_total{op=\"get\"} 1",
        "mcpwatch_cache_dropped_total{reason=\"full\"} 2",
        "mcpwatch_cache_evicted_keys_total{tier=\"hourly\"} 3",
        "mcpwatch_cache_memory_budget_bytes 1048576",
        "mcpwatch_cache_degraded 0",
        "mcpwatch_cache_batch_duration_seconds_bucket{",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

// ---------------------------------------------------------------- in-process backend

#[tokio::test]
async fn memory_tiers_expire_on_their_own_ttls() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        ttl: TierTtls {
            realtime_secs: 1,
            recent_secs: 3,
            ..Default::default()
        },
        ..CacheConfig::default()
    };
    let (cache, _) = memory(&config);
    let ks = KeySpace::new("m");
    let batch = vec![
        ks.entry(Tier::Realtime, "a", kind::LATEST, "r"),
        ks.entry(Tier::Recent, "a", kind::POINTS, "p"),
        ks.entry(Tier::Forecast, "a", kind::FORECAST, "f"),
    ];
    cache.put_batch(&batch).await.unwrap();
    let ttl = |k: &str| cache.ttl_of(k).unwrap().as_secs_f64();
    assert!((0.5..=1.0).contains(&ttl(&batch[0].key)));
    assert!((2.5..=3.0).contains(&ttl(&batch[1].key)));
    assert!((3599.0..=3600.0).contains(&ttl(&batch[2].key)));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(cache.get(&batch[0].key).await.unwrap(), None);
    assert_eq!(
        cache.get(&batch[1].key).await.unwrap().as_deref(),
        Some(&b"p"[..])
    );
    assert_eq!(
        cache.get(&batch[2].key).await.unwrap().as_deref(),
        Some(&b"f"[..])
    );
}

#[tokio::test]
async fn memory_budget_evicts_the_coldest_tier_first_and_stays_bounded() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        memory_budget_bytes: 1024 * 1024,
        ..CacheConfig::default()
    };
    let (cache, metrics) = memory(&config);
    let ks = KeySpace::new("m");
    let realtime = entries(&ks, Tier::Realtime, 100, 500);
    cache.put_batch(&realtime).await.unwrap();
    let forecast = entries(&ks, Tier::Forecast, 100, 500);
    cache.put_batch(&forecast).await.unwrap();
    // 3000 hourly windows of ~600 bytes push it well over 1 MiB
    let hourly = entries(&ks, Tier::Hourly, 3000, 600);
    for chunk in hourly.chunks(50) {
        cache.put_batch(chunk).await.unwrap();
        assert!(
            cache.used_bytes() <= config.memory_budget_bytes,
            "budget exceeded"
        );
    }
    let lens = cache.tier_lens();
    assert_eq!(lens[Tier::Realtime.index()], 100, "hotter tier was evicted");
    assert_eq!(lens[Tier::Forecast.index()], 100, "hotter tier was evicted");
    assert!(lens[Tier::Hourly.index()] < 3000);
    assert!(metrics.evicted_keys(Tier::Hourly) > 0);
    assert_eq!(metrics.evicted_keys(Tier::Realtime), 0);
    // the newest hourly windows survive, the oldest went first
    assert!(cache.get(&hourly[2999].key).await.unwrap().is_some());
    assert!(cache.get(&hourly[0].key).await.unwrap().is_none());
    // once the coldest tier is gone, the next one goes
    let more = entries(&KeySpace::new("m2"), Tier::Realtime, 3000, 600);
    for chunk in more.chunks(50) {
        cache.put_batch(chunk).await.unwrap();
    }
    assert!(cache.used_bytes() <= config.memory_budget_bytes);
    assert_eq!(cache.tier_lens()[Tier::Hourly.index()], 0);
    assert!(metrics.evicted_keys(Tier::Forecast) > 0);
    let report = cache.memory_guard().await.unwrap();
    assert_eq!(report.budget_bytes, 1024 * 1024);
    assert!(report.used_bytes_after <= report.budget_bytes);
}

#[tokio::test]
async fn memory_overwrites_do_not_grow_the_cache() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        ..CacheConfig::default()
    };
    let (cache, _) = memory(&config);
    let ks = KeySpace::new("m");
    for i in 0..50_000u32 {
        let e = ks.entry(Tier::Hourly, "svc", kind::HOURLY, i.to_string());
        cache.put_batch(std::slice::from_ref(&e)).await.unwrap();
    }
    assert_eq!(cache.len(), 1);
    let key = ks.key(Tier::Hourly, "svc", kind::HOURLY);
    assert!(cache.used_bytes() < 200);
    assert_eq!(
        cache.get(&key).await.unwrap().as_deref(),
        Some(&b"49999"[..])
    );
    let fifo_len = cache.fifo_len(Tier::Hourly);
    assert!(
        fifo_len <= 2 + 1024 + 1,
        "expiry FIFO not compacted: {fifo_len}"
    );
}

#[tokio::test]
async fn memory_compresses_large_values_like_redis() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        ..CacheConfig::default()
    };
    let (cache, metrics) = memory(&config);
    let ks = KeySpace::new("m");
    let big = ks.entry(Tier::Features, "svc", kind::FEATURES, vec![b'7'; 8192]);
    cache.put_batch(std::slice::from_ref(&big)).await.unwrap();
    let raw = cache.raw(&big.key).unwrap();
    assert_eq!(raw[0], codec::LZ4);
    assert!(raw.len() < 1024);
    assert_eq!(cache.get(&big.key).await.unwrap().unwrap(), big.value);
    assert_eq!(metrics.compressed.get(), 1);
    let got = cache
        .get_many(&[big.key.clone(), "m:features:absent:features".to_string()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(big.value.clone()), None]);
}

// ---------------------------------------------------------------- read path

#[tokio::test]
async fn read_through_says_who_served_and_repairs_the_cache() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        ..CacheConfig::default()
    };
    let metrics = Arc::new(CacheMetrics::new());
    let cache: Arc<dyn HotCache> = Arc::new(MemoryCache::new(&config, metrics.clone()));
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    let reads = ReadThrough::new(Some(cache.clone()), metrics.clone()).with_writer(&writer);
    let ks = KeySpace::new(&config.key_prefix);
    let key = ks.key(Tier::Recent, "svc", kind::POINTS);

    // not cached, in the database
    let (v, src) = reads
        .get(&key, Tier::Recent, || async {
            Ok::<_, String>(Some(Bytes::from_static(b"db")))
        })
        .await
        .unwrap();
    assert_eq!((v.as_deref(), src), (Some(&b"db"[..]), Source::Database));
    // read-repair went through the writer; the next read is a hit
    let deadline = Instant::now() + Duration::from_secs(2);
    while cache.get(&key).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "read-repair never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (v, src) = reads
        .get(&key, Tier::Recent, || async {
            Err::<Option<Bytes>, _>("database must not be asked")
        })
        .await
        .unwrap();
    assert_eq!((v.as_deref(), src), (Some(&b"db"[..]), Source::Cache));
    // nowhere
    let (v, src) = reads
        .get("mcpwatch:recent:nobody:points", Tier::Recent, || async {
            Ok::<_, String>(None)
        })
        .await
        .unwrap();
    assert_eq!((v, src), (None, Source::None));
    // database errors pass through
    let err = reads
        .get("mcpwatch:recent:x:points", Tier::Recent, || async {
            Err::<Option<Bytes>, _>("db down")
        })
        .await
        .unwrap_err();
    assert_eq!(err, "db down");
    assert_eq!(metrics.reads_served(Source::Cache), 1);
    assert_eq!(metrics.reads_served(Source::Database), 1);
    assert_eq!(metrics.reads_served(Source::None), 1);
    assert!((metrics.hit_ratio() - 1.0 / 3.0).abs() < 1e-9);

    // typed JSON reads; a value that does not parse falls back
    let fkey = ks.key(Tier::Forecast, "svc", kind::FORECAST);
    cache
        .put_batch(&[Entry::new(fkey.clone(), Tier::Forecast, "[1.0,2.0]")])
        .await
        .unwrap();
    let (v, src) = reads
        .get_json::<Vec<f64>, _, _, String>(&fkey, Tier::Forecast, || async { Ok(None) })
        .await
        .unwrap();
    assert_eq!((v, src), (Some(vec![1.0, 2.0]), Source::Cache));
    cache
        .put_batch(&[Entry::new(fkey.clone(), Tier::Forecast, "not json")])
        .await
        .unwrap();
    let (v, src) = reads
        .get_json::<Vec<f64>, _, _, String>(&fkey, Tier::Forecast, || async { Ok(Some(vec![3.0])) })
        .await
        .unwrap();
    assert_eq!((v, src), (Some(vec![3.0]), Source::Database));
    assert_eq!(metrics.errors("decode"), 1);
    writer.close().await;
}

#[tokio::test]
async fn disabled_cache_reads_go_to_the_database() {
    let metrics = Arc::new(CacheMetrics::new());
    let config = CacheConfig {
        backend: CacheBackend::None,
        ..CacheConfig::default()
    };
    assert!(open(&config, metrics.clone()).await.unwrap().is_none());
    let writer = CacheWriter::disabled(metrics.clone());
    assert_eq!(writer.mode(), CacheMode::Disabled);
    assert!(!writer.sender().offer(Entry::new("k", Tier::Realtime, "v")));
    let reads = ReadThrough::new(None, metrics.clone()).with_writer(&writer);
    let (v, src) = reads
        .get("k", Tier::Realtime, || async {
            Ok::<_, ()>(Some(Bytes::from_static(b"v")))
        })
        .await
        .unwrap();
    assert_eq!((v.as_deref(), src), (Some(&b"v"[..]), Source::Database));
    writer.close().await;
}

// ---------------------------------------------------------------- writer

#[tokio::test]
async fn writer_groups_entries_into_batches_of_50_and_never_blocks() {
    let config = CacheConfig {
        backend: CacheBackend::Memory,
        channel_capacity: 200,
        ..CacheConfig::default()
    };
    let (cache, metrics) = memory(&config);
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    let tx = writer.sender();
    let ks = KeySpace::new("m");
    // current-thread runtime: all offers land before the writer runs
    let batch = entries(&ks, Tier::Recent, 120, 100);
    assert_eq!(tx.offer_all(batch.clone()), 120);
    let deadline = Instant::now() + Duration::from_secs(2);
    while cache.len() < 120 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        metrics.written(),
        (120, 3),
        "expected pipelines of 50 + 50 + 20"
    );

    // a full queue drops (and counts) instead of waiting
    let flood = entries(&KeySpace::new("flood"), Tier::Recent, 1_000, 50);
    let start = Instant::now();
    let queued = tx.offer_all(flood);
    assert!(start.elapsed() < Duration::from_millis(100), "offer waited");
    assert_eq!(queued, 200);
    assert_eq!(metrics.dropped_writes("full"), 800);
    let stats = writer.close().await;
    assert_eq!(stats.written, 320);
    assert_eq!(cache.len(), 320);
}

// ---------------------------------------------------------------- against real Redis

#[tokio::test]
async fn redis_tiers_get_their_ttls() {
    let (cache, config, _) = shared_redis("ttl").await;
    let ks = cache.key_space().clone();
    let batch: Vec<Entry> = Tier::ALL
        .iter()
        .map(|t| ks.entry(*t, "svc", "v", format!("value of {t}")))
        .collect();
    cache.put_batch(&batch).await.unwrap();
    for e in &batch {
        let ttl: i64 = cache.client().ttl(e.key.as_str()).await.unwrap();
        let want = config.ttl.secs(e.tier) as i64;
        assert!(
            ttl <= want && ttl >= want - 2,
            "{}: ttl {ttl}, want {want}",
            e.key
        );
        assert_eq!(cache.get(&e.key).await.unwrap().unwrap(), e.value);
    }
    // configurable
    let custom = CacheConfig {
        ttl: TierTtls {
            realtime_secs: 7,
            hourly_secs: 120,
            ..Default::default()
        },
        ..config.clone()
    };
    let cache2 = RedisCache::connect(&custom, Arc::new(CacheMetrics::new()))
        .await
        .unwrap();
    cache2.put_batch(&batch).await.unwrap();
    let ttl: i64 = cache2.client().ttl(batch[0].key.as_str()).await.unwrap();
    assert!((5..=7).contains(&ttl), "realtime ttl {ttl}");
    let ttl: i64 = cache2.client().ttl(batch[3].key.as_str()).await.unwrap();
    assert!((118..=120).contains(&ttl), "hourly ttl {ttl}");
    cleanup(&cache).await;
}

#[tokio::test]
async fn redis_writes_go_in_pipelines_of_50() {
    let (cache, config, metrics) = shared_redis("batch").await;
    let ks = cache.key_space().clone();
    let batch = entries(&ks, Tier::Recent, 120, 300);
    assert_eq!(cache.put_batch(&batch).await.unwrap(), 120);
    assert_eq!(
        metrics.written(),
        (120, 3),
        "expected pipelines of 50 + 50 + 20"
    );
    let keys: Vec<String> = batch.iter().map(|e| e.key.clone()).collect();
    let got = cache.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), 120);
    for (e, v) in batch.iter().zip(got) {
        assert_eq!(v.as_ref(), Some(&e.value));
    }

    // the same through the write-behind writer
    let cache: Arc<RedisCache> = Arc::new(cache);
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    assert_eq!(writer.mode(), CacheMode::Ready);
    let more = entries(&ks, Tier::Stats, 120, 300);
    assert_eq!(writer.sender().offer_all(more.clone()), 120);
    let stats = writer.close().await;
    assert_eq!((stats.written, stats.batches), (120, 3));
    assert_eq!(metrics.written(), (240, 6));
    let ttl: i64 = cache.client().ttl(more[119].key.as_str()).await.unwrap();
    assert!((298..=300).contains(&ttl));
    cleanup(&cache).await;
}

#[tokio::test]
async fn redis_compression_round_trips_with_a_marker() {
    let (cache, _, metrics) = shared_redis("lz4").await;
    let ks = cache.key_space().clone();
    let features: Vec<f64> = (0..82).map(|i| (i as f64).sin()).collect();
    let window = serde_json::to_vec(&vec![features; 24]).unwrap(); // ~40 KiB of JSON
    let big = ks.entry(Tier::Features, "svc", kind::FEATURES, window.clone());
    let small = ks.entry(Tier::Realtime, "svc", kind::LATEST, &b"{\"cpu\":0.1}"[..]);
    cache
        .put_batch(&[big.clone(), small.clone()])
        .await
        .unwrap();
    let raw: Bytes = cache.client().get(big.key.as_str()).await.unwrap();
    assert_eq!(
        raw[0],
        codec::LZ4,
        "large value stored without the LZ4 marker"
    );
    assert!(
        raw.len() < window.len() / 2,
        "{} vs {}",
        raw.len(),
        window.len()
    );
    let raw: Bytes = cache.client().get(small.key.as_str()).await.unwrap();
    assert_eq!(&raw[..], b"\x00{\"cpu\":0.1}");
    assert_eq!(
        cache.get(&big.key).await.unwrap().unwrap(),
        Bytes::from(window)
    );
    assert_eq!(cache.get(&small.key).await.unwrap().unwrap(), small.value);
    assert_eq!(metrics.compressed.get(), 1);
    // an unreadable value is an error (counted), never a panic
    let _: () = cache
        .client()
        .set(big.key.as_str(), "\u{7}junk", None, None, false)
        .await
        .unwrap();
    assert!(matches!(
        cache.get(&big.key).await,
        Err(CacheError::Corrupt { .. })
    ));
    assert_eq!(metrics.errors("decode"), 1);
    cleanup(&cache).await;
}

#[tokio::test]
async fn redis_missing_key_falls_back_to_the_database() {
    let (cache, _, metrics) = shared_redis("fallback").await;
    let ks = cache.key_space().clone();
    let cache: Arc<dyn HotCache> = Arc::new(cache);
    let reads = ReadThrough::new(Some(cache.clone()), metrics.clone());
    let key = ks.key(Tier::Stats, "svc", kind::STATS);
    let mut db_calls = 0;
    let (v, src) = reads
        .get(&key, Tier::Stats, || {
            db_calls += 1;
            async { Ok::<_, ()>(Some(Bytes::from_static(b"from-db"))) }
        })
        .await
        .unwrap();
    assert_eq!(
        (v.as_deref(), src, db_calls),
        (Some(&b"from-db"[..]), Source::Database, 1)
    );
    cache
        .put_batch(&[Entry::new(key.clone(), Tier::Stats, "from-cache")])
        .await
        .unwrap();
    let (v, src) = reads
        .get(&key, Tier::Stats, || async { Ok::<_, ()>(None) })
        .await
        .unwrap();
    assert_eq!(
        (v.as_deref(), src),
        (Some(&b"from-cache"[..]), Source::Cache)
    );
    let (v, src) = reads
        .get(
            &ks.key(Tier::Stats, "ghost", kind::STATS),
            Tier::Stats,
            || async { Ok::<_, ()>(None) },
        )
        .await
        .unwrap();
    assert_eq!((v, src), (None, Source::None));
    assert_eq!(metrics.reads_served(Source::Cache), 1);
    assert_eq!(
        metrics
            .lookups
            .get_or_create(&metrics::ResultLabel { result: "miss" })
            .get(),
        2
    );
    assert_eq!(
        metrics
            .lookups
            .get_or_create(&metrics::ResultLabel { result: "hit" })
            .get(),
        1
    );
    let redis = cache.health().await;
    assert_eq!(redis.mode, CacheMode::Ready);
    // cleanup through a fresh handle (the Arc<dyn> hides the client)
    let (c, _, _) = shared_redis("fallback").await;
    cleanup(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_then_recovers_and_refills() {
    let mut server = PrivateRedis::start();
    let config = test_config(&server.url(), "outage");
    let metrics = Arc::new(CacheMetrics::new());
    let cache = Arc::new(RedisCache::connect(&config, metrics.clone()).await.unwrap());
    assert!(cache.is_connected());
    let ks = cache.key_space().clone();
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    let mut status = writer.status();
    assert_eq!(*status.borrow(), CacheMode::Ready);
    let tx = writer.sender();
    let reads = ReadThrough::new(Some(cache.clone() as Arc<dyn HotCache>), metrics.clone())
        .with_writer(&writer);

    let before = entries(&ks, Tier::Hourly, 60, 200);
    tx.offer_all(before.clone());
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.get(&before[59].key).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "writes never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Redis goes away: ingestion keeps offering, never waits
    server.stop();
    wait_for_mode(&mut status, CacheMode::Degraded, Duration::from_secs(3)).await;
    assert!(writer.is_degraded());
    assert_eq!(metrics.degraded.get(), 1);
    let during: Vec<Entry> = (0..500)
        .map(|i| {
            ks.entry(
                Tier::Features,
                &format!("svc-{}", i % 100),
                kind::FEATURES,
                format!("v{i}"),
            )
        })
        .collect();
    let start = Instant::now();
    for e in &during {
        tx.offer(e.clone());
        tokio::task::yield_now().await;
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "ingest was slowed by the outage"
    );
    // reads go straight to the database, without a timeout per read
    let start = Instant::now();
    let (v, src) = reads
        .get(&before[0].key, Tier::Hourly, || async {
            Ok::<_, ()>(Some(Bytes::from_static(b"db")))
        })
        .await
        .unwrap();
    assert_eq!((v.as_deref(), src), (Some(&b"db"[..]), Source::Database));
    assert!(start.elapsed() < Duration::from_millis(100));
    let health = cache.health().await;
    assert_eq!(health.mode, CacheMode::Degraded);

    // the writer holds the newest value of each of the 100 keys for the refill
    let deadline = Instant::now() + Duration::from_secs(3);
    while metrics.pending_refill.get() < 100 {
        assert!(
            Instant::now() < deadline,
            "writer never took the entries offered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.pending_refill.get(), 100);

    // Redis returns (empty: it kept nothing): the writer reconnects and refills
    server.restart();
    wait_for_mode(&mut status, CacheMode::Ready, Duration::from_secs(5)).await;
    assert_eq!(metrics.degraded.get(), 0);
    assert!(metrics.recoveries.get() >= 1);
    // the newest value of every key offered during the outage is there
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let last: Vec<String> = (0..100)
            .map(|s| ks.key(Tier::Features, &format!("svc-{s}"), kind::FEATURES))
            .collect();
        let got = cache.get_many(&last).await.unwrap();
        let want: Vec<Option<Bytes>> = (400..500)
            .map(|i| Some(Bytes::from(format!("v{i}"))))
            .collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "refill incomplete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.refilled.get(), 100);
    assert_eq!(metrics.pending_refill.get(), 0);
    // and new writes flow again
    let after = entries(&ks, Tier::Realtime, 10, 50);
    tx.offer_all(after.clone());
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.get(&after[9].key).await.unwrap().is_none() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, src) = reads
        .get(&after[9].key, Tier::Realtime, || async {
            Ok::<_, ()>(None)
        })
        .await
        .unwrap();
    assert_eq!(src, Source::Cache);
    let stats = writer.close().await;
    assert_eq!(stats.outages, 1);
    assert_eq!(stats.refilled, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_runs_degraded_until_it_appears() {
    let mut server = PrivateRedis::start();
    server.stop();
    let config = CacheConfig {
        connect_timeout_ms: 300,
        ..test_config(&server.url(), "late")
    };
    let metrics = Arc::new(CacheMetrics::new());
    let started = Instant::now();
    let cache = open(&config, metrics.clone())
        .await
        .unwrap()
        .expect("redis backend");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start-up waited for Redis"
    );
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    let mut status = writer.status();
    assert_eq!(*status.borrow(), CacheMode::Degraded);
    let ks = KeySpace::new(&config.key_prefix);
    let e = ks.entry(Tier::Forecast, "svc", kind::FORECAST, "[1,2,3]");
    assert!(writer.sender().offer(e.clone()));
    server.restart();
    wait_for_mode(&mut status, CacheMode::Ready, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.get(&e.key).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "held entry not refilled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_degrades_then_recovers() {
    let server = PrivateRedis::start();
    let config = CacheConfig {
        command_timeout_ms: 100,
        ..test_config(&server.url(), "slow")
    };
    let metrics = Arc::new(CacheMetrics::new());
    let cache = Arc::new(RedisCache::connect(&config, metrics.clone()).await.unwrap());
    let writer = CacheWriter::start(cache.clone(), &config, metrics.clone()).await;
    let mut status = writer.status();
    assert_eq!(*status.borrow(), CacheMode::Ready);
    // another client freezes the server for 1.5 s
    let admin = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&server.url()).unwrap(),
    )
    .build()
    .unwrap();
    admin.init().await.unwrap();
    let _: () = admin
        .custom(
            fred::types::CustomCommand::new_static("CLIENT", None, false),
            vec!["PAUSE", "1500", "ALL"],
        )
        .await
        .unwrap();
    let ks = cache.key_space().clone();
    let e = ks.entry(Tier::Stats, "svc", kind::STATS, "s");
    writer.sender().offer(e.clone());
    wait_for_mode(&mut status, CacheMode::Degraded, Duration::from_secs(2)).await;
    // the stalled write, or the memory guard's INFO, timed out first
    assert!(metrics.errors("put") + metrics.errors("info") >= 1);
    wait_for_mode(&mut status, CacheMode::Ready, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.get(&e.key).await.ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "entry written during the stall never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.close().await;
    let _ = admin.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_memory_guard_evicts_the_coldest_tier_first() {
    let server = PrivateRedis::start();
    let base = test_config(&server.url(), "guard");
    let probe = RedisCache::connect(&base, Arc::new(CacheMetrics::new()))
        .await
        .unwrap();
    let baseline = probe.used_memory().await.unwrap();
    // budget: the empty server plus 1 MiB; write ~3 MiB of hourly windows
    let config = CacheConfig {
        memory_budget_bytes: baseline + 1024 * 1024,
        ..base
    };
    let metrics = Arc::new(CacheMetrics::new());
    let cache = RedisCache::connect(&config, metrics.clone()).await.unwrap();
    let ks = cache.key_space().clone();
    let realtime = entries(&ks, Tier::Realtime, 100, 200);
    let stats = entries(&ks, Tier::Stats, 100, 200);
    cache.put_batch(&realtime).await.unwrap();
    cache.put_batch(&stats).await.unwrap();
    let quiet = cache.memory_guard().await.unwrap();
    assert_eq!(quiet.pressure, Pressure::Ok);
    assert!(quiet.evicted.is_empty());
    let hourly = entries(&ks, Tier::Hourly, 3_500, 900);
    cache.put_batch(&hourly).await.unwrap();
    let report = cache.memory_guard().await.unwrap();
    assert_eq!(report.pressure, Pressure::Over, "{report:?}");
    assert_eq!(
        report.evicted.first().map(|(t, _)| *t),
        Some(Tier::Hourly),
        "{report:?}"
    );
    assert!(
        report.used_bytes_after <= (config.memory_budget_bytes as f64 * 0.8) as u64 + 64 * 1024,
        "{report:?}"
    );
    let keys: Vec<String> = realtime
        .iter()
        .chain(&stats)
        .map(|e| e.key.clone())
        .collect();
    let got = cache.get_many(&keys).await.unwrap();
    assert!(got.iter().all(Option::is_some), "a hotter tier lost keys");
    assert_eq!(metrics.evicted_keys(Tier::Realtime), 0);
    assert!(metrics.evicted_keys(Tier::Hourly) > 0);
    let h = cache.health().await;
    assert_eq!(h.used_memory_bytes, Some(report.used_bytes_after));
}
