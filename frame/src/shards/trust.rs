//! The trust policy: `[[trust]]` rules in `arkham.toml` say, per registry/repository pattern,
//! which keys and keyless identities (an OIDC issuer and a subject pattern, checked against a
//! Sigstore trusted root) are trusted and whether a signature is required. Applied at install,
//! after the manifest is fetched and before the component is downloaded.

use arkham_registry::digest::Digest;
use arkham_registry::reference::Location;
use arkham_registry::repo::{Repo, is_loopback};
use arkham_registry::signature::keyless::Identity;
use arkham_registry::signature::{
    self, Check, KeyError, PublicKey, SignatureError, Signatures, TrustedRoot, TrustedRootError,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How signatures are treated for the repositories a rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// A signature by one of the rule's keys or identities must cover the manifest digest.
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
    /// Trusted keyless signers: a keyless signature (Fulcio certificate + Rekor entry) counts
    /// when its certificate's issuer is `issuer` and its subject matches `subject`.
    #[serde(default)]
    pub identities: Vec<IdentityRule>,
    /// The Sigstore `trusted_root.json` keyless signatures are verified against (relative to
    /// the config's folder); needed for `identities`.
    #[serde(default)]
    pub trusted_root: Option<String>,
    /// `require`, `verify` (the default) or `ignore`.
    #[serde(default)]
    pub signatures: SignatureMode,
}

/// A trusted keyless signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// The certificate's OIDC issuer, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// A pattern over the certificate's subject (an email or a URI such as a workflow's), where
    /// `*` matches any run of characters: `https://github.com/my-org/*`.
    pub subject: String,
}

impl IdentityRule {
    /// Whether `identity` is this one.
    pub fn matches(&self, identity: &Identity) -> bool {
        self.issuer == identity.issuer && matches(&self.subject, &identity.subject)
    }
}

/// As the rule is written: `{ issuer = "…", subject = "…" }`.
impl std::fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{ issuer = \"{}\", subject = \"{}\" }}",
            self.issuer, self.subject
        )
    }
}

impl TrustRule {
    /// Checks what can be checked without reading files.
    pub fn validate(&self) -> Result<(), String> {
        if self.registry.trim().is_empty() {
            return Err("trust: `registry` must be a pattern like `ghcr.io/my-org/*`".to_string());
        }
        if self.signatures == SignatureMode::Require
            && self.keys.is_empty()
            && self.identities.is_empty()
        {
            return Err(format!(
                "trust rule `{}` requires signatures but names no keys or identities; add `keys = [\"keys/signer.pub\"]`, or `identities = [{{ issuer = \"https://token.actions.githubusercontent.com\", subject = \"https://github.com/my-org/*\" }}]` with `trusted_root = \"trusted_root.json\"`",
                self.registry
            ));
        }
        if !self.identities.is_empty() && self.trusted_root.is_none() {
            return Err(format!(
                "trust rule `{}` names identities but no `trusted_root`: keyless signatures are verified against a Sigstore trusted root file; add `trusted_root = \"trusted_root.json\"` (the public Sigstore's is `sigstore/root-signing`'s `targets/trusted_root.json`)",
                self.registry
            ));
        }
        if let Some(identity) = self
            .identities
            .iter()
            .find(|i| i.issuer.trim().is_empty() || i.subject.trim().is_empty())
        {
            return Err(format!(
                "trust rule `{}`: an identity needs an `issuer` and a `subject` pattern (found issuer `{}`, subject `{}`)",
                self.registry, identity.issuer, identity.subject
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
    /// A rule's trusted root cannot be read.
    #[error("trust rule `{rule}` in arkham.toml: {source}")]
    TrustedRoot {
        /// The rule's pattern.
        rule: String,
        /// The trusted root's error.
        source: TrustedRootError,
    },
    /// The signatures could not be read.
    #[error(transparent)]
    Signatures(#[from] SignatureError),
}

/// The rules with their keys and trusted roots loaded.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    rule: TrustRule,
    keys: Vec<PublicKey>,
    trusted_root: Option<TrustedRoot>,
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
    /// The trusted keyless identities.
    pub identities: &'a [IdentityRule],
    /// The Sigstore trusted root keyless signatures are verified against, and its file.
    pub trusted_root: Option<(&'a TrustedRoot, &'a str)>,
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
            let trusted_root = match &rule.trusted_root {
                Some(file) => Some(TrustedRoot::from_file(&config_dir.join(file)).map_err(
                    |source| TrustError::TrustedRoot {
                        rule: rule.registry.clone(),
                        source,
                    },
                )?),
                None => None,
            };
            loaded.push(Loaded {
                rule: rule.clone(),
                keys,
                trusted_root,
            });
        }
        Ok(Self { rules: loaded })
    }

    /// The first rule matching `location`, or the default: loopback registries and local
    /// layouts are not looked at (they are the author's own), anything else is `verify` with no
    /// key, which installs an unsigned shard with a warning.
    pub fn for_location(&self, location: &Location) -> Effective<'_> {
        let text = location.repository_ref();
        if let Some(loaded) = self.rules.iter().find(|l| matches(&l.rule.registry, &text)) {
            return Effective {
                rule: Some(&loaded.rule.registry),
                mode: loaded.rule.signatures,
                keys: &loaded.keys,
                identities: &loaded.rule.identities,
                trusted_root: loaded
                    .trusted_root
                    .as_ref()
                    .zip(loaded.rule.trusted_root.as_deref()),
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
            identities: &[],
            trusted_root: None,
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
    /// Who signed the digest, among those trusted: key fingerprints (`sha256:…`) and keyless
    /// identities (`ISSUER SUBJECT`, see [`Identity::signer`]).
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
    let rule = effective.rule.map_or_else(
        || "the default policy".to_string(),
        |r| format!("the trust rule `{r}` in arkham.toml"),
    );
    let expected = if pinned.is_empty() {
        format!("a signature by {} of {rule}", trusted_signers(effective))
    } else {
        format!(
            "a signature by the signer recorded in arkham.lock ({}), a key or identity {rule} trusts",
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
                    "ask the publisher to sign this digest (`arkham shard sign {reference} --key KEY`, or `cosign sign` keyless in CI), or pin the signed version by its digest (NAME@sha256:…)"
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
    if effective.keys.is_empty() && effective.identities.is_empty() && pinned.is_empty() {
        return Ok(Verdict {
            warning: Some(format!(
                "installing a shard whose signatures no trusted key checks: {reference} has {} signature(s), but no [[trust]] rule names a key or identity for {}",
                found.layers.len(),
                repo.location()
            )),
            signatures: Some(found),
            ..Verdict::default()
        });
    }
    let checks = found.check_with(
        digest,
        effective.keys,
        effective.trusted_root.map(|(root, _)| root),
    );
    let mut signers: Vec<String> = checks
        .iter()
        .filter_map(|c| match c {
            Check::Verified { fingerprint } => Some(fingerprint.clone()),
            Check::Certified { issuer, subject } => {
                let identity = Identity {
                    issuer: issuer.clone(),
                    subject: subject.clone(),
                };
                effective
                    .identities
                    .iter()
                    .any(|i| i.matches(&identity))
                    .then(|| identity.signer())
            }
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
        return Err(refuse(
            describe(&checks),
            todo(effective, reference, &tag, &checks, &signers),
        ));
    }
    Ok(Verdict {
        signers,
        warning: None,
        signatures: Some(found),
    })
}

/// `one of the keys (sha256:…)` / `one of the identities (…)`, as the policy trusts them.
fn trusted_signers(effective: &Effective<'_>) -> String {
    let keys = effective
        .keys
        .iter()
        .map(PublicKey::fingerprint)
        .collect::<Vec<_>>()
        .join(", ");
    let identities = effective
        .identities
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match (keys.is_empty(), identities.is_empty()) {
        (_, true) => format!("one of the keys ({keys})"),
        (true, false) => format!("one of the keyless identities ({identities})"),
        (false, false) => {
            format!("one of the keys ({keys}) or one of the keyless identities ({identities})")
        }
    }
}

/// What to do about a refusal, for the most telling of `checks`.
fn todo(
    effective: &Effective<'_>,
    reference: &str,
    tag: &str,
    checks: &[Check],
    signers: &[String],
) -> String {
    let other = checks.iter().find_map(|c| match c {
        Check::OtherDigest { covers } => Some(covers.clone()),
        _ => None,
    });
    let certified = checks.iter().find_map(|c| match c {
        Check::Certified { issuer, subject } => Some((issuer, subject)),
        _ => None,
    });
    let uncertified = checks
        .iter()
        .any(|c| matches!(c, Check::Uncertified { .. }));
    let unverifiable = checks
        .iter()
        .any(|c| matches!(c, Check::NoTrustedRoot { .. }));
    let root_file = effective.trusted_root.map_or("", |(_, file)| file);
    if let Some(covers) = &other {
        format!(
            "the signature was made for another manifest ({covers}), so {tag} was copied or the shard changed after signing: sign this digest, or install the signed one by its digest"
        )
    } else if checks.iter().any(|c| matches!(c, Check::Malformed { .. })) {
        format!(
            "the signature is corrupt: sign again (`arkham shard sign {reference} --key KEY`), or delete the tag {tag}"
        )
    } else if !signers.is_empty() {
        "the signer changed since the lockfile was written: check the new key or identity, then `arkham shard add` the shard again (not --locked) to record it".to_string()
    } else if let Some((issuer, subject)) = certified {
        format!(
            "if you trust that signer, add `{{ issuer = \"{issuer}\", subject = \"{subject}\" }}` (or a pattern matching it) to the rule's `identities`; otherwise ask the publisher which identity signs its releases"
        )
    } else if uncertified {
        format!(
            "the keyless signature does not verify against the trusted root {root_file}: check that it is the root of the Sigstore that signed (the public one, or your own), or ask the publisher to sign again"
        )
    } else if unverifiable {
        "the shard is signed keyless (a Fulcio certificate and a Rekor entry), which arkham verifies against a Sigstore trusted root: add `trusted_root = \"trusted_root.json\"` (the public Sigstore's is `sigstore/root-signing`'s `targets/trusted_root.json`) and `identities = [{ issuer = \"…\", subject = \"…\" }]` to the rule".to_string()
    } else {
        "if you trust the signer, add its public key to the rule's `keys`; otherwise ask the publisher which key they sign with".to_string()
    }
}

/// `2 signatures: one by a key not trusted here; one over another manifest (sha256:…)`.
pub fn describe(checks: &[Check]) -> String {
    let claimed = |c: &str| {
        if c.is_empty() {
            String::new()
        } else {
            format!(" for {c}")
        }
    };
    let items: Vec<String> = checks
        .iter()
        .map(|c| match c {
            Check::Verified { fingerprint } => format!("one by the trusted key {fingerprint}"),
            Check::OtherDigest { covers } => format!("one over another manifest ({covers})"),
            Check::Untrusted => {
                "one by a key not trusted here (or not matching its payload)".to_string()
            }
            Check::Malformed { reason } => format!("one that is malformed ({reason})"),
            Check::Certified { issuer, subject } => {
                format!("one keyless by {subject} (issuer {issuer}), certified by the trusted root")
            }
            Check::Uncertified { claimed: c, reason } => {
                format!("one keyless{} that does not verify: {reason}", claimed(c))
            }
            Check::NoTrustedRoot { claimed: c } => format!(
                "one keyless{} not verified, as no trusted root is configured",
                claimed(c)
            ),
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

    fn rule(registry: &str) -> TrustRule {
        TrustRule {
            registry: registry.into(),
            keys: vec![],
            identities: vec![],
            trusted_root: None,
            signatures: SignatureMode::Verify,
        }
    }

    #[test]
    fn identity_rules_validate_and_match() {
        let github = IdentityRule {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "https://github.com/acme/*".into(),
        };
        let keyless = TrustRule {
            identities: vec![github.clone()],
            trusted_root: Some("trusted_root.json".into()),
            signatures: SignatureMode::Require,
            ..rule("ghcr.io/acme/*")
        };
        assert_eq!(keyless.validate(), Ok(()));
        let err = TrustRule {
            trusted_root: None,
            ..keyless.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("no `trusted_root`"), "{err}");
        let err = TrustRule {
            identities: vec![],
            ..keyless.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("names no keys or identities"), "{err}");
        let identity = |issuer: &str, subject: &str| Identity {
            issuer: issuer.into(),
            subject: subject.into(),
        };
        assert!(github.matches(&identity(
            "https://token.actions.githubusercontent.com",
            "https://github.com/acme/packets/.github/workflows/release.yml@refs/heads/main"
        )));
        assert!(!github.matches(&identity(
            "https://token.actions.githubusercontent.com",
            "https://github.com/acmex/packets/.github/workflows/release.yml@refs/heads/main"
        )));
        assert!(!github.matches(&identity(
            "https://accounts.google.com",
            "https://github.com/acme/packets"
        )));
        // The trusted root is loaded with the rule, relative to the config's folder.
        let dir = tempfile::tempdir().unwrap();
        let err = Policy::load(&[keyless], dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ghcr.io/acme/*") && err.contains("trusted_root.json"),
            "{err}"
        );
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
                ..rule("")
            },
            TrustRule {
                registry: "ghcr.io/*".into(),
                signatures: SignatureMode::Ignore,
                ..rule("")
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
            ..rule("")
        };
        let err = Policy::load(&[missing], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/*") && err.contains("nope.pub"), "{err}");
    }
}
