//! The `mcpwatch` command line. `anyhow` lives here and nowhere below.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use mcpwatch::config::Config;

/// mcpwatch — forecasts, anomaly alerts and capacity plans for MCP servers and other services.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). Defaults are built in; every key can also be set with
    /// MCPWATCH_<SECTION>__<KEY> environment variables.
    #[arg(long, short, global = true, env = "MCPWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: consume, store, serve /metrics, /healthz, /readyz.
    Run,
    /// Run the daemon on the embedded default: an in-process Kafka fed by a generator of
    /// realistic MCP-server traffic, an in-process cache and the embedded Arrow store (no
    /// Kafka, Redis or PostgreSQL needed).
    Demo {
        /// Simulated MCP servers.
        #[arg(long, default_value_t = 40)]
        servers: usize,
        /// Hours of history produced before going live (the anomaly detectors learn 75 h of
        /// 30-minute buckets before they score).
        #[arg(long, default_value_t = 96)]
        history_hours: i64,
        /// Seconds between two live samples of one server.
        #[arg(long, default_value_t = 10)]
        live_step_secs: i64,
    },
    /// Apply the SQL migrations in sql/ and create partitions ahead, then exit.
    Migrate,
    /// Print the effective configuration (defaults + file + environment) as JSON.
    Config,
    /// Benchmarks and failure tests; each prints its figures on its last line.
    #[command(subcommand)]
    Bench(Bench),
    /// The feature engine on CSV files in the seed's format.
    #[command(subcommand)]
    Features(Features),
    /// Evaluations on public data; each prints its scores on its last line.
    #[command(subcommand)]
    Eval(Eval),
    /// API keys for the HTTP API (Authorization: Bearer <key>); stored as hashes in PostgreSQL.
    #[command(subcommand)]
    Apikey(Apikey),
    /// The data lifecycle jobs, run once from the command line.
    #[command(subcommand)]
    Retention(Retention),
    /// Read-only DataFusion SQL over the archive (and the embedded store when
    /// store.backend = "local"): each table (e.g. `samples`, `samples_1h`) by name, with a
    /// `day` column ('YYYY-MM-DD').
    Query {
        #[arg(long)]
        sql: String,
        /// Archive folder (default: retention.archive_dir).
        #[arg(long)]
        archive: Option<PathBuf>,
        /// `table` (aligned text) or `csv` (with a header line, e.g. a training CSV).
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Stop after this many rows (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
enum Apikey {
    /// Make a key and print it (the only time it is shown).
    Create {
        /// Who or what the key is for (shown by `list`).
        #[arg(long)]
        name: String,
    },
    /// List the keys (ids, names, creation and revocation times; never the secrets).
    List,
    /// Revoke a key by id; running daemons refuse it within api.key_refresh_ms.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum Retention {
    /// Create partitions ahead, retire expired partitions (archive, verify, drop), check the
    /// storage budget. Prints one summary line.
    Run,
    /// Compute the aggregate windows that closed since the last run. Prints one summary line.
    Aggregate,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
}

#[derive(Subcommand)]
enum Eval {
    /// A shipped forecaster on a seed-format CSV, exactly as the daemon runs it (features by
    /// the Rust engine from the raw columns, ONNX in Rust), rolling origins every 24 rows over
    /// the chronological test (or validation) split. Without --model and --grid: the 30-minute
    /// model on 30-minute rows (`lstm_total_events_v2`, `--grid rows`).
    Forecast {
        #[arg(long)]
        csv: PathBuf,
        #[command(flatten)]
        model: ModelOpts,
        /// `hours`: one 1-hour bucket per hour (the daemon's default width; default model
        /// `lstm_total_events_h1`). `rows`: every row a 30-minute bucket (`…_v2`). Default: the
        /// grid of --model's `row_interval_minutes`, or `rows` without --model.
        #[arg(long, value_enum)]
        grid: Option<ExportGrid>,
        /// `test` (rows int(0.8n)..n, the reported figure) or `validation`.
        #[arg(long, default_value = "test")]
        split: String,
    },
    /// Run a detector over the Numenta Anomaly Benchmark as a stream, write the official
    /// result layout and score it with the NAB rules (standard, low FP, low FN).
    Nab {
        /// NAB folder with data/, labels/ and profiles.json.
        #[arg(long, default_value = "../shared/data/nab")]
        data: PathBuf,
        #[arg(long, default_value = "target/nab")]
        out: PathBuf,
        /// mcpwatch, zscore, windowedGaussian, random or null.
        #[arg(long, default_value = "mcpwatch")]
        detector: String,
    },
}

/// Which model and runtime library the forecast commands use (defaults: forecast config).
#[derive(clap::Args)]
struct ModelOpts {
    /// The model's metadata JSON (its .onnx sits next to it). Default: the forecast config's
    /// default model (`models/lstm_total_events_h1.json`, 1-hour buckets).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The ONNX Runtime library; default: $ORT_DYLIB_PATH, next to the executable, ./lib.
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

impl ModelOpts {
    fn config(&self) -> mcpwatch::forecast::ForecastConfig {
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| PathBuf::from(mcpwatch::forecast::config::DEFAULT_MODEL));
        Self::config_for(model, self.ort_library.clone())
    }

    fn config_for(
        model: PathBuf,
        ort_library: Option<PathBuf>,
    ) -> mcpwatch::forecast::ForecastConfig {
        // Every context routes to the model given, reported under its file name.
        let name = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        mcpwatch::forecast::ForecastConfig {
            model,
            ort_library,
            routes: [("default".to_string(), name)].into(),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum Features {
    /// Recompute the derived columns from the raw ones and report agreement per feature.
    Check {
        #[arg(long)]
        csv: PathBuf,
    },
    /// Write the engine's own features for a seed-format CSV (same header), e.g. for training.
    Export {
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// `hours`: one row per hour (the seed's hourly observations, gaps forward-filled; what
        /// `lstm_total_events_h1`, the model for the default 1-hour buckets, is trained on).
        /// `rows`: one row per input row, each a 30-minute bucket (`lstm_total_events_v2`).
        #[arg(long, value_enum, default_value_t = ExportGrid::Hours)]
        grid: ExportGrid,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportGrid {
    Hours,
    Rows,
}

impl ExportGrid {
    fn grid(self) -> mcpwatch::features::CheckGrid {
        match self {
            ExportGrid::Hours => mcpwatch::features::CheckGrid::Seed,
            ExportGrid::Rows => mcpwatch::features::CheckGrid::EveryRow,
        }
    }
}

#[derive(Subcommand)]
enum Bench {
    /// Pre-fill a topic, measure the daemon draining it into PostgreSQL, and a bare binary
    /// COPY of the same rows in the same run.
    Ingest(LoadOpts),
    /// The daemon's CPU per sample on one thread: decoding the traffic `bench ingest` uses,
    /// and encoding it as binary COPY. No broker, no database. Last line:
    /// `messages=M samples=N rejected=R decode_ns_per_sample=D decode_rate=X/s encode_ns_per_sample=E`.
    Decode {
        #[arg(long, default_value_t = 1_000_000)]
        samples: usize,
        #[arg(long, default_value_t = 500)]
        services: usize,
        /// Timed rounds; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Streaming anomaly detection: cost per point and state per series.
    Anomaly {
        #[arg(long, default_value_t = 100_000)]
        series: usize,
    },
    /// Incremental feature engine: cost per sample and state per service.
    Features {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        #[arg(long, default_value_t = 5_000_000)]
        samples: usize,
    },
    /// Redis hot cache: 50-item pipelined batches, hits and misses against a real Redis.
    Cache {
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        url: String,
        #[arg(long, default_value_t = 5_000)]
        iterations: usize,
    },
    /// One forecasting cycle: gather every service's window from a feature engine filled with
    /// synthetic data, then batched LSTM inference. Last line: `cycle_ms=X batch=B`.
    Forecast {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Closed buckets per service before the cycle (of the width the model was trained on).
        #[arg(long, default_value_t = 72)]
        history: usize,
        /// Timed cycles (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 5)]
        cycles: usize,
        /// Windows per ONNX call.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Inference workers (one ONNX session each).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[command(flatten)]
        model: ModelOpts,
    },
    /// Produce hours of MCP-server history into a topic (no malformed messages), ending now:
    /// the warm-up of `load-tests/plans.sh`. Last line: `messages=N secs=S`.
    Prefill {
        #[arg(long, default_value = "127.0.0.1:9094")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 100)]
        services: usize,
        #[arg(long, default_value_t = 72)]
        hours: i64,
        /// Seconds between two samples of one server.
        #[arg(long, default_value_t = 300)]
        step_secs: i64,
    },
    /// Pre-fill a topic, SIGKILL the daemon while it drains, restart, and check the table.
    Crash {
        #[command(flatten)]
        load: LoadOpts,
        /// How many times to SIGKILL the daemon.
        #[arg(long, default_value_t = 2)]
        kills: usize,
    },
}

#[derive(clap::Args)]
struct LoadOpts {
    /// Kafka bootstrap servers of a running broker.
    #[arg(long, default_value = "127.0.0.1:9094")]
    brokers: String,
    /// PostgreSQL URL (schemas bench_* are dropped and re-created).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Samples to pre-fill.
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Share of the pre-filled messages that are malformed (dead-lettered).
    #[arg(long, default_value_t = 0.01)]
    malformed_ratio: f64,
    #[arg(long, default_value_t = 500)]
    services: usize,
    /// Topic to pre-fill; it must exist (or the broker must auto-create it).
    #[arg(long)]
    topic: String,
    /// Dead-letter topic; it must exist (or be auto-created).
    #[arg(long)]
    dead_letter_topic: String,
    /// HTTP port of the daemon under test.
    #[arg(long, default_value_t = 18080)]
    http_port: u16,
    /// Writer connections of the daemon under test.
    #[arg(long, default_value_t = 2)]
    writers: usize,
}

impl LoadOpts {
    fn args(&self) -> mcpwatch::loadtest::LoadArgs {
        mcpwatch::loadtest::LoadArgs {
            brokers: self.brokers.clone(),
            pg_url: self.pg_url.clone(),
            samples: self.samples,
            services: self.services,
            malformed_ratio: self.malformed_ratio,
            topic: self.topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            http_port: self.http_port,
            writers: self.writers,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mcpwatch")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run => {
                let shutdown = CancellationToken::new();
                mcpwatch::daemon::cancel_on_signals(shutdown.clone());
                mcpwatch::daemon::run(config, shutdown).await
            }
            Command::Demo {
                servers,
                history_hours,
                live_step_secs,
            } => {
                let shutdown = CancellationToken::new();
                mcpwatch::daemon::cancel_on_signals(shutdown.clone());
                let args = mcpwatch::demo::DemoArgs {
                    servers,
                    history_hours,
                    live_step_secs,
                };
                mcpwatch::demo::run(config, args, shutdown).await
            }
            Command::Migrate => {
                let (_, _, ran) = prepared_store(&config, "migrating").await?;
                println!("migrations_applied={ran} schema={}", config.store.schema);
                Ok(())
            }
            Command::Apikey(cmd) => {
                let (pool, _, _) = prepared_store(&config, "preparing").await?;
                use mcpwatch::api::auth;
                match cmd {
                    Apikey::Create { name } => {
                        let key = auth::create_key(&pool, &name).await?;
                        eprintln!("created key {} ({name}); it is shown once:", key.id);
                        println!("{}", key.token);
                    }
                    Apikey::List => {
                        println!("{:<14} {:<26} {:<26} name", "id", "created", "revoked");
                        for k in auth::list_keys(&pool).await? {
                            println!(
                                "{:<14} {:<26} {:<26} {}",
                                k.id,
                                k.created_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                k.revoked_at.map_or("-".to_string(), |t| t
                                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                                k.name
                            );
                        }
                    }
                    Apikey::Revoke { id } => {
                        auth::revoke_key(&pool, &id).await?;
                        println!(
                            "revoked {id}; daemons refuse it within {} ms (api.key_refresh_ms)",
                            config.api.key_refresh_ms
                        );
                    }
                }
                Ok(())
            }
            Command::Config => {
                println!("{}", config.to_json());
                Ok(())
            }
            Command::Bench(Bench::Ingest(load)) => {
                let report = mcpwatch::loadtest::bench_ingest(&load.args()).await?;
                println!("{report}");
                anyhow::ensure!(
                    report.lost == 0 && report.duplicates == 0,
                    "samples were lost or duplicated"
                );
                Ok(())
            }
            Command::Bench(Bench::Decode {
                samples,
                services,
                rounds,
            }) => {
                print_blocking(move || mcpwatch::loadtest::bench_decode(samples, services, rounds))
                    .await
            }
            Command::Bench(Bench::Features { services, samples }) => {
                print_blocking(move || mcpwatch::features::run_bench(services, samples)).await
            }
            Command::Bench(Bench::Anomaly { series }) => {
                print_blocking(move || mcpwatch::anomaly::run_bench(series)).await
            }
            Command::Eval(Eval::Nab {
                data,
                out,
                detector,
            }) => {
                let report = tokio::task::spawn_blocking(move || {
                    mcpwatch::anomaly::run_nab_eval(&data, &out, &detector)
                })
                .await??;
                println!("{report}");
                Ok(())
            }
            Command::Bench(Bench::Cache { url, iterations }) => {
                println!("{}", mcpwatch::cache::run_bench(&url, iterations).await?);
                Ok(())
            }
            Command::Features(Features::Check { csv }) => {
                println!("{}", mcpwatch::features::run_check(&csv)?);
                Ok(())
            }
            Command::Features(Features::Export { csv, out, grid }) => {
                let rows = mcpwatch::features::export_csv_with(&csv, &out, grid.grid())?;
                println!("rows={rows} out={}", out.display());
                Ok(())
            }
            Command::Eval(Eval::Forecast {
                csv,
                model,
                split,
                grid,
            }) => {
                let split = match split.as_str() {
                    "test" => mcpwatch::forecast::eval::EvalSplit::Test,
                    "validation" => mcpwatch::forecast::eval::EvalSplit::Validation,
                    other => anyhow::bail!("--split {other}: use test or validation"),
                };
                let (path, grid) = mcpwatch::forecast::eval::resolve_model_and_grid(
                    model.model.clone(),
                    grid.map(ExportGrid::grid),
                )?;
                let opts = mcpwatch::forecast::EvalOptions {
                    csv,
                    config: ModelOpts::config_for(path, model.ort_library.clone()),
                    split,
                    grid,
                };
                let report =
                    tokio::task::spawn_blocking(move || mcpwatch::forecast::run_eval(&opts))
                        .await??;
                println!("{report}");
                Ok(())
            }
            Command::Bench(Bench::Forecast {
                services,
                history,
                cycles,
                batch,
                workers,
                model,
            }) => {
                let config = mcpwatch::forecast::ForecastConfig {
                    batch_size: batch,
                    workers,
                    ..model.config()
                };
                let report =
                    mcpwatch::forecast::run_bench(config, services, history, cycles).await?;
                println!("{report}");
                anyhow::ensure!(
                    report.fallbacks == 0,
                    "the LSTM did not run for every service (see the lines above)"
                );
                Ok(())
            }
            Command::Bench(Bench::Prefill {
                brokers,
                topic,
                services,
                hours,
                step_secs,
            }) => {
                let (n, took) = tokio::task::spawn_blocking(move || {
                    mcpwatch::loadtest::produce_history(
                        &brokers,
                        &topic,
                        services,
                        hours,
                        step_secs,
                        mcpwatch::daemon::now_ms(),
                    )
                })
                .await??;
                println!("messages={n} secs={:.1}", took.as_secs_f64());
                Ok(())
            }
            Command::Retention(job) => {
                let (pool, partitions, _) = prepared_store(&config, "preparing").await?;
                let metrics = mcpwatch::lifecycle::LifecycleMetrics::default();
                match job {
                    Retention::Run => {
                        let retention = mcpwatch::lifecycle::Retention::new(
                            mcpwatch::lifecycle::RetentionArgs {
                                pool,
                                config: config.retention.clone(),
                                partitions,
                                partitions_ahead_days: config.store.partitions_ahead_days,
                                metrics,
                                clock: std::sync::Arc::new(mcpwatch::daemon::now_ms),
                            },
                        );
                        let report = retention.run_with_retry().await?;
                        println!("{report}");
                    }
                    Retention::Aggregate => {
                        let aggregator = mcpwatch::lifecycle::Aggregator::new(
                            mcpwatch::lifecycle::AggregatorArgs {
                                pool,
                                config: config.retention.clone(),
                                partitions,
                                metrics,
                                clock: std::sync::Arc::new(mcpwatch::daemon::now_ms),
                            },
                        );
                        let report = aggregator.run().await?;
                        let rows: Vec<String> = mcpwatch::lifecycle::RESOLUTIONS
                            .iter()
                            .zip(report.rows)
                            .map(|(r, n)| format!("rows_{}={n}", r.name))
                            .collect();
                        println!("aggregates {}", rows.join(" "));
                    }
                }
                Ok(())
            }
            Command::Query {
                sql,
                archive,
                format,
                limit,
            } => {
                use mcpwatch::lifecycle::query;
                let mut roots =
                    vec![archive.unwrap_or_else(|| config.retention.archive_dir.clone())];
                if config.store.backend == mcpwatch::store::StoreBackend::Local {
                    roots.push(config.store.local_dir.clone());
                }
                let ctx = query::context_over(&roots)
                    .await
                    .with_context(|| format!("opening {roots:?}"))?;
                let timeout = std::time::Duration::from_secs(24 * 3600);
                let result = query::run_query(&ctx, &sql, limit, timeout).await?;
                match format {
                    QueryFormat::Table => {
                        println!("{}", query::format_table(&result)?);
                        eprintln!(
                            "{} row(s){}",
                            result.rows,
                            if result.truncated {
                                " (truncated by --limit)"
                            } else {
                                ""
                            }
                        );
                    }
                    QueryFormat::Csv => {
                        let stdout = std::io::stdout();
                        query::write_csv(&result, stdout.lock())?;
                    }
                }
                Ok(())
            }
            Command::Bench(Bench::Crash { load, kills }) => {
                let report = mcpwatch::loadtest::bench_crash(&load.args(), kills).await?;
                println!("{report}");
                anyhow::ensure!(
                    report.lost == 0 && report.duplicates == 0,
                    "samples were lost or duplicated"
                );
                Ok(())
            }
        }
    })
}

/// The PostgreSQL pool with migrations applied and partitions made ahead: what every one-shot
/// command that touches the database starts from. `doing` names the step in the error.
async fn prepared_store(
    config: &Config,
    doing: &str,
) -> anyhow::Result<(
    deadpool_postgres::Pool,
    std::sync::Arc<mcpwatch::store::Partitions>,
    usize,
)> {
    let pool = mcpwatch::store::pool(&config.store)?;
    let partitions = std::sync::Arc::new(mcpwatch::store::Partitions::default());
    let ran = mcpwatch::store::prepare(
        &pool,
        &config.store,
        &partitions,
        mcpwatch::daemon::now_ms(),
    )
    .await
    .with_context(|| format!("{doing} schema {} at store.url", config.store.schema))?;
    Ok((pool, partitions, ran))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs a CPU-bound bench off the async workers and prints its report (the last line is the
/// figures).
async fn print_blocking<R: std::fmt::Display + Send + 'static>(
    bench: impl FnOnce() -> R + Send + 'static,
) -> anyhow::Result<()> {
    let report = tokio::task::spawn_blocking(bench).await?;
    println!("{report}");
    Ok(())
}
