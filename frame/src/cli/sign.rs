//! `arkham key generate`, `arkham shard sign` and `arkham shard verify`: cosign's key-based
//! signatures (see `arkham_registry::signature`), made and checked by arkham itself.

use crate::datadir::DataDir;
use crate::shards::trust::{self, SignatureMode, TrustError, describe};
use anyhow::Context as _;
use arkham_registry::digest::Digest;
use arkham_registry::pull;
use arkham_registry::repo::{ConnectOptions, Repo};
use arkham_registry::signature::KeyError;
use arkham_registry::signature::{self, Check, PublicKey, SigningKey};
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where an encrypted key's password is read from before a terminal is asked: cosign's own
/// variable, so one CI secret serves both tools. Set but empty means the empty password, as in
/// cosign.
const PASSWORD_VAR: &str = "COSIGN_PASSWORD";

/// `arkham key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Write a new ECDSA P-256 key pair for `arkham shard sign`: PREFIX.key (PKCS#8 PEM,
    /// unencrypted, mode 0600: keep it secret; with --encrypt, cosign's password-encrypted
    /// format) and PREFIX.pub (SPKI PEM, for `[[trust]]` rules and `cosign verify --key`).
    Generate {
        /// Where to write: PREFIX.key and PREFIX.pub.
        #[arg(long, default_value = "arkham")]
        out: PathBuf,
        /// Encrypt PREFIX.key with a password in cosign's format (`cosign generate-key-pair`'s),
        /// which `cosign sign --key` reads too. The password comes from COSIGN_PASSWORD, or is
        /// asked twice on the terminal.
        #[arg(long)]
        encrypt: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `arkham key …`.
pub fn run_key(command: KeyCommand) -> anyhow::Result<()> {
    let KeyCommand::Generate { out, encrypt, json } = command;
    let private = with_suffix(&out, "key");
    let public = with_suffix(&out, "pub");
    for path in [&private, &public] {
        if path.exists() {
            anyhow::bail!(
                "{} exists; nothing was written (a key is not overwritten: pick another --out, or move it away)",
                path.display()
            );
        }
    }
    let key = SigningKey::generate()?;
    let pem = if encrypt {
        key.to_encrypted_pem(&new_password(&private)?)?
    } else {
        key.to_pem()
    };
    write_new(&private, pem.as_bytes(), 0o600)?;
    write_new(&public, key.public_key().to_pem().as_bytes(), 0o644)?;
    let fingerprint = key.public_key().fingerprint();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "private_key": private,
                "public_key": public,
                "fingerprint": fingerprint,
                "encrypted": encrypt,
            })
        );
    } else {
        let private_note = if encrypt {
            "private, encrypted in cosign's format: keep it and its password secret"
        } else {
            "private: keep it secret"
        };
        println!(
            "wrote {} ({private_note}) and {} (public)\nfingerprint {fingerprint}",
            private.display(),
            public.display()
        );
    }
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a private key for signing: a PEM key, or one of cosign's encrypted ones with its
/// password (from COSIGN_PASSWORD, else asked on the terminal).
pub fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let what = path.display().to_string();
    match SigningKey::from_pem(&text, &what) {
        Err(KeyError::PasswordNeeded { .. }) => {}
        other => return Ok(other?),
    }
    let (password, from_env) = match std::env::var_os(PASSWORD_VAR) {
        Some(value) => (Zeroizing::new(value.into_vec()), true),
        None => {
            no_terminal_bail(&format!(
                "{what} is encrypted (cosign's format) and there is no terminal to ask for its password"
            ))?;
            (ask(&format!("password for {what}: "))?, false)
        }
    };
    SigningKey::from_encrypted_pem(&text, &what, &password).map_err(|e| match e {
        KeyError::WrongPassword { .. } if from_env => {
            anyhow::anyhow!("{e}; the password was read from {PASSWORD_VAR}")
        }
        e => e.into(),
    })
}

/// The password for a new encrypted key: COSIGN_PASSWORD, else typed twice on the terminal.
fn new_password(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(value) = std::env::var_os(PASSWORD_VAR) {
        return Ok(Zeroizing::new(value.into_vec()));
    }
    no_terminal_bail("--encrypt needs a password and there is no terminal to ask for it")?;
    let first = ask(&format!("password for the new key {}: ", path.display()))?;
    if first.is_empty() {
        anyhow::bail!(
            "the password is empty; nothing was written (leave out --encrypt for an unencrypted key)"
        );
    }
    let again = ask("the same password again: ")?;
    if first != again {
        anyhow::bail!("the two passwords differ; nothing was written");
    }
    Ok(first)
}

/// Fails with `what`, and how to pass a password instead, when stdin is not a terminal.
fn no_terminal_bail(what: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{what}: set {PASSWORD_VAR} to the password");
    }
    Ok(())
}

/// One password typed on the terminal, not echoed.
fn ask(prompt: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let line =
        Zeroizing::new(super::registry::hidden::read_line(prompt).context("reading the password")?);
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
    ))
}

/// The repository and manifest digest `reference` resolves to.
async fn resolve_digest(
    data: &DataDir,
    reference: &str,
    options: ConnectOptions,
) -> anyhow::Result<(Repo, String, Digest)> {
    let shard_ref = super::shard::parse_ref(data, reference)?;
    // Offline, what `add` kept of the repository (its manifests and signatures) answers.
    let repo = if options.offline
        && matches!(
            shard_ref.location,
            arkham_registry::reference::Location::Remote { .. }
        ) {
        let index = arkham_registry::cache::TagIndex::load(&data.tag_index())?;
        Repo::cached(&shard_ref.location, data.store(), &index)
    } else {
        Repo::open(&shard_ref.location, options)?
    };
    let resolved = pull::resolve(&repo, &shard_ref).await?;
    let (_, digest) = repo.manifest(&resolved.target).await?;
    let shown = if resolved.target.starts_with("sha256:") {
        format!("{}@{}", repo.location(), resolved.target)
    } else {
        format!("{}:{}", repo.location(), resolved.target)
    };
    Ok((repo, shown, digest))
}

/// `arkham shard sign REF --key KEY`.
pub async fn sign(
    data: &DataDir,
    reference: &str,
    key: &Path,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let key = signing_key(key)?;
    let (repo, shown, digest) = resolve_digest(data, reference, options).await?;
    let signed = signature::sign(&repo, &digest, &key).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&signed)?);
    } else {
        print_signed(&shown, &signed);
    }
    Ok(())
}

/// One line on what `sign` did.
pub fn print_signed(shown: &str, signed: &signature::Signed) {
    if signed.already_signed {
        println!(
            "{shown} ({}) was already signed by {}; nothing pushed",
            signed.digest, signed.fingerprint
        );
    } else {
        println!(
            "signed {shown} ({}) with {}: {} ({} signature(s))",
            signed.digest, signed.fingerprint, signed.signature_ref, signed.signatures
        );
    }
}

/// `arkham shard verify REF --key PUB`: succeeds only when a signature by that key covers the
/// digest REF resolves to.
pub async fn verify(
    data: &DataDir,
    reference: &str,
    key: &Path,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let public = PublicKey::from_file(key)?;
    let fingerprint = public.fingerprint();
    let (repo, shown, digest) = resolve_digest(data, reference, options).await?;
    let found = signature::fetch(&repo, &digest).await?;
    let checks = found
        .as_ref()
        .map(|f| f.check(&digest, std::slice::from_ref(&public)))
        .unwrap_or_default();
    let verified = checks.iter().any(|c| matches!(c, Check::Verified { .. }));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "reference": shown,
                "digest": digest,
                "key": fingerprint,
                "verified": verified,
                "signatures": checks,
            }))?
        );
    }
    if !verified {
        let found = match &found {
            None => format!(
                "no signature ({} has no tag {})",
                repo.location(),
                signature::signature_tag(&digest)
            ),
            Some(_) => describe(&checks),
        };
        anyhow::bail!(
            "{shown} ({digest}) is not verified: expected a signature by the key {fingerprint} ({}); found {found}. Sign it with `arkham shard sign {reference} --key PRIVATE-KEY`, or check that this is the publisher's key",
            key.display()
        );
    }
    if !json {
        println!("verified {shown} ({digest}): signed by the key {fingerprint}");
    }
    Ok(())
}

/// The signatures of an artifact and the trust policy's verdict on them, for `shard inspect`.
#[derive(Debug, serde::Serialize)]
pub struct SignatureReport {
    /// `sha256-HEX.sig`.
    tag: String,
    /// Each signature layer checked against the keys the policy trusts here.
    checks: Vec<Check>,
    /// Whether a signature tag exists at all.
    found: bool,
    /// The rule that applies (`None`: the default).
    rule: Option<String>,
    /// Its mode.
    mode: SignatureMode,
    /// Whether `add` would accept it.
    accepted: bool,
    /// Signers the policy trusts.
    signers: Vec<String>,
    /// Why not, or the warning `add` would print.
    message: Option<String>,
}

impl SignatureReport {
    /// Prints the report as lines under the inspection.
    pub fn print(&self) {
        if !self.found {
            println!("signatures:   none (no tag {})", self.tag);
        } else {
            println!("signatures:   {} ({})", describe(&self.checks), self.tag);
        }
        let rule = self.rule.as_deref().map_or_else(
            || "the default policy".to_string(),
            |r| format!("rule `{r}`"),
        );
        let mode = match self.mode {
            SignatureMode::Require => "require",
            SignatureMode::Verify => "verify",
            SignatureMode::Ignore => "ignore",
        };
        let verdict = if self.accepted { "accepted" } else { "refused" };
        println!("trust policy: {rule} ({mode}): {verdict}");
        if let Some(message) = &self.message {
            println!("              {message}");
        }
    }
}

/// What `add` would make of `artifact`'s signatures, without downloading the component.
pub async fn inspect_signatures(
    data: &DataDir,
    repo: &Repo,
    shard_ref: &arkham_registry::reference::ShardRef,
    artifact: &pull::Artifact,
) -> anyhow::Result<SignatureReport> {
    let policy = crate::shards::fetch::policy(data)?;
    let effective = policy.for_location(&shard_ref.location);
    let digest = &artifact.manifest_digest;
    let found = signature::fetch(repo, digest).await?;
    let checks = found
        .as_ref()
        .map(|f| {
            f.check_with(
                digest,
                effective.keys,
                effective.trusted_root.map(|(root, _)| root),
            )
        })
        .unwrap_or_default();
    let (accepted, signers, message) =
        match trust::check(&effective, repo, &artifact.reference, digest, &[]).await {
            Ok(verdict) => (true, verdict.signers, verdict.warning),
            Err(e @ TrustError::Refused { .. }) => (false, Vec::new(), Some(e.to_string())),
            Err(e) => return Err(e.into()),
        };
    Ok(SignatureReport {
        tag: signature::signature_tag(digest),
        checks,
        found: found.is_some(),
        rule: effective.rule.map(str::to_string),
        mode: effective.mode,
        accepted,
        signers,
        message,
    })
}
