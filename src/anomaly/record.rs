//! What the features stage hands the detection stage: one compact record per closed bucket of
//! a service, holding the five series the stage checks ([`Metric`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::features::ClosedBucket;

/// Index of `avg_cpu` / `avg_memory` among the bucket's 14 raw aggregates
/// ([`crate::features::FEATURE_NAMES`] order).
const AGG_AVG_CPU: usize = 4;
const AGG_AVG_MEMORY: usize = 5;

/// A series checked per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean CPU of the bucket (0..1).
    Cpu,
    /// Mean memory of the bucket (0..1).
    Memory,
    /// `total_events`: requests in the bucket (or samples, without a request counter).
    Requests,
    /// Errors in the bucket.
    Errors,
    /// Mean response time of the bucket, ms.
    ResponseTime,
}

/// Names of [`Metric`], in index order (config values, labels, the `metric` column).
pub const METRIC_NAMES: &[&str] = &["cpu", "memory", "requests", "errors", "response_time"];

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::Requests,
        Metric::Errors,
        Metric::ResponseTime,
    ];

    pub fn as_str(self) -> &'static str {
        METRIC_NAMES[self.index()]
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One closed bucket of one service, as the detection stage needs it (about 80 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRecord {
    pub service_id: Arc<str>,
    /// Bucket start, epoch ms (the time the detectors see).
    pub start_ms: i64,
    pub width_ms: i64,
    /// One value per [`Metric`] (index order); `None` where the bucket has no data for it
    /// (no response time carried, or a gap bucket: nothing was observed at all).
    pub values: [Option<f64>; 5],
}

impl BucketRecord {
    /// The record of a closed bucket, with observed values only: a gap-filled bucket (no
    /// sample) carries none, and a value the engine forward-filled (no sample carried that
    /// metric) is left out. Errors count as observed where requests were (MCP servers report
    /// both together) or where some were counted.
    pub fn from_closed(b: &ClosedBucket) -> BucketRecord {
        let x = &b.extras;
        let values = if b.gap_filled {
            [None; 5]
        } else {
            [
                x.has_cpu.then(|| f64::from(b.row.aggregates[AGG_AVG_CPU])),
                x.has_memory
                    .then(|| f64::from(b.row.aggregates[AGG_AVG_MEMORY])),
                x.has_requests.then_some(b.row.total_events),
                (x.has_requests || x.errors != 0.0).then_some(x.errors),
                x.avg_response_ms,
            ]
        };
        BucketRecord {
            service_id: b.service_id.clone(),
            start_ms: b.start_ms,
            width_ms: b.width_ms,
            values,
        }
    }

    /// A record with the given values (tests, replays).
    pub fn new(service_id: &str, start_ms: i64, width_ms: i64, values: [Option<f64>; 5]) -> Self {
        BucketRecord {
            service_id: Arc::from(service_id),
            start_ms,
            width_ms,
            values,
        }
    }

    pub fn value(&self, m: Metric) -> Option<f64> {
        self.values[m.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FEATURE_NAMES;

    #[test]
    fn aggregate_indices_match_the_feature_names() {
        assert_eq!(FEATURE_NAMES[AGG_AVG_CPU], "avg_cpu");
        assert_eq!(FEATURE_NAMES[AGG_AVG_MEMORY], "avg_memory");
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
    }
}
