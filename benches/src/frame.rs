//! Driving real `arkham` processes: packaging shards, installing them, serving, and reading
//! the frame's resident memory.

use anyhow::{Context, Result, bail};
use arkham_frame::shards::manifest::Manifest;
use arkham_frame::shards::package::embed_manifest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_shards::GuestShard;

/// Packages `guest` (its component with its manifest, renamed to `name`) into `dir`.
pub fn package(guest: &GuestShard, name: &str, dir: &Path) -> Result<PathBuf> {
    let mut manifest = Manifest::from_file(Path::new(guest.manifest))
        .with_context(|| format!("reading {}", guest.manifest))?;
    manifest.name = name.to_string();
    let raw =
        std::fs::read(guest.component).with_context(|| format!("reading {}", guest.component))?;
    let bytes = embed_manifest(&raw, &manifest).context("embedding the manifest")?;
    let path = dir.join(format!("{name}.shard.wasm"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Where the frame keeps its data and its compiled cache.
#[derive(Debug, Clone)]
pub struct Env {
    /// The `arkham` binary.
    pub bin: PathBuf,
    /// `ARKHAM_DATA_DIR`.
    pub data: PathBuf,
    /// `ARKHAM_CACHE_DIR`.
    pub cache: PathBuf,
}

impl Env {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .env("ARKHAM_DATA_DIR", &self.data)
            .env("ARKHAM_CACHE_DIR", &self.cache)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    /// `arkham ARGS…` with `envs` added; its stdout, or an error carrying its output.
    pub fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Result<String> {
        let output = self
            .command()
            .args(args)
            .envs(envs.iter().copied())
            .output()
            .with_context(|| format!("running arkham {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "arkham {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `arkham shard add FILE --yes`.
    pub fn install(&self, file: &Path) -> Result<()> {
        self.install_all(std::slice::from_ref(&file.to_path_buf()))
    }

    /// `arkham shard add FILE… --yes`: one process (one engine) for every file, so a thousand
    /// shards do not pay a thousand process and engine start-ups.
    pub fn install_all(&self, files: &[PathBuf]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let output = self
            .command()
            .args(["shard", "add"])
            .args(files)
            .arg("--yes")
            .output()
            .context("running arkham shard add")?;
        if !output.status.success() {
            let first = files[0].display();
            bail!(
                "arkham shard add {first}{} failed: {}{}",
                if files.len() > 1 {
                    format!(" (and {} more)", files.len() - 1)
                } else {
                    String::new()
                },
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts `arkham serve` on a free loopback port; returns once it printed its address.
    pub fn serve(&self) -> Result<Served> {
        let started = Instant::now();
        let mut child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting arkham serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // Its words say why (a config key it does not know, a missing engine…), on one
                // line for the report's tables; the quoted source lines (`|`) are left out.
                let mut said = String::new();
                let _ = stderr.read_to_string(&mut said);
                let said: Vec<&str> = said
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.contains('|'))
                    .collect();
                bail!("arkham serve exited before listening: {}", said.join(" "));
            }
        };
        let listening = started.elapsed();
        std::thread::spawn(move || for _ in lines {});
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let base = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_string();
        Ok(Served {
            child,
            base,
            started,
            listening,
        })
    }
}

/// A running `arkham serve`; killed on drop.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// When the process was spawned.
    pub started: Instant,
    /// Spawn to the "listening on" line.
    pub listening: Duration,
}

impl Served {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET path` until it answers 200; returns the time since the process was spawned.
    pub fn until_ok(&self, path: &str, limit: Duration) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if get_status(&self.base, path).ok() == Some(200) {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!("{}{path} did not answer 200 within {limit:?}", self.base);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET` over a fresh connection with `Connection: close`; the status code.
pub fn get_status(base: &str, path: &str) -> Result<u16> {
    let authority = base.strip_prefix("http://").unwrap_or(base);
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = std::str::from_utf8(&head[9..12])?;
    Ok(text.parse()?)
}

/// One request over a fresh connection, as HTTP/1.0 so the body ends with the connection (no
/// chunked decoding needed); the status code and the body.
pub fn request(base: &str, method: &str, path: &str) -> Result<(u16, String)> {
    request_with(base, method, path, "")
}

/// [`request`] with a JSON `body`.
pub fn request_with(base: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let authority = base.strip_prefix("http://").unwrap_or(base);
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: no complete response head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS line")
}
