//! Typed configuration: defaults in code, then `config/default.toml` (or `--config FILE`),
//! then `MCPWATCH_…` environment variables, then [`Config::validate`].
//!
//! Every stage owns its own section (`[kafka]`, `[ingest]`, `[store]`, `[http]`, …); this
//! file only stacks them and turns any problem into a message that names the file or
//! variable, the key and the fix.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::alert::AlertConfig;
use crate::anomaly::AnomalyConfig;
use crate::api::{ApiConfig, HttpConfig};
use crate::cache::CacheConfig;
use crate::features::FeaturesConfig;
use crate::forecast::ForecastConfig;
use crate::ingest::{IngestConfig, KafkaConfig};
use crate::lifecycle::RetentionConfig;
use crate::store::StoreConfig;

/// The environment prefix: `MCPWATCH_STORE__URL` sets `store.url`.
pub const ENV_PREFIX: &str = "MCPWATCH_";

/// Everything mcpwatch can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub ingest: IngestConfig,
    pub store: StoreConfig,
    pub features: FeaturesConfig,
    pub cache: CacheConfig,
    pub forecast: ForecastConfig,
    pub anomaly: AnomalyConfig,
    pub alert: AlertConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `mcpwatch=debug,rdkafka=warn`. `RUST_LOG` wins.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed into the typed config.
    #[error("{source}\n  fix: check the value's type against config/default.toml (the key and where it came from are named above)")]
    Load {
        #[source]
        source: Box<figment::Error>,
    },
    /// A value parsed but makes no sense.
    #[error("invalid setting `{key}` (env {env}): {problem}\n  fix: {fix}")]
    Invalid {
        key: String,
        env: String,
        problem: String,
        fix: String,
    },
    #[error("config file {path} does not exist\n  fix: pass an existing file with --config, or omit it to use the defaults")]
    Missing { path: PathBuf },
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] for `key`, deriving the environment variable name.
    pub fn invalid(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            env: env_name(key),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// `store.url` → `MCPWATCH_STORE__URL`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase().replace('.', "__"))
}

impl Config {
    /// Loads defaults, then `file` (if any), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Missing {
                    path: path.to_path_buf(),
                });
            }
            fig = fig.merge(Toml::file(path));
        }
        // every setting lives in a section, so only MCPWATCH_<SECTION>__<KEY> variables are
        // settings; MCPWATCH_CONFIG and the tools' own variables are not
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let mut config: Config = fig.extract().map_err(|e| ConfigError::Load {
            source: Box::new(e),
        })?;
        // the seed's variables, honoured on top of the sections they belong to
        let env = |k: &str| std::env::var(k).ok();
        config.anomaly.apply_env(env).map_err(|e| {
            ConfigError::invalid(
                "anomaly.z_threshold",
                e.to_string(),
                "set ANOMALY_Z to a positive number",
            )
        })?;
        config.alert.apply_env(env);
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.ingest.validate()?;
        self.store.validate()?;
        self.features.validate().map_err(|e| {
            ConfigError::invalid(
                "features",
                e.to_string(),
                "see config/default.toml [features]",
            )
        })?;
        self.cache.validate().map_err(|e| {
            ConfigError::invalid("cache", e.to_string(), "see config/default.toml [cache]")
        })?;
        self.forecast.validate().map_err(|e| {
            ConfigError::invalid(
                "forecast",
                e.to_string(),
                "see config/default.toml [forecast]",
            )
        })?;
        self.anomaly.validate().map_err(|e| {
            ConfigError::invalid(
                "anomaly",
                e.to_string(),
                "see config/default.toml [anomaly]",
            )
        })?;
        self.alert.validate().map_err(|e| {
            ConfigError::invalid("alert", e.to_string(), "see config/default.toml [alert]")
        })?;
        self.http.validate()?;
        self.api.validate()?;
        self.retention.validate()?;
        match self.log.format.as_str() {
            "text" | "json" => Ok(()),
            other => Err(ConfigError::invalid(
                "log.format",
                format!("unknown format {other:?}"),
                "use \"text\" or \"json\"",
            )),
        }
    }

    /// The effective configuration as JSON (for `mcpwatch config`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
// figment's Jail returns its own (large) error type from test closures
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_file_matches_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let from_file: Config = Figment::from(Toml::string(&text)).extract().unwrap();
        assert_eq!(
            from_file,
            Config::default(),
            "config/default.toml drifted from the code defaults"
        );
    }

    #[test]
    fn env_overrides_and_validation_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MCPWATCH_INGEST__BATCH_ROWS", "0");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("ingest.batch_rows"), "{err}");
            assert!(err.contains("MCPWATCH_INGEST__BATCH_ROWS"), "{err}");
            assert!(err.contains("fix:"), "{err}");
            jail.set_env("MCPWATCH_INGEST__BATCH_ROWS", "500");
            jail.set_env("MCPWATCH_CONFIG", "ignored-here.toml");
            jail.set_env("MCPWATCH_PROFILE", "debug");
            jail.set_env("MCPWATCH_KAFKA__TOPICS", "[a,b]");
            let c = Config::load(None).unwrap();
            assert_eq!(c.ingest.batch_rows, 500);
            assert_eq!(c.kafka.topics, vec!["a".to_string(), "b".to_string()]);
            Ok(())
        });
    }

    #[test]
    fn type_errors_name_the_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[ingest]\nbatch_rows = \"many\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("batch_rows"), "{err}");
            assert!(err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[store]\nurll = \"x\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("urll"), "{err}");
            Ok(())
        });
    }
}
