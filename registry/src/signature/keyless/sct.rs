//! Certificate transparency (RFC 6962): the signed certificate timestamps a Fulcio certificate
//! embeds, checked against the CT logs of the trusted root.

use super::KeylessError;
use super::trusted_root::Log;
use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use x509_cert::Certificate;

/// The embedded SCT list extension.
const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// Checks the certificate's embedded SCTs (RFC 6962 §3.2): one must be signed by a CT log of
/// `logs` over the precertificate (the TBS certificate without the SCT extension) and the
/// issuer's key hash.
pub(super) fn check_sct(
    cert: &Certificate,
    issuer_spki: &[u8],
    logs: &[Log],
) -> Result<(), KeylessError> {
    use sha2::Digest as _;
    let bad = |reason: &str| KeylessError::Sct {
        reason: reason.to_string(),
    };
    let tbs = &cert.tbs_certificate;
    let extension = tbs
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == SCT_LIST)
        .ok_or_else(|| bad("the certificate embeds none"))?;
    let list = der::asn1::OctetStringRef::from_der(extension.extn_value.as_bytes())
        .map_err(|_| bad("its SCT list is not an OCTET STRING"))?;
    let mut precert = tbs.clone();
    precert.extensions = precert
        .extensions
        .map(|e| e.into_iter().filter(|e| e.extn_id != SCT_LIST).collect());
    let precert = precert
        .to_der()
        .map_err(|_| bad("its precertificate cannot be encoded"))?;
    let issuer_key_hash = sha2::Sha256::digest(issuer_spki);
    let unreadable = || bad("its SCT list is not readable");
    let mut reader = Tls(list.as_bytes());
    let mut items = Tls(reader.vec16().ok_or_else(unreadable)?);
    if !reader.0.is_empty() {
        return Err(unreadable());
    }
    let mut last = "its SCT list is empty";
    while !items.0.is_empty() {
        let sct = items.vec16().ok_or_else(unreadable)?;
        match verify_sct(sct, &precert, &issuer_key_hash, logs) {
            Ok(()) => return Ok(()),
            Err(reason) => last = reason,
        }
    }
    Err(bad(last))
}

/// One `SignedCertificateTimestamp` (v1, ECDSA with SHA-256).
fn verify_sct(
    sct: &[u8],
    precert: &[u8],
    issuer_key_hash: &[u8],
    logs: &[Log],
) -> Result<(), &'static str> {
    let unreadable = "an SCT is not readable";
    let mut r = Tls(sct);
    let (version, log_id, timestamp) = (r.u8(), r.take(32), r.take(8));
    let extensions = r.vec16();
    let (hash, algorithm, signature) = (r.u8(), r.u8(), r.vec16());
    let (Some(version), Some(log_id), Some(timestamp), Some(extensions)) =
        (version, log_id, timestamp, extensions)
    else {
        return Err(unreadable);
    };
    let (Some(hash), Some(algorithm), Some(signature)) = (hash, algorithm, signature) else {
        return Err(unreadable);
    };
    if version != 0 || !r.0.is_empty() {
        return Err("an SCT is not a version 1 timestamp");
    }
    // sha256 (4) with ecdsa (3), as Sigstore's CT log signs.
    if (hash, algorithm) != (4, 3) {
        return Err("an SCT is not signed with ECDSA SHA-256");
    }
    let log = logs
        .iter()
        .find(|l| l.key_id == log_id)
        .ok_or("its SCT is from a CT log the trusted root does not list")?;
    let (Ok(tbs_len), Ok(ext_len)) = (
        u32::try_from(precert.len()),
        u16::try_from(extensions.len()),
    ) else {
        return Err(unreadable);
    };
    let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
    signed.extend_from_slice(timestamp);
    signed.extend_from_slice(&[0, 1]); // precert_entry
    signed.extend_from_slice(issuer_key_hash);
    signed.extend_from_slice(&tbs_len.to_be_bytes()[1..]);
    signed.extend_from_slice(precert);
    signed.extend_from_slice(&ext_len.to_be_bytes());
    signed.extend_from_slice(extensions);
    if !log.verifies(&signed, signature) {
        return Err("its SCT's signature does not verify with the CT log's key");
    }
    Ok(())
}

/// A reader of TLS-encoded structures (RFC 8446 §3): big-endian, length-prefixed vectors.
struct Tls<'a>(&'a [u8]);

impl<'a> Tls<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        self.take(len)
    }
}
