//! Test harness: packaged fixture shards (once per run), data dirs, and real `arkham serve`
//! processes driven over HTTP.

use arkham_frame::shards::manifest::Manifest;
use arkham_frame::shards::package::embed_manifest;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use test_shards::GuestShard;

/// The `arkham` binary under test.
pub fn arkham_bin() -> &'static str {
    env!("CARGO_BIN_EXE_arkham")
}

/// A folder shared by the whole test run (compiled-component cache, packaged fixtures).
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("arkham-tests");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// The compiled-component cache every frame of the run shares, so each component compiles once.
pub fn cache_dir() -> PathBuf {
    run_dir().join("compiled-cache")
}

/// Packages a fixture (component + its shard.toml) into a self-describing `.wasm`, once per run.
pub fn packaged(shard: &GuestShard) -> PathBuf {
    let path = run_dir().join(format!("{}.shard.wasm", shard.name));
    static DONE: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let done = DONE.get_or_init(Default::default);
    let mut done = done.lock().unwrap();
    if !done.iter().any(|n| n == shard.name) {
        let manifest = Manifest::from_file(Path::new(shard.manifest)).unwrap();
        package_with(shard, &manifest, &path);
        done.push(shard.name.to_string());
    }
    path
}

/// Packages `shard`'s component with another manifest, at `path`.
pub fn package_with(shard: &GuestShard, manifest: &Manifest, path: &Path) {
    let raw = std::fs::read(shard.component).unwrap();
    let bytes = embed_manifest(&raw, manifest).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// The manifest of a fixture, for tests that alter it.
pub fn manifest_of(shard: &GuestShard) -> Manifest {
    Manifest::from_file(Path::new(shard.manifest)).unwrap()
}

/// `arkham ARGS` on `data` with the run's compiled cache and quiet logs, to adjust and [`run`].
pub fn arkham_command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(arkham_bin());
    command
        .args(args)
        .env("ARKHAM_DATA_DIR", data)
        .env("ARKHAM_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "warn")
        // An encrypted key's password comes only from what a test sets.
        .env_remove("COSIGN_PASSWORD")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end: (success, stdout, stderr).
pub fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `arkham` with `args` and the test environment; returns (success, stdout, stderr).
pub fn arkham(data: &Path, args: &[&str]) -> (bool, String, String) {
    run(&mut arkham_command(data, args))
}

/// Installs packaged fixtures into `data`, asserting success.
pub fn install(data: &Path, shards: &[&GuestShard]) {
    for shard in shards {
        let file = packaged(shard);
        let (ok, out, err) = arkham(data, &["shard", "add", file.to_str().unwrap(), "--yes"]);
        assert!(ok, "installing {} failed:\n{out}\n{err}", shard.name);
    }
}

/// What the frame logs once its background load of the shards left pending at start is done.
pub const PENDING_LOADED: &str = "pending shards loaded";

/// A running `arkham serve`.
pub struct Frame {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Frame {
    /// Starts a frame on `data` on a free loopback port and waits until it listens and has
    /// loaded every shard it left pending at start.
    pub fn start(data: &Path) -> Self {
        Self::start_command(data, Command::new(arkham_bin()))
    }

    /// Starts a frame like [`start`](Self::start) but returns once it listens: its shards
    /// may still be pending.
    pub fn start_listening(data: &Path) -> Self {
        Self::spawn(data, Command::new(arkham_bin()))
    }

    /// Starts a frame like [`start`](Self::start) whose process may hold at most `bytes` of
    /// data memory (`RLIMIT_DATA`, through util-linux's `prlimit`): past it, its allocations
    /// fail and it aborts.
    pub fn start_with_data_limit(data: &Path, bytes: u64) -> Self {
        let mut command = Command::new("prlimit");
        command.arg(format!("--data={bytes}")).arg(arkham_bin());
        Self::start_command(data, command)
    }

    /// Starts `command` with `serve --listen 127.0.0.1:0` appended, as [`start`](Self::start)
    /// starts `arkham`: for a wrapper that ends by running the `arkham` binary with those
    /// arguments.
    pub fn start_command(data: &Path, command: Command) -> Self {
        let mut frame = Self::spawn(data, command);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !frame.log().contains(PENDING_LOADED) && frame.alive() {
            assert!(
                Instant::now() < deadline,
                "the frame did not load its pending shards:\n{}",
                frame.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        frame
    }

    fn spawn(data: &Path, mut command: Command) -> Self {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("ARKHAM_DATA_DIR", data)
            .env("ARKHAM_CACHE_DIR", cache_dir())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("frame exited before listening:\n{}", log.lock().unwrap()))
            .unwrap();
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base,
            client: reqwest::Client::new(),
            log,
        }
    }

    /// The frame's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the frame's process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The frame's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `METHOD /path` with an optional JSON body; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// Kills the frame with SIGKILL, as a crash or an OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops the frame with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "frame exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "frame did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Taken by the tests that load the machine on purpose (guests spinning on every core) and by
/// those that compile very large components (the Python and JavaScript shards): on two cores,
/// one of each at once left the spinning test's neighbours past their deadlines.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Polls `check` every 50 ms for up to 20 s; panics with `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The admin API token a frame created in `data`.
pub fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin-token")).unwrap()
}

/// A fresh data dir with `config` as its arkham.toml.
pub fn data_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("arkham.toml"), config).unwrap();
    dir
}

/// Runs `arkham` with `args`, the test environment and `envs`; returns (success, stdout, stderr).
pub fn arkham_with(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    run(arkham_command(data, args)
        .env_remove("ARKHAM_REGISTRY")
        .env_remove("ARKHAM_REGISTRY_USERNAME")
        .env_remove("ARKHAM_REGISTRY_PASSWORD")
        .envs(envs.iter().copied()))
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns false (with a skip notice) when `program` is missing outside CI; panics in CI.
pub fn require(program: &str, test: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs `{program}` (scripts/setup installs it) and CI=true"
    );
    eprintln!("SKIPPED {test}: `{program}` is not installed (scripts/setup installs it)");
    false
}

/// Debian's `docker-registry` on a free loopback port, storing in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    /// Holds the config, the storage and the htpasswd file.
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl Registry {
    /// Starts a registry, with htpasswd basic auth for `user` when given; `None` (after a skip
    /// notice) when `docker-registry` is not installed outside CI.
    pub fn start(test: &str, user: Option<(&str, &str)>) -> Option<Self> {
        if !require("docker-registry", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((name, password)) = user {
            assert!(
                require("htpasswd", test),
                "htpasswd (apache2-utils) is missing"
            );
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .unwrap();
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            auth = format!(
                "auth: {{ htpasswd: {{ realm: test, path: {} }} }}\n",
                file.display()
            );
        }
        Some(Self::launch(
            dir,
            auth,
            if user.is_some() { 401 } else { 200 },
        ))
    }

    /// Starts a registry that takes tokens from `tokens` (`auth: token`), as GHCR does; `None`
    /// (after a skip notice) when `docker-registry` or `openssl` is not installed outside CI.
    pub fn start_with_tokens(test: &str, policy: TokenPolicy) -> Option<(Self, TokenServer)> {
        if !require("docker-registry", test) || !require("openssl", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenServer::start(dir.path(), policy);
        let auth = format!(
            "auth: {{ token: {{ realm: \"{}\", service: {TOKEN_SERVICE}, issuer: {TOKEN_ISSUER}, rootcertbundle: {} }} }}\n",
            tokens.realm,
            tokens.cert.display()
        );
        Some((Self::launch(dir, auth, 401), tokens))
    }

    fn launch(dir: tempfile::TempDir, auth: String, ready_status: u16) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: error }}\nstorage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\nhttp: {{ addr: {host} }}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self { child, dir, host };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = registry.v2_status();
            if status == Some(ready_status) {
                return registry;
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn v2_status(&self) -> Option<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.host).ok()?;
        stream
            .write_all(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// The file holding blob `digest` (`sha256:…`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker token service for a token-auth registry, as GHCR and Docker Hub run: `GET /token
/// ?service=…&scope=repository:NAME:pull,push` with Basic credentials (or none) answers a JWT
/// (RS256, the signing certificate in `x5c`) granting the actions the policy allows. Signed with
/// `openssl`; served from a thread on a loopback port.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The certificate the registry trusts.
    pub cert: PathBuf,
    /// Tokens issued, for tests that check none leaks.
    pub issued: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Who may do what: `user:password`s, and per repository prefix the actions each user (or
/// `anonymous`) gets.
pub struct TokenPolicy {
    pub users: Vec<(&'static str, &'static str)>,
    /// Identity (refresh) tokens for OAuth2's `refresh_token` grant (`POST /token`), and whose.
    pub refresh_tokens: Vec<(&'static str, &'static str)>,
    pub grants: Vec<(&'static str, &'static str, &'static [&'static str])>,
}

pub const TOKEN_SERVICE: &str = "arkham-test-registry";
const TOKEN_ISSUER: &str = "arkham-test-issuer";

impl TokenServer {
    pub fn start(dir: &Path, policy: TokenPolicy) -> Self {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=arkham-test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "openssl could not make the token certificate"
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        use base64::Engine as _;
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // One request per connection; failures only fail that request.
                let _ = serve_token(stream, &policy, &key, &x5c, &log);
            }
        });
        Self {
            realm,
            cert,
            issued,
        }
    }
}

fn serve_token(
    mut stream: std::net::TcpStream,
    policy: &TokenPolicy,
    key: &Path,
    x5c: &str,
    issued: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use base64::Engine as _;
    use std::io::Read as _;
    use std::io::Write;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let post = line.starts_with("POST ");
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut authorization = None;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut form = vec![0u8; length.min(1 << 16)];
    reader.read_exact(&mut form)?;
    // A GET carries its parameters in the query; OAuth2's POST in a form body.
    let encoded = if post {
        String::from_utf8_lossy(&form).into_owned()
    } else {
        target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .to_string()
    };
    let params: Vec<(String, String)> = encoded
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let refused = |stream: &mut std::net::TcpStream| {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        write!(
            stream,
            "HTTP/1.0 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let user = if post && param("grant_type") == Some("refresh_token") {
        let holder = policy
            .refresh_tokens
            .iter()
            .find(|(token, _)| Some(*token) == param("refresh_token"));
        match holder {
            Some((_, user)) => Some(*user),
            None => return refused(&mut stream),
        }
    } else {
        match authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
        {
            None => None,
            Some(encoded) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .unwrap_or_default();
                match policy
                    .users
                    .iter()
                    .find(|(u, p)| decoded == format!("{u}:{p}"))
                {
                    Some((u, _)) => Some(*u),
                    None => return refused(&mut stream),
                }
            }
        }
    };
    let who = user.unwrap_or("anonymous");
    let mut access = Vec::new();
    let scopes = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '));
    for value in scopes {
        // repository:NAME:pull,push
        let mut parts = value.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                policy.grants.iter().any(|(prefix, grantee, allowed)| {
                    name.starts_with(prefix)
                        && (*grantee == who || *grantee == "anonymous")
                        && allowed.contains(action)
                })
            })
            .collect();
        access.push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": user.unwrap_or(""),
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", rand::random::<u64>()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    openssl
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?
        .write_all(signing_input.as_bytes())?;
    let signature = openssl.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", b64(&signature));
    if let Ok(mut log) = issued.lock() {
        log.push(token.clone());
    }
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    write!(
        stream,
        "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
