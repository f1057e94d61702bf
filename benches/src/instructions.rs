//! (1b) Instructions per request, counted by valgrind's callgrind: a figure that a shared
//! machine's noise does not move, where requests/s and CPU time drift by ±10 %. This VM exposes
//! no hardware counters (`perf stat -e instructions` reads `<not supported>`), so the count is
//! valgrind's: user-space instructions of every thread of the server process, kernel time
//! excluded.
//!
//! Each server runs under `valgrind --tool=callgrind` and gets `WARM` requests, then its counters
//! are zeroed (`callgrind_control -z`), `REQUESTS` requests are sent one after another on one
//! keep-alive connection, and the counters are dumped (`callgrind_control -d`). The frame's pool
//! is shrunk to a few slots (`[limits] instances_total`): valgrind cannot reserve the address
//! space of the default pool, and a slot's size does not change what a request executes.

use crate::Options;
use crate::scenarios::{frame_env, free_port};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests before the count starts (caches, pool slots and lazy set-up warm).
const WARM: u64 = 200;
/// Requests counted.
const REQUESTS: u64 = 1000;

/// One server's count.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionRow {
    /// What served.
    pub target: String,
    /// User-space instructions of the server process per request.
    pub per_request: Option<f64>,
    /// Why it is missing.
    pub note: Option<String>,
}

/// The section's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Instructions {
    /// One row per server.
    pub rows: Vec<InstructionRow>,
    /// How each was counted.
    pub command: String,
}

impl Instructions {
    /// The count of `target`, if measured.
    pub fn of(&self, target: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.target == target)
            .and_then(|r| r.per_request)
    }
}

/// The command that starts a server on a port.
type ServerCommand<'a> = dyn Fn(u16) -> Result<Command> + 'a;

/// A server under callgrind; killed on drop.
struct Counted {
    child: Child,
    out: PathBuf,
    authority: String,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts every target: native axum, the frame with a fresh instance per request, with instance
/// reuse, and the frame serving the `wasi:http` component.
pub fn run(options: &Options, scratch: &Path) -> Result<Instructions> {
    for tool in ["valgrind", "callgrind_control"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("`{tool}` is not installed (scripts/bench installs valgrind)");
        }
    }
    let dir = scratch.join("instructions");
    let env = frame_env(
        options,
        scratch,
        "instructions",
        &[
            (&test_shards::MINIMAL, "minimal".into()),
            (&test_shards::MINIMAL, "reuse".into()),
            (&test_shards::MINIMAL_RAW, "raw".into()),
        ],
    )?;
    // Valgrind runs the frame ~50× slower: deadlines that would cut a request are raised.
    std::fs::write(
        env.data.join("arkham.toml"),
        "[limits]\ninstances_total = 4\ninstances_per_shard = 4\n\
         instances_reserved_per_shard = 0\nrequest_timeout_ms = 120000\n\
         [limits.shards.reuse]\ninstance_reuse = 100000\n",
    )?;
    let mut rows = Vec::new();
    let native = |port: u16| {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--serve-native-minimal", &port.to_string()]);
        Ok(command)
    };
    let frame = |port: u16| -> Result<Command> {
        let mut command = Command::new(&env.bin);
        command
            .env("ARKHAM_DATA_DIR", &env.data)
            .env("ARKHAM_CACHE_DIR", dir.join("cache"))
            .env("RUST_LOG", "warn")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        Ok(command)
    };
    let targets: [(&str, &str, &ServerCommand<'_>); 4] = [
        ("native axum", "/", &native),
        (
            "frame, fresh instance (http-handler)",
            "/api/minimal/",
            &frame,
        ),
        (
            "frame, instance reuse (http-handler)",
            "/api/reuse/",
            &frame,
        ),
        ("frame, fresh instance (wasi:http)", "/api/raw/", &frame),
    ];
    for (target, path, command) in targets {
        eprintln!("[bench]   callgrind: {target}");
        let counted = free_port().and_then(|port| {
            let server = start(command(port)?, &dir, port)?;
            count(&server, path)
        });
        rows.push(match counted {
            Ok(per_request) => InstructionRow {
                target: target.into(),
                per_request: Some(per_request),
                note: None,
            },
            Err(e) => InstructionRow {
                target: target.into(),
                per_request: None,
                note: Some(format!("{e:#}")),
            },
        });
    }
    Ok(Instructions {
        rows,
        command: format!(
            "valgrind --tool=callgrind --dump-instr=no SERVER; {WARM} GETs; callgrind_control -z; \
             {REQUESTS} GETs on one keep-alive connection; callgrind_control -d; Ir of the dump / \
             {REQUESTS}"
        ),
    })
}

/// Starts `command` under callgrind and waits until it serves on `port`.
fn start(command: Command, dir: &Path, port: u16) -> Result<Counted> {
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("callgrind.{port}"));
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args(["--dump-instr=no", "--collect-jumps=no"])
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = valgrind.spawn().context("starting valgrind")?;
    let mut server = Counted {
        child,
        out,
        authority: format!("127.0.0.1:{port}"),
    };
    // Under valgrind the frame compiles its components anew (valgrind's CPU lacks features the
    // host's compiled cache was built for): allow minutes.
    let deadline = Instant::now() + Duration::from_secs(600);
    while TcpStream::connect(&server.authority).is_err() {
        if let Some(status) = server.child.try_wait()? {
            bail!("the server under valgrind exited ({status}) before it listened");
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not listen on {} within 600 s",
                server.authority
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(server)
}

/// Warms `server` up, then counts [`REQUESTS`] `GET path`s; instructions per request.
fn count(server: &Counted, path: &str) -> Result<f64> {
    let mut client = Client::connect(&server.authority)?;
    for _ in 0..WARM {
        client.get(path)?;
    }
    control(server, "-z")?;
    for _ in 0..REQUESTS {
        client.get(path)?;
    }
    control(server, "-d")?;
    let dump = PathBuf::from(format!("{}.1", server.out.display()));
    let text = std::fs::read_to_string(&dump)
        .with_context(|| format!("reading the callgrind dump {}", dump.display()))?;
    let total: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no instruction total in {}", dump.display()))?;
    Ok(total / REQUESTS as f64)
}

fn control(server: &Counted, flag: &str) -> Result<()> {
    let status = Command::new("callgrind_control")
        .arg(flag)
        .arg(server.child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {flag} failed ({status})");
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 connection that sends `GET`s and reads whole responses.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    authority: String,
}

impl Client {
    fn connect(authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            authority: authority.to_string(),
        })
    }

    /// One `GET path`, written in one piece (as a client's single segment); fails unless it
    /// answers 200. Reads a `content-length` or a chunked body whole.
    fn get(&mut self, path: &str) -> Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.authority);
        self.writer.write_all(request.as_bytes())?;
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("GET {path} answered {:?}", status.trim());
        }
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line(path)?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<u64>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        match (length, chunked) {
            (Some(length), false) => self.skip(length),
            (_, true) => loop {
                let size = self.line(path)?;
                let size = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .with_context(|| format!("GET {path}: bad chunk size {size:?}"))?;
                // The chunk and its CRLF; the last chunk is followed by an empty trailer line.
                self.skip(size)?;
                self.line(path)?;
                if size == 0 {
                    return Ok(());
                }
            },
            (None, false) => bail!("GET {path}: neither content-length nor chunked"),
        }
    }

    /// One line of the response, without its CRLF.
    fn line(&mut self, path: &str) -> Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("GET {path}: the connection closed mid-response");
        }
        Ok(line.trim_end().to_string())
    }

    fn skip(&mut self, bytes: u64) -> Result<()> {
        let copied = std::io::copy(&mut (&mut self.reader).take(bytes), &mut std::io::sink())?;
        if copied < bytes {
            bail!("the connection closed mid-body");
        }
        Ok(())
    }
}
