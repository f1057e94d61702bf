//! The trust policy: `[[trust]]` rules in `arkham.toml` say, per registry/repository pattern,
//! which keys are trusted and whether a signature is required. Applied at install, after the
//! manifest is fetched and before the component is downloaded.

use arkham_registry::digest::Digest;
use arkham_registry::reference::Location;
use arkham_registry::repo::{Repo, is_loopback};
use arkham_registry::signature::{self, Check, KeyError, PublicKey, SignatureError, Signatures};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How signatures are treated for the repositories a rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// A signature by one of the rule's keys must cover the manifest digest.
    Require,
    /// Signatures are checked when present (and must then be by a trusted key); an unsigned
    /// shard installs with a warning.
    #[default]
    Verify,
    /// Signatures are not looked for.
    Ignore,
}

/// One `[[trust]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRule {
    /// A pattern over `REGISTRY/REPOSITORY` (or `oci:DIR/REPOSITORY`): `*` matches any run of
    /// characters, `/` included.
    pub registry: String,
    /// Trusted public keys: SPKI PEM files (relative to the config's folder) or inline PEM.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `require`, `verify` (the default) or `ignore`.
    #[serde(default)]
    pub signatures: SignatureMode,
}

impl TrustRule {
    /// Checks what can be checked without reading files.
    pub fn validate(&self) -> Result<(), String> {
        if self.registry.trim().is_empty() {
            return Err("trust: `registry` must be a pattern like `ghcr.io/my-org/*`".to_string());
        }
        if self.signatures == SignatureMode::Require && self.keys.is_empty() {
            return Err(format!(
                "trust rule `{}` requires signatures but names no keys; add `keys = [\"keys/signer.pub\"]`",
                self.registry
            ));
        }
        Ok(())
    }
}

/// Why an install is refused, or the policy cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The signatures do not satisfy the policy.
    #[error(
        "refusing {reference} ({digest}): expected {expected}; found {found}. Nothing was downloaded or changed; {todo}"
    )]
    Refused {
        /// What was to be installed.
        reference: String,
        /// Its manifest digest.
        digest: String,
        /// What the policy asks for.
        expected: String,
        /// What the registry holds.
        found: String,
        /// What to do.
        todo: String,
    },
    /// A key a rule names cannot be read.
    #[error("trust rule `{rule}` in arkham.toml: {source}")]
    Key {
        /// The rule's pattern.
        rule: String,
        /// The key's error.
        source: KeyError,
    },
    /// The signatures could not be read.
    #[error(transparent)]
    Signatures(#[from] SignatureError),
}

/// The rules with their keys loaded.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<(TrustRule, Vec<PublicKey>)>,
}

/// The policy in force for one repository.
#[derive(Debug, Clone)]
pub struct Effective<'a> {
    /// The rule's pattern; `None` for the default.
    pub rule: Option<&'a str>,
    /// The mode.
    pub mode: SignatureMode,
    /// The trusted keys.
    pub keys: &'a [PublicKey],
}

impl Policy {
    /// Loads `rules`' keys; file paths are relative to `config_dir`.
    pub fn load(rules: &[TrustRule], config_dir: &Path) -> Result<Self, TrustError> {
        let mut loaded = Vec::new();
        for rule in rules {
            let mut keys = Vec::new();
            for key in &rule.keys {
                let error = |source| TrustError::Key {
                    rule: rule.registry.clone(),
                    source,
                };
                keys.push(if key.trim_start().starts_with("-----BEGIN") {
                    PublicKey::from_pem(key, "an inline key").map_err(error)?
                } else {
                    PublicKey::from_file(&config_dir.join(key)).map_err(error)?
                });
            }
            loaded.push((rule.clone(), keys));
        }
        Ok(Self { rules: loaded })
    }

    /// The first rule matching `location`, or the default: loopback registries and local
    /// layouts are not looked at (they are the author's own), anything else is `verify` with no
    /// key, which installs an unsigned shard with a warning.
    pub fn for_location(&self, location: &Location) -> Effective<'_> {
        let text = location.repository_ref();
        if let Some((rule, keys)) = self.rules.iter().find(|(r, _)| matches(&r.registry, &text)) {
            return Effective {
                rule: Some(&rule.registry),
                mode: rule.signatures,
                keys,
            };
        }
        let local = match location {
            Location::Layout { .. } => true,
            Location::Remote { registry, .. } => is_loopback(registry),
        };
        Effective {
            rule: None,
            mode: if local {
                SignatureMode::Ignore
            } else {
                SignatureMode::Verify
            },
            keys: &[],
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The outcome of an accepted check.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Fingerprints of the trusted keys whose signatures cover the digest.
    pub signers: Vec<String>,
    /// A line to show the user (an unsigned install, signatures no key checks).
    pub warning: Option<String>,
    /// The signatures read, for the offline cache.
    pub signatures: Option<Signatures>,
}

/// Applies `effective` to the manifest `digest` of `reference`, reading signatures from
/// `repo`. `pinned` are the signers the lockfile recorded: one of them must have signed again.
pub async fn check(
    effective: &Effective<'_>,
    repo: &Repo,
    reference: &str,
    digest: &Digest,
    pinned: &[String],
) -> Result<Verdict, TrustError> {
    if effective.mode == SignatureMode::Ignore {
        return Ok(Verdict::default());
    }
    let tag = signature::signature_tag(digest);
    let fingerprints = |keys: &[PublicKey]| {
        keys.iter()
            .map(PublicKey::fingerprint)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rule = effective.rule.map_or_else(
        || "the default policy".to_string(),
        |r| format!("the trust rule `{r}` in arkham.toml"),
    );
    let expected = if pinned.is_empty() {
        format!(
            "a signature by one of the keys of {rule} ({})",
            fingerprints(effective.keys)
        )
    } else {
        format!(
            "a signature by the signer recorded in arkham.lock ({}), a key {rule} trusts",
            pinned.join(", ")
        )
    };
    let refuse = |found: String, todo: String| TrustError::Refused {
        reference: reference.to_string(),
        digest: digest.to_string(),
        expected: expected.clone(),
        found,
        todo,
    };
    let Some(found) = signature::fetch(repo, digest).await? else {
        let found = format!(
            "no signature ({} has no tag {tag}; if this version was signed before, its tag may have been moved to another manifest since)",
            repo.location()
        );
        if effective.mode == SignatureMode::Require || !pinned.is_empty() {
            return Err(refuse(
                found,
                format!(
                    "ask the publisher to sign this digest (`arkham shard sign {reference} --key KEY`), or pin the signed version by its digest (NAME@sha256:…)"
                ),
            ));
        }
        return Ok(Verdict {
            warning: Some(format!(
                "installing an unsigned shard: {reference} ({digest}) has no signature; a [[trust]] rule with signatures = \"require\" for {} would refuse it",
                repo.location()
            )),
            ..Verdict::default()
        });
    };
    if effective.keys.is_empty() && pinned.is_empty() {
        return Ok(Verdict {
            warning: Some(format!(
                "installing a shard whose signatures no trusted key checks: {reference} has {} signature(s), but no [[trust]] rule names a key for {}",
                found.layers.len(),
                repo.location()
            )),
            signatures: Some(found),
            ..Verdict::default()
        });
    }
    let checks = found.check(digest, effective.keys);
    let mut signers: Vec<String> = checks
        .iter()
        .filter_map(|c| match c {
            Check::Verified { fingerprint } => Some(fingerprint.clone()),
            _ => None,
        })
        .collect();
    signers.sort();
    signers.dedup();
    let accepted = if pinned.is_empty() {
        !signers.is_empty()
    } else {
        signers.iter().any(|s| pinned.contains(s))
    };
    if !accepted {
        let other = checks.iter().find_map(|c| match c {
            Check::OtherDigest { covers } => Some(covers.clone()),
            _ => None,
        });
        let malformed = checks.iter().any(|c| matches!(c, Check::Malformed { .. }));
        let todo = if let Some(covers) = &other {
            format!(
                "the signature was made for another manifest ({covers}), so {tag} was copied or the shard changed after signing: sign this digest, or install the signed one by its digest"
            )
        } else if malformed {
            format!(
                "the signature is corrupt: sign again (`arkham shard sign {reference} --key KEY`), or delete the tag {tag}"
            )
        } else if !signers.is_empty() {
            "the signer changed since the lockfile was written: check the new key, then `arkham shard add` the shard again (not --locked) to record it".to_string()
        } else {
            "if you trust the signer, add its public key to the rule's `keys`; otherwise ask the publisher which key they sign with".to_string()
        };
        return Err(refuse(describe(&checks), todo));
    }
    Ok(Verdict {
        signers,
        warning: None,
        signatures: Some(found),
    })
}

/// `2 signatures: one by a key not trusted here; one over another manifest (sha256:…)`.
pub fn describe(checks: &[Check]) -> String {
    let items: Vec<String> = checks
        .iter()
        .map(|c| match c {
            Check::Verified { fingerprint } => format!("one by the trusted key {fingerprint}"),
            Check::OtherDigest { covers } => format!("one over another manifest ({covers})"),
            Check::Untrusted => {
                "one by a key not trusted here (or not matching its payload)".to_string()
            }
            Check::Malformed { reason } => format!("one that is malformed ({reason})"),
        })
        .collect();
    match items.len() {
        0 => "a signature manifest holding no simple-signing layer".to_string(),
        1 => format!("1 signature: {}", items.join("; ")),
        n => format!("{n} signatures: {}", items.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("ghcr.io/acme/*", "ghcr.io/acme/packets"));
        assert!(matches("ghcr.io/acme/*", "ghcr.io/acme/team/packets"));
        assert!(!matches("ghcr.io/acme/*", "ghcr.io/acmex/packets"));
        assert!(matches("*/packets", "127.0.0.1:5000/packets"));
        assert!(matches("ghcr.io/*/p*s", "ghcr.io/acme/packets"));
        assert!(!matches("ghcr.io/*/p*s", "ghcr.io/acme/packet"));
        assert!(matches("exact/x", "exact/x"));
        assert!(!matches("exact/x", "exact/xy"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn the_first_matching_rule_wins_and_defaults_depend_on_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let key = arkham_registry::signature::SigningKey::generate().unwrap();
        std::fs::write(dir.path().join("k.pub"), key.public_key().to_pem()).unwrap();
        let rules = [
            TrustRule {
                registry: "ghcr.io/acme/*".into(),
                keys: vec!["k.pub".into(), key.public_key().to_pem()],
                signatures: SignatureMode::Require,
            },
            TrustRule {
                registry: "ghcr.io/*".into(),
                keys: vec![],
                signatures: SignatureMode::Ignore,
            },
        ];
        let policy = Policy::load(&rules, dir.path()).unwrap();
        let remote = |registry: &str, repository: &str| Location::Remote {
            registry: registry.into(),
            repository: repository.into(),
        };
        let acme = policy.for_location(&remote("ghcr.io", "acme/packets"));
        assert_eq!(
            (acme.rule, acme.mode, acme.keys.len()),
            (Some("ghcr.io/acme/*"), SignatureMode::Require, 2)
        );
        assert_eq!(
            policy.for_location(&remote("ghcr.io", "other/p")).mode,
            SignatureMode::Ignore
        );
        let elsewhere = policy.for_location(&remote("example.com", "p"));
        assert_eq!(
            (elsewhere.rule, elsewhere.mode),
            (None, SignatureMode::Verify)
        );
        assert_eq!(
            policy.for_location(&remote("127.0.0.1:5000", "p")).mode,
            SignatureMode::Ignore
        );
        let missing = TrustRule {
            registry: "x/*".into(),
            keys: vec!["nope.pub".into()],
            signatures: SignatureMode::Verify,
        };
        let err = Policy::load(&[missing], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/*") && err.contains("nope.pub"), "{err}");
    }
}
