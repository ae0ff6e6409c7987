//! The router: a request or loop context (`service_type`, `time_slot`, `runtime_env`) → a model
//! version from the `[forecast.routes]` table, as in the seed's `app/core/router.py`
//! (`select_route(ctx)` → e.g. `web_normal_v1`, `lstm_web_peak_v2`). A version whose name
//! contains `lstm` runs the LSTM; any other name runs the baseline predictor.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ForecastError;

/// What kind of service it is (seed default `web`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// A web front end.
    #[default]
    Web,
    /// An API service.
    Api,
    /// A database.
    Db,
}

/// Which part of the week the forecast is for (seed default `normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSlot {
    /// Business peak.
    Peak,
    /// Ordinary hours.
    #[default]
    Normal,
    /// Night.
    Low,
    /// Saturday or Sunday.
    Weekend,
}

/// Where the service runs (seed default `prod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeEnv {
    /// Production.
    #[default]
    Prod,
    /// Development.
    Dev,
}

impl ServiceType {
    /// The config/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Web => "web",
            ServiceType::Api => "api",
            ServiceType::Db => "db",
        }
    }

    fn parse(s: &str) -> Option<ServiceType> {
        Some(match s {
            "web" => ServiceType::Web,
            "api" => ServiceType::Api,
            "db" => ServiceType::Db,
            _ => return None,
        })
    }
}

impl TimeSlot {
    /// The config/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSlot::Peak => "peak",
            TimeSlot::Normal => "normal",
            TimeSlot::Low => "low",
            TimeSlot::Weekend => "weekend",
        }
    }

    fn parse(s: &str) -> Option<TimeSlot> {
        Some(match s {
            "peak" => TimeSlot::Peak,
            "normal" => TimeSlot::Normal,
            "low" => TimeSlot::Low,
            "weekend" => TimeSlot::Weekend,
            _ => return None,
        })
    }

    /// The slot of a moment, for the continuous loop (which has no request to say it):
    /// Saturday/Sunday → weekend; 09:00–17:59 → peak; 00:00–05:59 → low; else normal
    /// (local time = UTC + `utc_offset_secs`).
    pub fn at(ts_ms: i64, utc_offset_secs: i32) -> TimeSlot {
        let local = ts_ms.div_euclid(1000) + i64::from(utc_offset_secs);
        let day = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays.
        let weekday = (day + 4).rem_euclid(7);
        let hour = local.rem_euclid(86_400) / 3600;
        if weekday == 0 || weekday == 6 {
            TimeSlot::Weekend
        } else if (9..18).contains(&hour) {
            TimeSlot::Peak
        } else if hour < 6 {
            TimeSlot::Low
        } else {
            TimeSlot::Normal
        }
    }
}

impl RuntimeEnv {
    /// The config/API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeEnv::Prod => "prod",
            RuntimeEnv::Dev => "dev",
        }
    }

    fn parse(s: &str) -> Option<RuntimeEnv> {
        Some(match s {
            "prod" => RuntimeEnv::Prod,
            "dev" => RuntimeEnv::Dev,
            _ => return None,
        })
    }
}

/// The part of a request's or service's context the router reads (defaults as in the seed:
/// web, normal, prod).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ForecastContext {
    /// `web|api|db`.
    pub service_type: ServiceType,
    /// `peak|normal|low|weekend`.
    pub time_slot: TimeSlot,
    /// `prod|dev`.
    pub runtime_env: RuntimeEnv,
}

impl fmt::Display for ForecastContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            self.service_type.as_str(),
            self.time_slot.as_str(),
            self.runtime_env.as_str()
        )
    }
}

/// Which predictor a model version runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The ONNX LSTM (the name contains `lstm`).
    Lstm,
    /// The statistical baseline.
    Baseline,
}

impl Engine {
    /// The seed's rule: "lstm" in the name runs the LSTM, anything else the baseline.
    pub fn for_version(version: &str) -> Engine {
        if version.to_ascii_lowercase().contains("lstm") {
            Engine::Lstm
        } else {
            Engine::Baseline
        }
    }
}

/// A parsed `[forecast.routes]` key: each part a value or `None` for `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteKey {
    service_type: Option<ServiceType>,
    time_slot: Option<TimeSlot>,
    runtime_env: Option<RuntimeEnv>,
}

impl RouteKey {
    /// Parses `web_peak_prod`, `any_any_dev`, … or `default` (= `any_any_any`).
    pub fn parse(key: &str) -> Result<RouteKey, String> {
        if key == "default" {
            return Ok(RouteKey {
                service_type: None,
                time_slot: None,
                runtime_env: None,
            });
        }
        let parts: Vec<&str> = key.split('_').collect();
        let [st, ts, env] = parts[..] else {
            return Err(format!(
                "`{key}` does not have three parts <service_type>_<time_slot>_<runtime_env>"
            ));
        };
        fn part<T>(s: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<Option<T>, String> {
            if s == "any" {
                return Ok(None);
            }
            parse(s)
                .map(Some)
                .ok_or_else(|| format!("`{s}` is not a {what} (nor `any`)"))
        }
        Ok(RouteKey {
            service_type: part(st, ServiceType::parse, "service_type (web|api|db)")?,
            time_slot: part(ts, TimeSlot::parse, "time_slot (peak|normal|low|weekend)")?,
            runtime_env: part(env, RuntimeEnv::parse, "runtime_env (prod|dev)")?,
        })
    }

    fn matches(&self, ctx: &ForecastContext) -> bool {
        self.service_type.is_none_or(|v| v == ctx.service_type)
            && self.time_slot.is_none_or(|v| v == ctx.time_slot)
            && self.runtime_env.is_none_or(|v| v == ctx.runtime_env)
    }

    /// Specificity, compared lexicographically: more fixed parts first, then service type over
    /// time slot over runtime env, so `web_any_any` beats `any_peak_any`.
    fn rank(&self) -> (u8, u8, u8, u8) {
        let st = u8::from(self.service_type.is_some());
        let ts = u8::from(self.time_slot.is_some());
        let env = u8::from(self.runtime_env.is_some());
        (st + ts + env, st, ts, env)
    }
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The model version the table names (reported as `model_version` when it runs).
    pub version: String,
    /// What that version runs.
    pub engine: Engine,
}

/// The routing table, most specific entry first.
#[derive(Debug, Clone)]
pub struct Router {
    entries: Vec<(RouteKey, Route)>,
}

impl Router {
    /// Builds the router from `[forecast.routes]`.
    pub fn from_table(table: &BTreeMap<String, String>) -> Result<Router, ForecastError> {
        let mut entries = Vec::with_capacity(table.len());
        for (k, v) in table {
            let key = RouteKey::parse(k).map_err(|problem| ForecastError::Config {
                key: format!("forecast.routes.{k}"),
                problem,
                fix: "write keys as <service_type>_<time_slot>_<runtime_env> (each part a value or `any`) or `default`".into(),
            })?;
            entries.push((
                key,
                Route {
                    version: v.clone(),
                    engine: Engine::for_version(v),
                },
            ));
        }
        // Stable sort: equal ranks keep the table's (alphabetical) order.
        entries.sort_by_key(|(k, _)| std::cmp::Reverse(k.rank()));
        if !entries.iter().any(|(k, _)| k.rank().0 == 0) {
            return Err(ForecastError::Config {
                key: "forecast.routes.default".into(),
                problem: "is missing, so some contexts would have no model".into(),
                fix: "add default = \"lstm_total_events_h1\" under [forecast.routes]".into(),
            });
        }
        Ok(Router { entries })
    }

    /// The model version for a context: the most specific matching entry.
    pub fn route(&self, ctx: &ForecastContext) -> &Route {
        self.entries
            .iter()
            .find(|(k, _)| k.matches(ctx))
            .map(|(_, r)| r)
            .unwrap_or_else(|| &self.entries[self.entries.len() - 1].1)
    }

    /// Whether any entry runs the LSTM (if none, the model need not be loaded).
    pub fn uses_lstm(&self) -> bool {
        self.entries.iter().any(|(_, r)| r.engine == Engine::Lstm)
    }
}
