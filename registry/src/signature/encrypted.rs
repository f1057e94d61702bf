//! cosign's encrypted private key files (`cosign generate-key-pair`): a PEM block whose body is
//! the JSON envelope of go-securesystemslib's `encrypted` package. scrypt derives a 32-byte key
//! from the password and the envelope's salt; NaCl's secretbox (XSalsa20-Poly1305, the 16-byte
//! tag before the ciphertext) seals the PKCS#8 DER of the key with the envelope's nonce.
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},"ciphertext":"<base64>"}
//! ```

use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// The PEM label cosign writes since v2.
pub const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label of cosign v1's files, still read by cosign.
pub const LEGACY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const KDF: &str = "scrypt";
const CIPHER: &str = "nacl/secretbox";
/// scrypt's cost as written: N = 2^15, r = 8, p = 1 (32 MiB), go-securesystemslib's "legacy"
/// level, which every cosign release reads (later ones also write and read 2^16 and 2^17).
const WRITE_LOG_N: u8 = 15;
const WRITE_R: u32 = 8;
const WRITE_P: u32 = 1;
/// The most scrypt may cost on reading, as the bytes of 128·N·r·p: this bounds its memory
/// (128·N·r) and its time (∝ N·r·p). Twice the strongest level cosign writes (2^17, 8, 1 =
/// 128 MiB), so a hostile file cannot make us allocate gigabytes or spin for minutes.
const MAX_SCRYPT_BYTES: u64 = 256 << 20;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why an envelope did not open.
#[derive(Debug)]
pub(super) enum OpenError {
    /// Not an envelope arkham can open; the reason says what is wrong.
    Malformed(String),
    /// The secretbox's tag did not verify: the password is wrong, or the file was altered.
    WrongPassword,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Opens the envelope `body` (a PEM block's bytes) with `password`: the PKCS#8 DER inside.
pub(super) fn open(body: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let malformed = OpenError::Malformed;
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("its body is not cosign's encrypted-key JSON ({e})")))?;
    if envelope.kdf.name != KDF {
        return Err(malformed(format!(
            "its key derivation is `{}`; cosign's files use `{KDF}`",
            envelope.kdf.name
        )));
    }
    if envelope.cipher.name != CIPHER {
        return Err(malformed(format!(
            "its cipher is `{}`; cosign's files use `{CIPHER}`",
            envelope.cipher.name
        )));
    }
    let params = scrypt_params(&envelope.kdf.params).map_err(malformed)?;
    let nonce: [u8; NONCE_LEN] = envelope.cipher.nonce.as_slice().try_into().map_err(|_| {
        malformed(format!(
            "its nonce is {} bytes, not {NONCE_LEN}",
            envelope.cipher.nonce.len()
        ))
    })?;
    let key = derive(password, &envelope.kdf.salt, &params).map_err(malformed)?;
    XSalsa20Poly1305::new(key.as_ref().into())
        .decrypt(Nonce::from_slice(&nonce), envelope.ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| OpenError::WrongPassword)
}

/// Seals `plaintext` (a PKCS#8 DER key) with `password` as cosign does, with a fresh random
/// salt and nonce: the JSON for the PEM block's body. `Err` only when the system's random
/// source fails (or, never, when the fixed parameters are refused: the reason).
pub(super) fn seal(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, Option<String>> {
    let rng = SystemRandom::new();
    let mut salt = vec![0; SALT_LEN];
    let mut nonce = [0; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| None)?;
    rng.fill(&mut nonce).map_err(|_| None)?;
    let params = scrypt::Params::new(WRITE_LOG_N, WRITE_R, WRITE_P, 32)
        .map_err(|e| Some(format!("scrypt parameters ({e})")))?;
    let key = derive(password, &salt, &params).map_err(Some)?;
    let ciphertext = XSalsa20Poly1305::new(key.as_ref().into())
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|e| Some(format!("sealing ({e})")))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: KDF.to_string(),
            params: ScryptParams {
                n: 1 << WRITE_LOG_N,
                r: WRITE_R.into(),
                p: WRITE_P.into(),
            },
            salt,
        },
        cipher: Cipher {
            name: CIPHER.to_string(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    serde_json::to_vec(&envelope).map_err(|e| Some(e.to_string()))
}

/// The envelope's scrypt parameters, if within bounds (checked before anything is allocated).
fn scrypt_params(params: &ScryptParams) -> Result<scrypt::Params, String> {
    let ScryptParams { n, r, p } = *params;
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err(format!(
            "its scrypt parameters (N={n}, r={r}, p={p}) are invalid: N must be a power of two above 1, r and p at least 1"
        ));
    }
    let cost = 128u64
        .checked_mul(n)
        .and_then(|c| c.checked_mul(r))
        .and_then(|c| c.checked_mul(p));
    if cost.is_none_or(|c| c > MAX_SCRYPT_BYTES) {
        return Err(format!(
            "its scrypt parameters (N={n}, r={r}, p={p}) would cost more than arkham allows ({} MiB as 128·N·r·p; cosign writes N=32768 or 65536, r=8, p=1); the file is not one cosign wrote",
            MAX_SCRYPT_BYTES >> 20
        ));
    }
    // Within the bound, N ≤ 2^21 and r, p ≤ 2^21: the conversions cannot fail.
    let log_n = u8::try_from(n.trailing_zeros()).map_err(|e| e.to_string())?;
    let r = u32::try_from(r).map_err(|e| e.to_string())?;
    let p = u32::try_from(p).map_err(|e| e.to_string())?;
    scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| format!("its scrypt parameters (N={n}, r={r}, p={p}) are invalid ({e})"))
}

fn derive(
    password: &[u8],
    salt: &[u8],
    params: &scrypt::Params,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, params, key.as_mut()).map_err(|e| format!("scrypt ({e})"))?;
    Ok(key)
}

/// `[]byte` as Go's `encoding/json` writes it: standard base64, padded.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn envelope(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_with_its_password_only() {
        let body = seal(b"the pkcs8 bytes", b"hunter2").unwrap();
        let json = envelope(&body);
        assert_eq!(json["kdf"]["name"], "scrypt");
        assert_eq!(
            json["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(json["cipher"]["name"], "nacl/secretbox");
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
                .len()
        };
        assert_eq!(b64(&json["kdf"]["salt"]), SALT_LEN);
        assert_eq!(b64(&json["cipher"]["nonce"]), NONCE_LEN);
        // The tag (16 bytes) precedes the ciphertext, as NaCl's secretbox writes it.
        assert_eq!(b64(&json["ciphertext"]), 16 + b"the pkcs8 bytes".len());
        assert_eq!(
            open(&body, b"hunter2").unwrap().as_slice(),
            b"the pkcs8 bytes"
        );
        assert!(matches!(
            open(&body, b"hunter3"),
            Err(OpenError::WrongPassword)
        ));
        assert!(matches!(open(&body, b""), Err(OpenError::WrongPassword)));
        // Two seals of the same key differ (fresh salt and nonce).
        assert_ne!(seal(b"the pkcs8 bytes", b"hunter2").unwrap(), body);
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let body = seal(b"the pkcs8 bytes", b"pw").unwrap();
        let mut json = envelope(&body);
        let mut ciphertext = base64::engine::general_purpose::STANDARD
            .decode(json["ciphertext"].as_str().unwrap())
            .unwrap();
        let last = ciphertext.len() - 1;
        ciphertext[last] ^= 1;
        json["ciphertext"] = base64::engine::general_purpose::STANDARD
            .encode(&ciphertext)
            .into();
        let tampered = serde_json::to_vec(&json).unwrap();
        assert!(matches!(
            open(&tampered, b"pw"),
            Err(OpenError::WrongPassword)
        ));
    }

    fn reason(result: Result<Zeroizing<Vec<u8>>, OpenError>) -> String {
        match result {
            Err(OpenError::Malformed(reason)) => reason,
            Err(OpenError::WrongPassword) => panic!("wrong password, not malformed"),
            Ok(_) => panic!("opened"),
        }
    }

    #[test]
    fn absurd_scrypt_parameters_are_refused_before_deriving() {
        let body = seal(b"k", b"pw").unwrap();
        for (n, r, p, needle) in [
            (1u64 << 40, 8u64, 1u64, "would cost more"),
            // 1 GiB of memory.
            (1 << 20, 8, 1, "would cost more"),
            // Small memory, but 2^20 rounds.
            (1 << 15, 8, 1 << 10, "would cost more"),
            (u64::MAX, u64::MAX, u64::MAX, "invalid"),
            (1 << 63, 1 << 62, 2, "would cost more"),
            (30000, 8, 1, "power of two"),
            (0, 8, 1, "power of two"),
            (32768, 0, 1, "at least 1"),
            (32768, 8, 0, "at least 1"),
        ] {
            let mut json = envelope(&body);
            json["kdf"]["params"] = serde_json::json!({"N": n, "r": r, "p": p});
            let reason = reason(open(&serde_json::to_vec(&json).unwrap(), b"pw"));
            assert!(reason.contains(needle), "N={n} r={r} p={p}: {reason}");
        }
        // go-securesystemslib's strongest level (2^17) is within bounds: it derives, and the
        // key it derives is not the one the file was sealed with.
        let mut json = envelope(&body);
        json["kdf"]["params"] = serde_json::json!({"N": 1 << 17, "r": 8, "p": 1});
        assert!(matches!(
            open(&serde_json::to_vec(&json).unwrap(), b"pw"),
            Err(OpenError::WrongPassword)
        ));
    }

    #[test]
    fn other_kdfs_ciphers_and_shapes_are_named() {
        let body = seal(b"k", b"pw").unwrap();
        let with = |path: &[&str], value: serde_json::Value| {
            let mut json = envelope(&body);
            let mut at = &mut json;
            for key in path {
                at = &mut at[*key];
            }
            *at = value;
            reason(open(&serde_json::to_vec(&json).unwrap(), b"pw"))
        };
        let r = with(&["kdf", "name"], "pbkdf2".into());
        assert!(r.contains("`pbkdf2`") && r.contains("`scrypt`"), "{r}");
        let r = with(&["cipher", "name"], "aes-gcm".into());
        assert!(
            r.contains("`aes-gcm`") && r.contains("`nacl/secretbox`"),
            "{r}"
        );
        let r = with(&["cipher", "nonce"], "AAAA".into());
        assert!(r.contains("nonce is 3 bytes"), "{r}");
        let r = with(&["ciphertext"], "not base64!".into());
        assert!(r.contains("not cosign's encrypted-key JSON"), "{r}");
        let r = reason(open(b"{}", b"pw"));
        assert!(r.contains("not cosign's encrypted-key JSON"), "{r}");
    }
}
