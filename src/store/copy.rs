//! PostgreSQL binary `COPY` encoding of [`Sample`] rows, written by hand: no per-value
//! trait objects, one contiguous buffer per batch.

use bytes::{BufMut, Bytes, BytesMut};

use crate::sample::Sample;

/// The column list every `COPY … FROM STDIN (FORMAT binary)` of samples uses, in order.
pub const SAMPLE_COLUMNS: &str = "service_id, ts, series, origin, cpu, memory, response_time_ms, \
                                  requests, errors, status, event, instance_id, host, platform";
/// The binary COPY of samples into the `samples` table: the writers' fast path and the bare
/// COPY `bench ingest` compares them with. Prepare it once per connection.
pub static COPY_INTO_SAMPLES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("COPY samples ({SAMPLE_COLUMNS}) FROM STDIN (FORMAT binary)")
});
const FIELDS: i16 = 14;
/// Milliseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// Builds one binary COPY stream.
pub struct CopyEncoder {
    buf: BytesMut,
    rows: usize,
}

impl CopyEncoder {
    pub fn with_capacity(rows: usize) -> CopyEncoder {
        let mut buf = BytesMut::with_capacity(19 + rows * 128);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        CopyEncoder { buf, rows: 0 }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, s: &Sample) {
        let b = &mut self.buf;
        b.put_i16(FIELDS);
        text(b, Some(&s.service_id));
        b.put_i32(8);
        b.put_i64((s.ts_ms - PG_EPOCH_MS) * 1000);
        b.put_i32(8);
        b.put_i64(s.series);
        b.put_i32(2);
        b.put_i16(s.origin.code());
        for v in [s.cpu, s.memory, s.response_time_ms, s.requests, s.errors] {
            float(b, v);
        }
        small(b, s.status.map(|x| x.code()));
        small(b, s.event.map(|x| x.code()));
        text(b, s.instance_id.as_deref());
        text(b, s.host.as_deref());
        text(b, s.platform.as_deref());
        self.rows += 1;
    }

    pub fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

fn text(b: &mut BytesMut, v: Option<&str>) {
    match v {
        Some(s) => {
            b.put_i32(s.len() as i32);
            b.put_slice(s.as_bytes());
        }
        None => b.put_i32(-1),
    }
}

fn float(b: &mut BytesMut, v: Option<f64>) {
    match v {
        Some(x) => {
            b.put_i32(8);
            b.put_f64(x);
        }
        None => b.put_i32(-1),
    }
}

fn small(b: &mut BytesMut, v: Option<i16>) {
    match v {
        Some(x) => {
            b.put_i32(2);
            b.put_i16(x);
        }
        None => b.put_i32(-1),
    }
}

/// Converts epoch milliseconds to the day number (days since the Unix epoch, UTC).
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Origin;

    #[test]
    fn layout_of_one_row() {
        let mut e = CopyEncoder::with_capacity(1);
        let mut s = Sample::new("ab", PG_EPOCH_MS + 1, Origin::Mcp);
        s.cpu = Some(0.5);
        e.push(&s);
        let bytes = e.finish();
        assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0");
        let row = &bytes[19..];
        assert_eq!(&row[..2], &14i16.to_be_bytes());
        assert_eq!(&row[2..6], &2i32.to_be_bytes());
        assert_eq!(&row[6..8], b"ab");
        assert_eq!(&row[12..20], &1000i64.to_be_bytes()); // 1 ms = 1000 µs after 2000-01-01
        assert_eq!(&bytes[bytes.len() - 2..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn days_are_utc_and_floor_negative_times() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_399_999), 0);
        assert_eq!(day_of(86_400_000), 1);
        assert_eq!(day_of(-1), -1);
    }
}
