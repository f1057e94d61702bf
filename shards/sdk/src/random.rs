//! Identifiers and tokens from `wasi:random/random` (the host's secure random source).

use crate::bindings::wasi::random::random as raw;

/// `len` random bytes.
///
/// ```no_run
/// let salt = arkham_shard_sdk::random::bytes(16);
/// assert_eq!(salt.len(), 16);
/// ```
pub fn bytes(len: usize) -> Vec<u8> {
    raw::get_random_bytes(len as u64)
}

/// A random `u64`.
///
/// ```no_run
/// let jitter_ms = arkham_shard_sdk::random::u64() % 100;
/// ```
pub fn u64() -> u64 {
    raw::get_random_u64()
}

/// A random UUID v4 in its canonical form, e.g. `"3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f"`.
///
/// ```no_run
/// let id = arkham_shard_sdk::random::uuid_v4();
/// assert_eq!((id.len(), &id[14..15]), (36, "4"));
/// ```
pub fn uuid_v4() -> String {
    let mut uuid = [0u8; 16];
    for (slot, byte) in uuid.iter_mut().zip(raw::get_random_bytes(16)) {
        *slot = byte;
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = to_hex(&uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `byte_len` random bytes as lowercase hex (twice as many characters), for access tokens.
///
/// ```no_run
/// let token = arkham_shard_sdk::random::hex_token(32);
/// assert_eq!(token.len(), 64);
/// ```
pub fn hex_token(byte_len: usize) -> String {
    to_hex(&bytes(byte_len))
}

/// Lowercase hex of `bytes`.
///
/// ```
/// assert_eq!(arkham_shard_sdk::random::to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
/// ```
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}
