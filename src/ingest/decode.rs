//! Turns Kafka message payloads into [`Sample`]s, or into [`Rejected`] entries that carry the
//! original bytes and a reason for the dead-letter topic.
//!
//! A payload is one JSON object or a JSON array of them. Each object is detected on its own:
//! `server_id` means the MCP format, `name` + `value` the prometheus-kafka-adapter format.
//! Nothing here panics on input: every failure is a value.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::{IngestConfig, MetricMapping, PrometheusConfig};
use crate::sample::{fingerprint, Lifecycle, Origin, Sample, Status};

/// Longest accepted id-like string (service, instance, host, platform), in bytes.
const MAX_ID_BYTES: usize = 256;
/// Counter series remembered for reset-aware increases before the memory is reset.
const MAX_COUNTER_SERIES: usize = 1 << 20;

/// Why a sample was not accepted. `label()` is the bounded metric label; `Display` is the
/// detailed reason written to the dead-letter header.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectReason {
    TooLarge { bytes: usize, limit: usize },
    InvalidJson(String),
    NotAnObject,
    UnknownFormat,
    MissingField(&'static str),
    InvalidField { field: &'static str, detail: String },
    TimestampOutOfRange { ts_ms: i64, detail: &'static str },
    UnmappedMetric(String),
}

impl RejectReason {
    /// A short, bounded label for `mcpwatch_samples_rejected_total{reason=…}`.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::InvalidJson(_) => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::MissingField(_) => "missing_field",
            RejectReason::InvalidField { .. } => "invalid_field",
            RejectReason::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            RejectReason::UnmappedMetric(_) => "unmapped_metric",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLarge { bytes, limit } => {
                write!(
                    f,
                    "message of {bytes} bytes exceeds ingest.max_message_bytes = {limit}"
                )
            }
            RejectReason::InvalidJson(e) => write!(f, "not valid JSON: {e}"),
            RejectReason::NotAnObject => write!(f, "a sample must be a JSON object"),
            RejectReason::UnknownFormat => write!(
                f,
                "neither MCP (needs server_id) nor prometheus-kafka-adapter (needs name and value)"
            ),
            RejectReason::MissingField(field) => write!(f, "missing required field `{field}`"),
            RejectReason::InvalidField { field, detail } => write!(f, "field `{field}`: {detail}"),
            RejectReason::TimestampOutOfRange { ts_ms, detail } => {
                write!(f, "timestamp {ts_ms} ms is {detail}")
            }
            RejectReason::UnmappedMetric(name) => {
                write!(
                    f,
                    "metric `{name}` has no mapping in ingest.prometheus.metrics"
                )
            }
        }
    }
}

/// A sample (or whole message) that goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The original bytes: the failing array element, or the whole message.
    pub bytes: Vec<u8>,
    pub reason: RejectReason,
}

/// Samples the decoder skipped on purpose (counted, not dead-lettered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Prometheus metrics without a mapping while `unmapped = "ignore"`.
    pub unmapped: u64,
    /// Prometheus NaN / ±Inf values (e.g. staleness markers).
    pub non_finite: u64,
}

/// Decodes payloads. Owned by the Kafka source thread; it keeps the last value of every
/// Prometheus counter series to turn counters into increases.
pub struct Decoder {
    prometheus: PrometheusConfig,
    max_message_bytes: usize,
    max_future_ms: i64,
    max_age_ms: i64,
    /// Last (timestamp, value) per Prometheus counter series.
    counters: HashMap<i64, (i64, f64)>,
}

/// The result of decoding one payload.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    pub rejected: Vec<Rejected>,
    pub skipped: Skipped,
}

impl Decoded {
    pub fn clear(&mut self) {
        self.samples.clear();
        self.rejected.clear();
        self.skipped = Skipped::default();
    }
}

impl Decoder {
    pub fn new(config: &IngestConfig) -> Decoder {
        Decoder {
            prometheus: config.prometheus.clone(),
            max_message_bytes: config.max_message_bytes,
            max_future_ms: config.max_future_secs.saturating_mul(1000),
            max_age_ms: config.max_age_secs.saturating_mul(1000),
            counters: HashMap::new(),
        }
    }

    /// Decodes `payload` received at `now_ms`, appending to `out`.
    pub fn decode(&mut self, payload: &[u8], now_ms: i64, out: &mut Decoded) {
        if payload.len() > self.max_message_bytes {
            out.rejected.push(Rejected {
                bytes: payload.to_vec(),
                reason: RejectReason::TooLarge {
                    bytes: payload.len(),
                    limit: self.max_message_bytes,
                },
            });
            return;
        }
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'[') {
            return self.decode_one(payload, now_ms, out);
        }
        // One pass for the common case, an array of well-formed objects. Only an element that
        // is rejected needs its own bytes (for the dead letter); they are found then.
        if let Ok(items) = serde_json::from_slice::<Vec<Object<'_>>>(payload) {
            for (i, Object(raw)) in items.into_iter().enumerate() {
                self.accept(raw, now_ms, out, || element(payload, i));
            }
            return;
        }
        // Some element is not a sample object, or the array is not valid JSON: element by
        // element, so each failure is dead-lettered with its own bytes and reason.
        match serde_json::from_slice::<Vec<&RawValue>>(payload) {
            Ok(items) => {
                for item in items {
                    self.decode_one(item.get().as_bytes(), now_ms, out);
                }
            }
            Err(e) => out.rejected.push(Rejected {
                bytes: payload.to_vec(),
                reason: RejectReason::InvalidJson(e.to_string()),
            }),
        }
    }

    fn decode_one(&mut self, bytes: &[u8], now_ms: i64, out: &mut Decoded) {
        let reject = |out: &mut Decoded, reason| {
            out.rejected.push(Rejected {
                bytes: bytes.to_vec(),
                reason,
            })
        };
        let raw = match serde_json::from_slice::<Object<'_>>(bytes) {
            Ok(Object(raw)) => raw,
            // inside an object only `labels` is typed; anything else is a non-object sample
            Err(e) if e.is_data() && bytes.trim_ascii_start().starts_with(b"{") => {
                return reject(
                    out,
                    invalid("labels", format!("must map strings to strings: {e}")),
                )
            }
            Err(e) if e.is_data() => return reject(out, RejectReason::NotAnObject),
            Err(e) => return reject(out, RejectReason::InvalidJson(e.to_string())),
        };
        self.accept(raw, now_ms, out, || bytes.to_vec());
    }

    /// Validates one parsed object into a sample, or rejects it with the bytes `original`
    /// gives (called only on rejection).
    fn accept(
        &mut self,
        raw: Raw<'_>,
        now_ms: i64,
        out: &mut Decoded,
        original: impl FnOnce() -> Vec<u8>,
    ) {
        let result = if !raw.server_id.is_absent() {
            self.mcp(raw, now_ms).map(Some)
        } else if !raw.name.is_absent() && !raw.value.is_absent() {
            self.prometheus(raw, now_ms, &mut out.skipped)
        } else {
            Err(RejectReason::UnknownFormat)
        };
        match result {
            Ok(Some(sample)) => out.samples.push(sample),
            Ok(None) => {}
            Err(reason) => out.rejected.push(Rejected {
                bytes: original(),
                reason,
            }),
        }
    }

    fn check_time(&self, ts_ms: i64, now_ms: i64) -> Result<i64, RejectReason> {
        if ts_ms > now_ms.saturating_add(self.max_future_ms) {
            return Err(RejectReason::TimestampOutOfRange {
                ts_ms,
                detail: "further in the future than ingest.max_future_secs allows",
            });
        }
        if ts_ms < now_ms.saturating_sub(self.max_age_ms) {
            return Err(RejectReason::TimestampOutOfRange {
                ts_ms,
                detail: "older than ingest.max_age_secs allows",
            });
        }
        Ok(ts_ms)
    }

    fn mcp(&mut self, raw: Raw<'_>, now_ms: i64) -> Result<Sample, RejectReason> {
        let service =
            id_field("server_id", raw.server_id)?.ok_or(RejectReason::MissingField("server_id"))?;
        let ts = timestamp("timestamp", raw.timestamp)?
            .ok_or(RejectReason::MissingField("timestamp"))?;
        let ts = self.check_time(ts, now_ms)?;
        let mut s = Sample::new(service, ts, Origin::Mcp);
        s.cpu = fraction("cpu", raw.cpu)?;
        s.memory = fraction("memory", raw.memory)?;
        s.response_time_ms = non_negative("response_time_ms", raw.response_time_ms)?;
        s.requests = non_negative("requests", raw.requests)?;
        s.errors = non_negative("errors", raw.errors)?;
        s.status = keyword(
            "status",
            raw.status,
            Status::parse,
            "healthy, degraded or down",
        )?;
        s.event = keyword(
            "event",
            raw.event,
            Lifecycle::parse,
            "add, remove or update",
        )?;
        s.instance_id = id_field("instance_id", raw.instance_id)?;
        s.host = id_field("host", raw.host)?;
        s.platform = id_field("platform", raw.platform)?;
        s.series = fingerprint(&[b"mcp", s.instance_id.as_deref().unwrap_or("").as_bytes()]);
        Ok(s)
    }

    fn prometheus(
        &mut self,
        raw: Raw<'_>,
        now_ms: i64,
        skipped: &mut Skipped,
    ) -> Result<Option<Sample>, RejectReason> {
        let name = text("name", raw.name)?.ok_or(RejectReason::MissingField("name"))?;
        let value = match raw.value {
            Scalar::Num(v) => v,
            Scalar::Str(s) => parse_prom_float(&s)
                .ok_or_else(|| invalid("value", format!("{s:?} is not a number")))?,
            Scalar::Absent | Scalar::Null => return Err(RejectReason::MissingField("value")),
            other => {
                return Err(invalid(
                    "value",
                    format!("expected a number, got {}", other.kind()),
                ))
            }
        };
        let ts = timestamp("timestamp", raw.timestamp)?
            .ok_or(RejectReason::MissingField("timestamp"))?;
        let ts = self.check_time(ts, now_ms)?;
        let Some(mapping) = self.prometheus.metrics.get(name.as_ref()) else {
            if self.prometheus.unmapped == "ignore" {
                skipped.unmapped += 1;
                return Ok(None);
            }
            return Err(RejectReason::UnmappedMetric(name.into_owned()));
        };
        if !value.is_finite() {
            skipped.non_finite += 1;
            return Ok(None);
        }
        let labels = raw.labels.unwrap_or_default();
        let label = |key: &str| labels.get(key).map(|v| v.as_ref());
        let service = self
            .prometheus
            .service_labels
            .iter()
            .find_map(|l| label(l))
            .filter(|v| !v.is_empty())
            .ok_or(RejectReason::MissingField("labels.<service label>"))?;
        check_id("labels.<service label>", service)?;
        let mut s = Sample::new(service, ts, Origin::Prometheus);
        let owned = |key: &str| -> Result<Option<String>, RejectReason> {
            match label(key) {
                None | Some("") => Ok(None),
                Some(v) => check_id("labels", v).map(|_| Some(v.to_string())),
            }
        };
        s.instance_id = owned(&self.prometheus.instance_label)?;
        s.host = owned(&self.prometheus.host_label)?;
        s.platform = owned(&self.prometheus.platform_label)?;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + 2 * labels.len());
        parts.push(b"prom");
        parts.push(name.as_bytes());
        for (k, v) in &labels {
            parts.push(k.as_bytes());
            parts.push(v.as_bytes());
        }
        s.series = fingerprint(&parts);
        let series = s.series;
        assign(
            &mut self.counters,
            &mut s,
            mapping,
            name.as_ref(),
            series,
            ts,
            value,
        )?;
        Ok(Some(s))
    }
}

/// Puts a mapped Prometheus value into its field; counters become increases using `counters`.
fn assign(
    counters: &mut HashMap<i64, (i64, f64)>,
    s: &mut Sample,
    mapping: &MetricMapping,
    name: &str,
    series: i64,
    ts: i64,
    value: f64,
) -> Result<(), RejectReason> {
    let value = value * mapping.scale;
    let value = if mapping.kind == "counter" {
        if value < 0.0 {
            return Err(invalid(
                "value",
                format!("counter {name} is negative ({value})"),
            ));
        }
        if counters.len() >= MAX_COUNTER_SERIES {
            counters.clear();
        }
        match counters.get(&series).copied() {
            Some((prev_ts, prev)) if ts > prev_ts => {
                counters.insert(series, (ts, value));
                // a drop means the counter was reset: everything since the reset is new
                Some(if value >= prev { value - prev } else { value })
            }
            Some(_) => None, // replay or out-of-order: increase unknown
            None => {
                counters.insert(series, (ts, value));
                None
            }
        }
    } else {
        Some(value)
    };
    let scalar = value.map(Scalar::Num).unwrap_or(Scalar::Null);
    match mapping.field.as_str() {
        "cpu" => s.cpu = fraction("cpu", scalar)?,
        "memory" => s.memory = fraction("memory", scalar)?,
        "response_time_ms" => s.response_time_ms = non_negative("response_time_ms", scalar)?,
        "requests" => s.requests = non_negative("requests", scalar)?,
        "errors" => s.errors = non_negative("errors", scalar)?,
        "status" => {
            s.status = value.map(|v| {
                if v >= 1.0 {
                    Status::Healthy
                } else if v > 0.0 {
                    Status::Degraded
                } else {
                    Status::Down
                }
            })
        }
        _ => unreachable!("validated by PrometheusConfig::validate"),
    }
    Ok(())
}

/// The bytes of element `i` of a JSON array that is known to parse.
fn element(payload: &[u8], i: usize) -> Vec<u8> {
    serde_json::from_slice::<Vec<&RawValue>>(payload)
        .ok()
        .and_then(|items| items.get(i).map(|v| v.get().as_bytes().to_vec()))
        .unwrap_or_else(|| payload.to_vec())
}

fn invalid(field: &'static str, detail: impl Into<String>) -> RejectReason {
    RejectReason::InvalidField {
        field,
        detail: detail.into(),
    }
}

fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.trim().parse().ok(),
    }
}

fn check_id(field: &'static str, v: &str) -> Result<(), RejectReason> {
    if v.len() > MAX_ID_BYTES {
        return Err(invalid(field, format!("longer than {MAX_ID_BYTES} bytes")));
    }
    if has_control(v) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

/// Whether `v` holds a control character (`char::is_control`: U+0000–U+001F, U+007F–U+009F),
/// read from the UTF-8 bytes rather than decoded char by char: every id of every sample
/// passes through here. U+0080–U+009F are encoded as `C2 80`–`C2 9F`.
fn has_control(v: &str) -> bool {
    let b = v.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c < 0x20 || c == 0x7f || (c == 0xc2 && matches!(b.get(i + 1), Some(0x80..=0x9f)))
    })
}

fn text<'a>(field: &'static str, v: Scalar<'a>) -> Result<Option<Cow<'a, str>>, RejectReason> {
    match v {
        Scalar::Absent | Scalar::Null => Ok(None),
        Scalar::Str(s) => Ok(Some(s)),
        other => Err(invalid(
            field,
            format!("expected a string, got {}", other.kind()),
        )),
    }
}

/// One of a fixed set of words, in any case: `parse` takes the lower-case spelling. Lower case
/// is the norm, so only other spellings pay for a lowered copy.
fn keyword<T>(
    field: &'static str,
    v: Scalar<'_>,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, RejectReason> {
    let Some(v) = text(field, v)? else {
        return Ok(None);
    };
    parse(&v)
        .or_else(|| parse(&v.to_ascii_lowercase()))
        .map(Some)
        .ok_or_else(|| invalid(field, format!("{v:?} is not {expected}")))
}

/// An identifier: a non-empty string (numbers are accepted and formatted).
fn id_field(field: &'static str, v: Scalar<'_>) -> Result<Option<String>, RejectReason> {
    let s = match v {
        Scalar::Absent | Scalar::Null => return Ok(None),
        Scalar::Str(s) => s.into_owned(),
        Scalar::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        other => {
            return Err(invalid(
                field,
                format!("expected a string, got {}", other.kind()),
            ))
        }
    };
    if s.trim().is_empty() {
        return Err(invalid(field, "is empty"));
    }
    check_id(field, &s)?;
    Ok(Some(s))
}

fn number(field: &'static str, v: Scalar<'_>) -> Result<Option<f64>, RejectReason> {
    match v {
        Scalar::Absent | Scalar::Null => Ok(None),
        Scalar::Num(n) if n.is_finite() => Ok(Some(n)),
        Scalar::Num(n) => Err(invalid(field, format!("{n} is not finite"))),
        other => Err(invalid(
            field,
            format!("expected a number, got {}", other.kind()),
        )),
    }
}

fn non_negative(field: &'static str, v: Scalar<'_>) -> Result<Option<f64>, RejectReason> {
    match number(field, v)? {
        Some(n) if n < 0.0 => Err(invalid(field, format!("{n} is negative"))),
        other => Ok(other),
    }
}

/// A utilisation: a fraction in 0..=1, or a percentage in (1, 100] which is divided by 100.
fn fraction(field: &'static str, v: Scalar<'_>) -> Result<Option<f64>, RejectReason> {
    match non_negative(field, v)? {
        None => Ok(None),
        Some(n) if n <= 1.0 => Ok(Some(n)),
        Some(n) if n <= 100.0 => Ok(Some(n / 100.0)),
        Some(n) => Err(invalid(field, format!("{n} is above 100 %"))),
    }
}

/// RFC 3339 text, or epoch milliseconds as a number or a string of digits.
fn timestamp(field: &'static str, v: Scalar<'_>) -> Result<Option<i64>, RejectReason> {
    let ms = match v {
        Scalar::Absent | Scalar::Null => return Ok(None),
        Scalar::Num(n) if (0.0..1e16).contains(&n) => n as i64,
        Scalar::Str(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() < 17 {
                s.parse::<i64>()
                    .map_err(|e| invalid(field, e.to_string()))?
            } else {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| invalid(field, format!("{s:?} is not RFC 3339 or epoch ms: {e}")))?
                    .timestamp_millis()
            }
        }
        other => {
            return Err(invalid(
                field,
                format!(
                    "expected RFC 3339 text or epoch milliseconds, got {}",
                    other.kind()
                ),
            ))
        }
    };
    Ok(Some(ms))
}

/// The union of both formats' fields; unknown fields are ignored.
#[derive(Deserialize, Default)]
struct Raw<'a> {
    #[serde(borrow, default)]
    server_id: Scalar<'a>,
    #[serde(borrow, default)]
    timestamp: Scalar<'a>,
    #[serde(borrow, default)]
    cpu: Scalar<'a>,
    #[serde(borrow, default)]
    memory: Scalar<'a>,
    #[serde(borrow, default)]
    response_time_ms: Scalar<'a>,
    #[serde(borrow, default)]
    requests: Scalar<'a>,
    #[serde(borrow, default)]
    errors: Scalar<'a>,
    #[serde(borrow, default)]
    status: Scalar<'a>,
    #[serde(borrow, default)]
    event: Scalar<'a>,
    #[serde(borrow, default)]
    instance_id: Scalar<'a>,
    #[serde(borrow, default)]
    host: Scalar<'a>,
    #[serde(borrow, default)]
    platform: Scalar<'a>,
    #[serde(borrow, default)]
    name: Scalar<'a>,
    #[serde(borrow, default)]
    value: Scalar<'a>,
    #[serde(borrow, default)]
    labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

/// A JSON object holding a [`Raw`] sample. Only an object: serde's derived struct would also
/// take an array's elements as its fields in order, so `["svc", 1763700000000]` would pass as
/// a sample.
struct Object<'a>(Raw<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Raw::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Any JSON value, kept only as far as validation needs it.
#[derive(Default, Debug)]
enum Scalar<'a> {
    #[default]
    Absent,
    Null,
    Bool,
    Num(f64),
    Str(Cow<'a, str>),
    Composite,
}

impl Scalar<'_> {
    fn is_absent(&self) -> bool {
        matches!(self, Scalar::Absent | Scalar::Null)
    }

    fn kind(&self) -> &'static str {
        match self {
            Scalar::Absent | Scalar::Null => "null",
            Scalar::Bool => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Composite => "an object or array",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_700_000_000; // 2025-11-21T04:40:00Z

    fn decoder() -> Decoder {
        Decoder::new(&IngestConfig::default())
    }

    fn decode(d: &mut Decoder, payload: &str) -> Decoded {
        let mut out = Decoded::default();
        d.decode(payload.as_bytes(), NOW, &mut out);
        out
    }

    fn reason(payload: &str) -> RejectReason {
        let out = decode(&mut decoder(), payload);
        assert!(
            out.samples.is_empty(),
            "{payload} decoded to {:?}",
            out.samples
        );
        assert_eq!(out.rejected.len(), 1, "{payload}");
        out.rejected[0].reason.clone()
    }

    #[test]
    fn mcp_sample_with_every_field() {
        let out = decode(
            &mut decoder(),
            r#"{"server_id":"github","timestamp":"2025-11-21T04:39:00Z","cpu":42.5,"memory":0.5,
                "response_time_ms":12,"requests":30,"errors":1,"status":"Degraded",
                "instance_id":"gh-1","host":"h1","platform":"linux","event":"add","extra":[1,{"x":2}]}"#,
        );
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let s = &out.samples[0];
        assert_eq!(s.service_id, "github");
        assert_eq!(s.ts_ms, NOW - 60_000);
        assert_eq!(s.cpu, Some(0.425));
        assert_eq!(s.memory, Some(0.5));
        assert_eq!(s.response_time_ms, Some(12.0));
        assert_eq!(s.requests, Some(30.0));
        assert_eq!(s.errors, Some(1.0));
        assert_eq!(s.status, Some(Status::Degraded));
        assert_eq!(s.event, Some(Lifecycle::Add));
        assert_eq!(s.instance_id.as_deref(), Some("gh-1"));
        assert_eq!(s.series, fingerprint(&[b"mcp", b"gh-1"]));
    }

    #[test]
    fn arrays_split_good_from_bad_keeping_original_bytes() {
        let out = decode(
            &mut decoder(),
            &format!(
                r#"[{{"server_id":"a","timestamp":{NOW}}}, {{"server_id":"b","timestamp":{NOW},"cpu":-1}}, 7]"#
            ),
        );
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.rejected.len(), 2);
        assert_eq!(
            String::from_utf8_lossy(&out.rejected[0].bytes),
            format!(r#"{{"server_id":"b","timestamp":{NOW},"cpu":-1}}"#)
        );
        assert_eq!(out.rejected[0].reason.label(), "invalid_field");
        assert_eq!(out.rejected[1].reason, RejectReason::NotAnObject);
    }

    #[test]
    fn an_array_is_not_a_sample_even_with_its_fields_in_order() {
        let out = decode(
            &mut decoder(),
            &format!(r#"[["a", {NOW}], {{"server_id":"b","timestamp":{NOW}}}]"#),
        );
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.samples[0].service_id, "b");
        assert_eq!(out.rejected[0].reason, RejectReason::NotAnObject);
        assert_eq!(
            out.rejected[0].bytes,
            format!(r#"["a", {NOW}]"#).into_bytes()
        );
    }

    #[test]
    fn a_rejected_element_of_a_well_formed_array_keeps_its_own_bytes() {
        // every element parses, so the one-pass path runs; the third fails validation
        let bad = format!(r#"{{"server_id":"c","timestamp":{NOW},"cpu":150}}"#);
        let out = decode(
            &mut decoder(),
            &format!(
                r#" [ {{"server_id":"a","timestamp":{NOW}}},{{"server_id":"b","timestamp":{NOW}}}, {bad} ] "#
            ),
        );
        assert_eq!(out.samples.len(), 2);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(String::from_utf8_lossy(&out.rejected[0].bytes), bad);
        assert_eq!(out.rejected[0].reason.label(), "invalid_field");
    }

    #[test]
    fn every_malformed_shape_is_a_reason() {
        assert_eq!(reason("{not json").label(), "invalid_json");
        assert_eq!(reason("").label(), "invalid_json");
        assert_eq!(reason("[1,").label(), "invalid_json");
        assert_eq!(reason("\"str\"").label(), "not_an_object");
        assert_eq!(reason("{}"), RejectReason::UnknownFormat);
        assert_eq!(
            reason(r#"{"server_id":"a"}"#),
            RejectReason::MissingField("timestamp")
        );
        assert_eq!(
            reason(&format!(r#"{{"server_id":"","timestamp":{NOW}}}"#)).to_string(),
            "field `server_id`: is empty"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"server_id":"a","timestamp":{NOW},"cpu":"high"}}"#
            ))
            .to_string(),
            "field `cpu`: expected a number, got a string"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"server_id":"a","timestamp":{NOW},"cpu":101}}"#
            ))
            .label(),
            "invalid_field"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"server_id":"a","timestamp":{NOW},"status":"meh"}}"#
            ))
            .label(),
            "invalid_field"
        );
        assert_eq!(
            reason(r#"{"server_id":"a","timestamp":"yesterday"}"#).label(),
            "invalid_field"
        );
        assert_eq!(
            reason(&format!(
                r#"{{"server_id":"a","timestamp":{}}}"#,
                NOW + 7_200_000
            ))
            .label(),
            "timestamp_out_of_range"
        );
        assert_eq!(
            reason(r#"{"server_id":"a","timestamp":0}"#).label(),
            "timestamp_out_of_range"
        );
        let long = "x".repeat(300);
        assert_eq!(
            reason(&format!(r#"{{"server_id":"{long}","timestamp":{NOW}}}"#)).label(),
            "invalid_field"
        );
    }

    #[test]
    fn oversized_messages_are_rejected_unread() {
        let mut d = decoder();
        let big = format!("[{}]", " ".repeat(2 << 20));
        let out = decode(&mut d, &big);
        assert_eq!(out.rejected[0].reason.label(), "too_large");
    }

    fn prom(name: &str, value: &str, ts_ms: i64, labels: &str) -> String {
        let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
            .unwrap()
            .to_rfc3339();
        format!(r#"{{"timestamp":"{ts}","value":"{value}","name":"{name}","labels":{{{labels}}}}}"#)
    }

    #[test]
    fn prometheus_gauges_map_onto_fields() {
        let mut d = decoder();
        let out = decode(
            &mut d,
            &prom(
                "mcp_response_time_seconds",
                "0.25",
                NOW,
                r#""job":"supabase","instance":"i-1""#,
            ),
        );
        let s = &out.samples[0];
        assert_eq!(s.service_id, "supabase");
        assert_eq!(s.origin, Origin::Prometheus);
        assert_eq!(s.response_time_ms, Some(250.0));
        assert_eq!(s.instance_id.as_deref(), Some("i-1"));
        // server_id label wins over job
        let out = decode(
            &mut d,
            &prom(
                "mcp_cpu_usage_ratio",
                "55",
                NOW,
                r#""job":"x","server_id":"memory""#,
            ),
        );
        assert_eq!(out.samples[0].service_id, "memory");
        assert_eq!(out.samples[0].cpu, Some(0.55));
    }

    #[test]
    fn prometheus_counters_become_reset_aware_increases() {
        let mut d = decoder();
        let l = r#""job":"fs""#;
        let mut values = vec![];
        for (i, v) in ["100", "130", "130", "5", "20"].iter().enumerate() {
            let out = decode(
                &mut d,
                &prom("mcp_requests_total", v, NOW - 60_000 + i as i64 * 1000, l),
            );
            values.push(out.samples[0].requests);
        }
        assert_eq!(
            values,
            vec![None, Some(30.0), Some(0.0), Some(5.0), Some(15.0)]
        );
        // a replay of an older point yields no increase rather than a wrong one
        let out = decode(&mut d, &prom("mcp_requests_total", "130", NOW - 60_000, l));
        assert_eq!(out.samples[0].requests, None);
    }

    #[test]
    fn prometheus_skips_and_rejects() {
        let mut d = decoder();
        let out = decode(&mut d, &prom("node_load1", "1", NOW, r#""job":"fs""#));
        assert_eq!(
            (out.samples.len(), out.rejected.len(), out.skipped.unmapped),
            (0, 0, 1)
        );
        let out = decode(&mut d, &prom("mcp_up", "NaN", NOW, r#""job":"fs""#));
        assert_eq!(out.skipped.non_finite, 1);
        let out = decode(&mut d, &prom("mcp_up", "1", NOW, r#""instance":"x""#));
        assert_eq!(out.rejected[0].reason.label(), "missing_field");
        let out = decode(&mut d, &prom("mcp_up", "one", NOW, r#""job":"fs""#));
        assert_eq!(out.rejected[0].reason.label(), "invalid_field");

        let mut config = IngestConfig::default();
        config.prometheus.unmapped = "dead_letter".into();
        let mut strict = Decoder::new(&config);
        let out = decode(&mut strict, &prom("node_load1", "1", NOW, r#""job":"fs""#));
        assert_eq!(out.rejected[0].reason.label(), "unmapped_metric");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut d = decoder();
            let mut out = Decoded::default();
            d.decode(&bytes, NOW, &mut out);
            proptest::prop_assert!(out.samples.len() + out.rejected.len() <= bytes.len() + 1);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            keys in proptest::collection::vec("(server_id|timestamp|cpu|memory|name|value|labels|status|event|requests)", 0..8),
            vals in proptest::collection::vec("(null|true|-1|0|1e400|\"x\"|\"\"|42.5|\\[\\]|\\{\\}|\"2025-11-21T04:00:00Z\")", 0..8),
        ) {
            let body: Vec<String> = keys.iter().zip(vals.iter()).map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let payload = format!("{{{}}}", body.join(","));
            let mut d = decoder();
            let mut out = Decoded::default();
            d.decode(payload.as_bytes(), NOW, &mut out);
            proptest::prop_assert_eq!(out.samples.len() + out.rejected.len() + (out.skipped.unmapped + out.skipped.non_finite) as usize, 1);
        }

        #[test]
        fn control_characters_are_found_in_the_bytes_as_in_the_chars(v in "\\PC{0,8}[\\x00-\\x{a0}]?\\PC{0,8}") {
            proptest::prop_assert_eq!(has_control(&v), v.chars().any(char::is_control));
        }

        /// An array decodes exactly as its elements would one message each: the same samples,
        /// the same dead letters (bytes and reasons), the same skips, in the same order.
        #[test]
        fn an_array_decodes_as_its_elements_one_by_one(
            elements in proptest::collection::vec(
                proptest::collection::vec(
                    ("(server_id|timestamp|cpu|name|value|labels|status)", "(null|-1|0|0\\.5|150|\"x\"|\"degraded\"|42|\\{\"job\":\"j\"\\}|1763700000000|\\[\\])"),
                    0..6,
                ),
                1..5,
            ),
        ) {
            let objects: Vec<String> = elements
                .iter()
                .map(|kv| {
                    let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                })
                .collect();
            let mut whole = Decoded::default();
            decoder().decode(format!("[{}]", objects.join(",")).as_bytes(), NOW, &mut whole);
            let mut one_by_one = Decoded::default();
            let mut d = decoder();
            for o in &objects {
                d.decode(o.as_bytes(), NOW, &mut one_by_one);
            }
            proptest::prop_assert_eq!(whole.samples, one_by_one.samples);
            proptest::prop_assert_eq!(whole.rejected, one_by_one.rejected);
            proptest::prop_assert_eq!(whole.skipped, one_by_one.skipped);
        }
    }
}
