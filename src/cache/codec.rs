//! The stored value format: one marker byte, then the value as given or as an LZ4 block.
//!
//! | marker | then |
//! |---|---|
//! | `0x00` ([`PLAIN`]) | the value's bytes |
//! | `0x01` ([`LZ4`]) | little-endian `u32` uncompressed length, then an LZ4 block (`lz4_flex::block`) |
//!
//! A value is compressed when it is longer than the threshold *and* its block is smaller than
//! the value; otherwise it is stored plain. Both backends store this format, so the memory
//! backend's budget accounting matches what Redis would hold.

use bytes::{BufMut, Bytes, BytesMut};

/// Marker: the value follows uncompressed.
pub const PLAIN: u8 = 0x00;
/// Marker: an LZ4 block with its uncompressed length prepended follows.
pub const LZ4: u8 = 0x01;
/// Decoding refuses blocks that claim more than this (64 MiB): a corrupt or hostile value
/// must not make the daemon allocate gigabytes.
pub const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;

/// Encodes `value` for storage. Returns the stored bytes and whether they are compressed.
pub fn encode(value: &[u8], compress_over_bytes: usize) -> (Bytes, bool) {
    if value.len() > compress_over_bytes && value.len() <= MAX_DECODED_BYTES {
        let bound = lz4_flex::block::get_maximum_output_size(value.len());
        let mut out = vec![0u8; 1 + 4 + bound];
        out[0] = LZ4;
        out[1..5].copy_from_slice(&(value.len() as u32).to_le_bytes());
        if let Ok(n) = lz4_flex::block::compress_into(value, &mut out[5..]) {
            if 5 + n < 1 + value.len() {
                out.truncate(5 + n);
                return (Bytes::from(out), true);
            }
        }
    }
    let mut out = BytesMut::with_capacity(1 + value.len());
    out.put_u8(PLAIN);
    out.put_slice(value);
    (out.freeze(), false)
}

/// Decodes stored bytes back into the value. Plain values are not copied.
pub fn decode(stored: Bytes) -> Result<Bytes, String> {
    match stored.first() {
        Some(&PLAIN) => Ok(stored.slice(1..)),
        Some(&LZ4) => {
            if stored.len() < 5 {
                return Err("truncated LZ4 header".to_string());
            }
            let len = u32::from_le_bytes([stored[1], stored[2], stored[3], stored[4]]) as usize;
            if len > MAX_DECODED_BYTES {
                return Err(format!(
                    "LZ4 block claims {len} bytes (limit {MAX_DECODED_BYTES})"
                ));
            }
            let mut out = vec![0u8; len];
            let n = lz4_flex::block::decompress_into(&stored[5..], &mut out)
                .map_err(|e| format!("bad LZ4 block: {e}"))?;
            if n != len {
                return Err(format!("LZ4 block decoded to {n} bytes, header says {len}"));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(format!("unknown marker byte 0x{other:02x}")),
        None => Err("empty value (no marker byte)".to_string()),
    }
}
