//! The JSON form of a [`Sample`] in the cache (the `realtime` tier's `latest` value).

use serde::{Deserialize, Serialize};

use super::{Entry, KeySpace, Tier};
use crate::sample::{Lifecycle, Origin, Sample, Status};

/// A [`Sample`] as cached: the same fields, units and names, with enums as their strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleView {
    pub service_id: String,
    pub ts_ms: i64,
    pub series: i64,
    /// `mcp` or `prometheus`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl From<&Sample> for SampleView {
    fn from(s: &Sample) -> SampleView {
        SampleView {
            service_id: s.service_id.clone(),
            ts_ms: s.ts_ms,
            series: s.series,
            origin: match s.origin {
                Origin::Mcp => "mcp",
                Origin::Prometheus => "prometheus",
            }
            .to_string(),
            cpu: s.cpu,
            memory: s.memory,
            response_time_ms: s.response_time_ms,
            requests: s.requests,
            errors: s.errors,
            status: s.status.map(|x| x.as_str().to_string()),
            event: s.event.map(|x| x.as_str().to_string()),
            instance_id: s.instance_id.clone(),
            host: s.host.clone(),
            platform: s.platform.clone(),
        }
    }
}

impl SampleView {
    /// Back to a [`Sample`]; unknown enum strings become `None` (origin defaults to `mcp`).
    pub fn to_sample(&self) -> Sample {
        let origin = if self.origin == "prometheus" {
            Origin::Prometheus
        } else {
            Origin::Mcp
        };
        let mut s = Sample::new(self.service_id.clone(), self.ts_ms, origin);
        s.series = self.series;
        s.cpu = self.cpu;
        s.memory = self.memory;
        s.response_time_ms = self.response_time_ms;
        s.requests = self.requests;
        s.errors = self.errors;
        s.status = self.status.as_deref().and_then(Status::parse);
        s.event = self.event.as_deref().and_then(Lifecycle::parse);
        s.instance_id = self.instance_id.clone();
        s.host = self.host.clone();
        s.platform = self.platform.clone();
        s
    }

    /// The `realtime`-tier entry holding this sample as its service's latest.
    pub fn latest_entry(sample: &Sample, keys: &KeySpace) -> Entry {
        let json = serde_json::to_vec(&SampleView::from(sample)).expect("plain struct serialises");
        keys.entry(
            Tier::Realtime,
            &sample.service_id,
            super::kind::LATEST,
            json,
        )
    }
}
