//! Checking credentials against a registry before they are stored, as `docker login` does. The
//! registry's answer to an anonymous `GET /v2/` says how it authenticates: not at all, with
//! Basic auth (the credentials are tried on `/v2/`), or through a token service (a token is
//! asked for with them, for no particular scope).

use crate::error::RegistryError;
use crate::repo::{ConnectOptions, is_loopback};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCheck {
    /// The registry accepted the credentials.
    Verified,
    /// The registry asks for no credentials, so they could not be checked.
    NotRequired,
}

/// Tries `username`/`password` on the registry `host`.
pub async fn check(
    host: &str,
    username: &str,
    password: &str,
    options: ConnectOptions,
) -> Result<LoginCheck, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(host)?;
    let base = format!("{}://{host}/v2/", scheme(host, options));
    let (status, challenge) = challenge(&client, host, &base).await?;
    if status.is_success() {
        return Ok(LoginCheck::NotRequired);
    }
    if status != reqwest::StatusCode::UNAUTHORIZED {
        return Err(protocol(host, format!("GET /v2/ answered {status}")));
    }
    let (scheme, params) = challenge?;
    let answer = match scheme.as_str() {
        "basic" => client.get(&base).basic_auth(username, Some(password)),
        "bearer" => {
            let realm = token_realm(host, &params, options)?;
            let mut query = vec![("account", username)];
            if let Some(service) = params.get("service") {
                query.push(("service", service.as_str()));
            }
            client
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password))
        }
        other => {
            return Err(protocol(
                host,
                format!("it asks for `{other}` authentication, which arkham does not speak"),
            ));
        }
    }
    .send()
    .await
    .map_err(|e| unreachable(host, &e))?;
    match answer.status() {
        status if status.is_success() => Ok(LoginCheck::Verified),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            Err(RegistryError::LoginRefused {
                registry: host.to_string(),
            })
        }
        status => Err(protocol(
            host,
            format!("checking the credentials got {status}"),
        )),
    }
}

/// Exchanges an identity (refresh) token for an access token to `repository`, with `push` or
/// only pull rights, at the token service the registry's challenge names (OAuth2's
/// `refresh_token` grant, as docker does).
pub async fn exchange_identity_token(
    host: &str,
    repository: &str,
    push: bool,
    refresh_token: &str,
    options: ConnectOptions,
) -> Result<String, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(host)?;
    let base = format!("{}://{host}/v2/", scheme(host, options));
    let params = match challenge(&client, host, &base).await?.1 {
        Ok((scheme, params)) if scheme == "bearer" => params,
        _ => {
            return Err(protocol(
                host,
                "the docker config holds an identity token for it, but it has no token service; \
                 log in again with a password (`arkham registry login`)"
                    .to_string(),
            ));
        }
    };
    let realm = token_realm(host, &params, options)?;
    let actions = if push { "pull,push" } else { "pull" };
    let scope = format!("repository:{repository}:{actions}");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", "arkham"),
        ("refresh_token", refresh_token),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = params.get("service") {
        form.push(("service", service.as_str()));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = client
        .post(realm)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(host, &e))?;
    let status = answer.status();
    if matches!(status.as_u16(), 400 | 401 | 403) {
        return Err(RegistryError::Unauthorized {
            registry: host.to_string(),
            repository: repository.to_string(),
        });
    }
    if !status.is_success() {
        return Err(protocol(
            host,
            format!("its token service answered {status}"),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Granted {
        access_token: Option<String>,
        token: Option<String>,
    }
    let granted: Granted = answer
        .json()
        .await
        .map_err(|_| protocol(host, "its token service answered no token".to_string()))?;
    granted
        .access_token
        .or(granted.token)
        .ok_or_else(|| protocol(host, "its token service answered no token".to_string()))
}

/// The token service a challenge names, where credentials are sent: over HTTPS, unless the
/// registry itself is spoken to in plain HTTP (loopback, or `--plain-http`), so that a
/// challenge cannot send a password in the clear.
fn token_realm<'a>(
    host: &str,
    params: &'a BTreeMap<String, String>,
    options: ConnectOptions,
) -> Result<&'a str, RegistryError> {
    let realm = params
        .get("realm")
        .ok_or_else(|| protocol(host, "its token challenge names no realm".to_string()))?;
    let secure = realm.starts_with("https://");
    let plain_allowed = scheme(host, options) == "http" && realm.starts_with("http://");
    if secure || plain_allowed {
        Ok(realm)
    } else {
        Err(protocol(
            host,
            format!(
                "its token service `{realm}` is not HTTPS; credentials are not sent there (pass --plain-http only for a registry you trust on a private network)"
            ),
        ))
    }
}

/// Asks `base` (the registry's `/v2/`) anonymously how it authenticates: its status, and the
/// scheme and parameters of its `WWW-Authenticate` challenge (an error naming what it sent when
/// there is no challenge arkham can read).
async fn challenge(
    client: &reqwest::Client,
    host: &str,
    base: &str,
) -> Result<
    (
        reqwest::StatusCode,
        Result<(String, BTreeMap<String, String>), RegistryError>,
    ),
    RegistryError,
> {
    let anonymous = client
        .get(base)
        .send()
        .await
        .map_err(|e| unreachable(host, &e))?;
    let header = anonymous
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = parse_challenge(header)
        .ok_or_else(|| protocol(host, format!("GET /v2/ challenged with `{header}`")));
    Ok((anonymous.status(), parsed))
}

fn client(host: &str) -> Result<reqwest::Client, RegistryError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| unreachable(host, &e))
}

fn scheme(host: &str, options: ConnectOptions) -> &'static str {
    if options.plain_http || is_loopback(host) {
        "http"
    } else {
        "https"
    }
}

/// `application/x-www-form-urlencoded` for one value: unreserved bytes as they are, the rest
/// `%XX`.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unreachable(host: &str, e: &reqwest::Error) -> RegistryError {
    // reqwest's errors name the URL, never the credentials.
    RegistryError::Unreachable {
        registry: host.to_string(),
        message: e.to_string(),
    }
}

fn protocol(host: &str, message: String) -> RegistryError {
    RegistryError::Protocol {
        registry: host.to_string(),
        message,
    }
}

/// `Bearer realm="https://auth.example/token",service="registry.example"` → (`bearer`, its
/// parameters); values may be quoted (with `\` escapes) or bare tokens.
fn parse_challenge(header: &str) -> Option<(String, BTreeMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some((scheme.to_ascii_lowercase(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_as_registries_send_them() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://ghcr.io/token");
        assert_eq!(params["service"], "ghcr.io");
        assert_eq!(params["scope"], "repository:a/b:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(scheme, "basic");
        assert_eq!(params["realm"], r#"a "quoted" realm"#);
        let (_, params) = parse_challenge("Bearer realm=bare, service = s").unwrap();
        assert_eq!(params["realm"], "bare");
        assert_eq!(params["service"], "s");
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn credentials_go_to_a_token_service_over_https_only() {
        let params = |realm: &str| BTreeMap::from([("realm".to_string(), realm.to_string())]);
        let tls = ConnectOptions::default();
        let https = params("https://auth.example/token");
        let http = params("http://auth.example/token");
        let odd = params("ftp://auth.example/token");
        assert!(token_realm("ghcr.io", &https, tls).is_ok());
        assert!(token_realm("ghcr.io", &http, tls).is_err());
        assert!(token_realm("ghcr.io", &odd, tls).is_err());
        // A registry spoken to in plain HTTP may name a plain-HTTP token service.
        assert!(token_realm("127.0.0.1:5000", &http, tls).is_ok());
        let plain = ConnectOptions {
            plain_http: true,
            offline: false,
        };
        assert!(token_realm("registry.lan", &http, plain).is_ok());
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(form_encode("x-1.2_~"), "x-1.2_~");
    }
}
