//! The `[nats]` section shared by the events and storage backends on NATS JetStream, and the one
//! connection the frame opens for both.
//!
//! Secrets (token, password, a password in the URL) never appear in `Debug` output, errors or logs.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How long connecting may take before the frame gives up starting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[nats]` section of the frame config.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several); required when
    /// `[events]` or `[storage]` has `backend = "nats"`.
    pub url: Option<String>,
    /// A `.creds` file (JWT + NKey seed) to authenticate with.
    pub credentials_file: Option<PathBuf>,
    /// A token to authenticate with.
    pub token: Option<String>,
    /// A user name (with `password`).
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// Refuse to talk to the server without TLS.
    pub tls_required: bool,
    /// A PEM file of CA certificates to trust for the server's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// A PEM client certificate (with `tls_client_key`) for mutual TLS.
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM key of `tls_client_cert`.
    pub tls_client_key: Option<PathBuf>,
    /// What the frame's streams, buckets and subjects are named after, so several deployments
    /// can share one NATS account: stream `<PREFIX>_EVENTS`, subjects `<prefix>.events.…`,
    /// buckets `<prefix>_<shard>`. Letters, digits, `_` and `-`.
    pub prefix: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            tls_required: false,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            prefix: "arkham".to_string(),
        }
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<hidden>");
        f.debug_struct("NatsConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("credentials_file", &self.credentials_file)
            .field("token", &hidden(&self.token))
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Why the frame could not connect to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A backend is `nats` but `[nats] url` is unset.
    #[error(
        "[{service}] backend = \"nats\" needs the NATS server's address: set `url` in the [nats] section of arkham.toml (e.g. url = \"nats://127.0.0.1:4222\")"
    )]
    MissingUrl {
        /// The section that asked for NATS.
        service: &'static str,
    },
    /// The section is inconsistent.
    #[error("[nats] {0}")]
    Invalid(String),
    /// The credentials file could not be read.
    #[error("[nats] credentials_file {path} cannot be used: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The server could not be reached or refused the connection.
    #[error("connecting to NATS at {url}: {reason}")]
    Connect {
        /// The address, without any password.
        url: String,
        /// The client's error.
        reason: String,
    },
}

/// The URL with any `user:password@` cut to `user:***@`.
pub fn redact_url(url: &str) -> String {
    let mut out = Vec::new();
    for one in url.split(',') {
        let (scheme, rest) = match one.find("://") {
            Some(i) => (&one[..i + 3], &one[i + 3..]),
            None => ("", one),
        };
        let redacted = match rest.rfind('@') {
            Some(at) => {
                let user = rest[..at].split(':').next().unwrap_or("");
                format!("{scheme}{user}:***@{}", &rest[at + 1..])
            }
            None => one.to_string(),
        };
        out.push(redacted);
    }
    out.join(",")
}

impl NatsConfig {
    /// Checks the section; `service` names the first section with `backend = "nats"`, if any.
    pub fn validate(&self, service: Option<&'static str>) -> Result<(), NatsError> {
        if let Some(service) = service
            && self.url.as_deref().is_none_or(|u| u.trim().is_empty())
        {
            return Err(NatsError::MissingUrl { service });
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(NatsError::Invalid(format!(
                "prefix {:?} must be 1 to 32 letters, digits, `_` or `-` (it names streams, buckets and subjects)",
                self.prefix
            )));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(NatsError::Invalid(
                "user and password go together: set both or neither".into(),
            ));
        }
        if self.tls_client_cert.is_some() != self.tls_client_key.is_some() {
            return Err(NatsError::Invalid(
                "tls_client_cert and tls_client_key go together: set both or neither".into(),
            ));
        }
        Ok(())
    }

    /// The prefix lowercased, for subjects and bucket names.
    pub fn subject_prefix(&self) -> String {
        self.prefix.to_ascii_lowercase()
    }

    /// The prefix uppercased, for stream names.
    pub fn stream_prefix(&self) -> String {
        self.prefix.to_ascii_uppercase()
    }
}

/// Connects to the server(s) of `config` (used once by the frame for both services). The client
/// reconnects by itself after the connection drops.
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, NatsError> {
    let url = config
        .url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or(NatsError::MissingUrl { service: "nats" })?;
    config.validate(None)?;
    let mut options = async_nats::ConnectOptions::new()
        .name("arkham-frame")
        .connection_timeout(CONNECT_TIMEOUT)
        .require_tls(config.tls_required);
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_client_cert, &config.tls_client_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<&str> = url.split(',').map(str::trim).collect();
    let addrs: Vec<async_nats::ServerAddr> = addrs
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| NatsError::Connect {
            url: redact_url(url),
            reason: format!("not a NATS address: {e}"),
        })?;
    options
        .connect(addrs)
        .await
        .map_err(|e| NatsError::Connect {
            url: redact_url(url),
            // The client's errors name the kind of failure, not the credentials.
            reason: e.to_string(),
        })
}

/// Whether the server speaks at least version `major.minor`.
pub fn server_at_least(client: &async_nats::Client, major: u64, minor: u64) -> bool {
    let info = client.server_info();
    let mut parts = info.version.split(['.', '-']).map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(ma)), Some(Ok(mi))) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_hidden() {
        let config = NatsConfig {
            url: Some("nats://alice:s3cret@host:4222".into()),
            token: Some("tok3n".into()),
            user: Some("bob".into()),
            password: Some("pa55".into()),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        for secret in ["s3cret", "tok3n", "pa55"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            redact_url("nats://a:b@h:1,nats://h2:2"),
            "nats://a:***@h:1,nats://h2:2"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let err = NatsConfig::default()
            .validate(Some("events"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[events]") && err.contains("url"), "{err}");
        let bad = NatsConfig {
            prefix: "a.b".into(),
            ..Default::default()
        };
        assert!(
            bad.validate(None)
                .unwrap_err()
                .to_string()
                .contains("prefix")
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        let config = NatsConfig {
            url: Some(format!(
                "nats://u:hidden@127.0.0.1:{}",
                test_shards::engines::free_port()
            )),
            ..Default::default()
        };
        let err = connect(&config).await.unwrap_err().to_string();
        assert!(err.contains("connecting to NATS"), "{err}");
        assert!(!err.contains("hidden"), "{err}");
    }
}
