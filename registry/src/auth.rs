//! Registry credentials, read from where docker, oras and helm read them.
//!
//! In order: `ARKHAM_REGISTRY_USERNAME`/`ARKHAM_REGISTRY_PASSWORD`; the docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): a credential helper for the host
//! (`credHelpers`), the default store (`credsStore`), or an `auths` entry. `arkham registry login`
//! writes an `auths` entry, so docker and oras see the same login. Secrets are never formatted:
//! [`Credentials`]' `Debug` hides them and no error carries one.

use base64::Engine as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Username variable.
pub const USERNAME_ENV: &str = "ARKHAM_REGISTRY_USERNAME";
/// Password variable.
pub const PASSWORD_ENV: &str = "ARKHAM_REGISTRY_PASSWORD";

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// A username and password (or token used as a password).
    Basic {
        /// The username.
        username: String,
        /// The password; never printed.
        password: String,
    },
    /// An identity token (`identitytoken` in the docker config, or a credential helper's
    /// `<token>` user): an OAuth2 refresh token, exchanged at the registry's token service for
    /// an access token per repository.
    IdentityToken {
        /// The account it belongs to, when known (for messages).
        username: String,
        /// The refresh token; never printed.
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
            Credentials::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, <hidden>)")
            }
        }
    }
}

impl Credentials {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            // An identity token is exchanged first (`Repo::auth`); on its own it opens nothing.
            Credentials::Anonymous | Credentials::IdentityToken { .. } => {
                oci_client::secrets::RegistryAuth::Anonymous
            }
            Credentials::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

/// Why credentials could not be read or stored. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The docker config could not be read or written.
    #[error("docker config {path}: {reason}; fix or remove the file")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error(
        "credential helper `docker-credential-{helper}` failed for {host}: {reason}; check that it is installed and logged in"
    )]
    Helper {
        /// The helper's suffix.
        helper: String,
        /// The registry host.
        host: String,
        /// What failed (the helper's stderr, trimmed).
        reason: String,
    },
    /// Only one of the two variables is set.
    #[error("set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")]
    HalfSetEnv,
}

/// The docker config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".docker").join("config.json")
}

fn read_config() -> Result<serde_json::Value, AuthError> {
    let path = docker_config_path();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::Config {
            path,
            reason: format!("not valid JSON ({e})"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(AuthError::Config {
            path,
            reason: e.to_string(),
        }),
    }
}

/// The keys a host may be stored under (docker uses a URL for Docker Hub).
fn host_keys(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".to_string());
    }
    keys
}

/// The credentials for `host`.
pub fn credentials_for(host: &str) -> Result<Credentials, AuthError> {
    match (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
        (Ok(username), Ok(password)) => return Ok(Credentials::Basic { username, password }),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => return Err(AuthError::HalfSetEnv),
        _ => {}
    }
    let config = read_config()?;
    let keys = host_keys(host);
    if let Some(helpers) = config.get("credHelpers").and_then(|v| v.as_object()) {
        for key in &keys {
            if let Some(helper) = helpers.get(key).and_then(|v| v.as_str()) {
                return run_helper(helper, host);
            }
        }
    }
    if let Some(auths) = config.get("auths").and_then(|v| v.as_object()) {
        for key in &keys {
            let Some(entry) = auths.get(key) else {
                continue;
            };
            if let Some(token) = entry
                .get("identitytoken")
                .and_then(|v| v.as_str())
                .filter(|t| !t.is_empty())
            {
                let username = entry
                    .get("auth")
                    .and_then(|v| v.as_str())
                    .and_then(decode_auth)
                    .and_then(|c| match c {
                        Credentials::Basic { username, .. } => Some(username),
                        _ => None,
                    })
                    .unwrap_or_default();
                return Ok(Credentials::IdentityToken {
                    username,
                    token: token.to_string(),
                });
            }
            if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) {
                return decode_auth(auth).ok_or_else(|| AuthError::Config {
                    path: docker_config_path(),
                    reason: format!("the `auth` of {key} is not base64 of `user:password`"),
                });
            }
        }
    }
    if let Some(store) = config.get("credsStore").and_then(|v| v.as_str()) {
        return run_helper(store, host);
    }
    Ok(Credentials::Anonymous)
}

fn decode_auth(auth: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Runs `docker-credential-{helper} get` with the host on stdin.
fn run_helper(helper: &str, host: &str) -> Result<Credentials, AuthError> {
    let fail = |reason: String| AuthError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        reason,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_lowercase();
        if said.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        // stderr of a helper describes the failure; it does not echo secrets.
        return Err(fail(
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(300)
                .collect(),
        ));
    }
    #[derive(serde::Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let parsed: HelperOut = serde_json::from_slice(&out.stdout)
        .map_err(|_| fail("its output is not {\"Username\",\"Secret\"} JSON".to_string()))?;
    // Docker's convention: the user `<token>` means the secret is an identity token.
    if parsed.username == "<token>" {
        return Ok(Credentials::IdentityToken {
            username: String::new(),
            token: parsed.secret,
        });
    }
    Ok(Credentials::Basic {
        username: parsed.username,
        password: parsed.secret,
    })
}

/// Stores `username`/`password` for `host` in the docker config (an `auths` entry), atomically;
/// returns the file's path.
pub fn store_login(host: &str, username: &str, password: &str) -> Result<PathBuf, AuthError> {
    let path = docker_config_path();
    let mut config = read_config()?;
    let fail = |reason: String| AuthError::Config {
        path: path.clone(),
        reason,
    };
    let root = config
        .as_object_mut()
        .ok_or_else(|| fail("it is not a JSON object".to_string()))?;
    let auths = root
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| fail("`auths` is not an object".to_string()))?;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(host.to_string(), serde_json::json!({ "auth": encoded }));
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| fail(e.to_string()))?;
    crate::fsutil::write_atomically(&path, &bytes, 0o600).map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Removes the credentials stored for `host` from the docker config's `auths`, atomically;
/// returns the file's path and whether there were any. Credentials a helper (`credsStore`,
/// `credHelpers`) keeps are the helper's to remove.
pub fn remove_login(host: &str) -> Result<(PathBuf, bool), AuthError> {
    let path = docker_config_path();
    let mut config = read_config()?;
    let fail = |reason: String| AuthError::Config {
        path: path.clone(),
        reason,
    };
    let removed = config
        .get_mut("auths")
        .and_then(serde_json::Value::as_object_mut)
        .is_some_and(|auths| auths.remove(host).is_some());
    if removed {
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| fail(e.to_string()))?;
        crate::fsutil::write_atomically(&path, &bytes, 0o600).map_err(|e| fail(e.to_string()))?;
    }
    Ok((path, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn decodes_docker_auth() {
        let c = decode_auth("dXNlcjpwYXNzOndvcmQ=").unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "user".into(),
                password: "pass:word".into()
            }
        );
        assert!(decode_auth("!!").is_none());
    }
}
