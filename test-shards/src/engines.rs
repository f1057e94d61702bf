//! Throw-away PostgreSQL and NATS servers for tests, on loopback, in temporary folders.
//!
//! Each server runs under a small `sh` watchdog that stops it when the test process goes away,
//! however it ends (a panic, `kill -9`, the harness's `exit`), so no run leaves servers behind.
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user
//! the Debian package creates, and is started through `runuser`.
//!
//! When a server's program is missing, [`Postgres::shared`] and [`Nats::start`] return `None`
//! so the test can be skipped — except under `CI=true`, where they panic: CI must run every
//! backend (`scripts/setup --test` installs them).
//!
//! ```no_run
//! if let Some(nats) = test_shards::engines::Nats::start() {
//!     println!("{}", nats.url());
//! }
//! ```

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where Debian puts PostgreSQL's programs (not on `PATH`), newest major version first.
fn pg_bin_dirs() -> Vec<String> {
    let mut dirs: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin").display().to_string()))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, d)| d).collect()
}

/// How long a server may take to accept connections.
const READY: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None`, or a panic under `CI=true`, when `program` is not installed.
fn unavailable<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is needed by this test under CI=true; run `scripts/setup --test`");
    }
    eprintln!("skipping: {what} is not installed (`scripts/setup --test` installs it)");
    None
}

fn find(program: &str, extra: &[String]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The nats-server to run: the one `scripts/setup` pins (Debian's 2.9 loses acknowledged
/// events when it restarts under interest retention), else one on PATH.
pub fn nats_server() -> Option<PathBuf> {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/nats-venv/bin/nats-server");
    if pinned.is_file() {
        return Some(pinned);
    }
    find("nats-server", &[])
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("its address").port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < READY {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}); its log is next to its data");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within {READY:?}");
}

fn is_root() -> bool {
    // `id -u` rather than libc: this crate has no dependencies.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs `argv` under a watchdog that runs `stop` (a shell command; `$child` is the server's
/// pid) once the test process (its parent) is gone or the watchdog gets SIGTERM, waits for the
/// server to end, then removes `cleanup` if given. The server's output goes to `log`: an
/// inherited pipe would keep the test run's own output open for as long as the server lives.
fn watched(
    argv: &[String],
    stop: &str,
    cleanup: Option<&Path>,
    as_postgres: bool,
    log: &Path,
) -> Child {
    // The folder reaches the script in the environment, so no path needs quoting inside it.
    let remove = if cleanup.is_some() {
        "rm -rf \"$WATCHED_CLEANUP\""
    } else {
        ":"
    };
    let script = format!(
        "\"$@\" & child=$!; \
         trap '{stop}; wait $child; {remove}; exit' TERM INT; \
         while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done; \
         {stop}; wait $child; {remove}",
        std::process::id()
    );
    // Appended to: a restarted server's log follows its earlier run's.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("creating the server's log");
    let err = out.try_clone().expect("the server's log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("watchdog");
    if let Some(dir) = cleanup {
        cmd.env("WATCHED_CLEANUP", dir);
    }
    if as_postgres {
        cmd.args(["runuser", "-u", "postgres", "--"]);
    }
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    cmd.spawn().expect("starting a server under its watchdog")
}

/// Stops a watched server (SIGTERM to the watchdog, which passes the server its own signal) and
/// waits for it, so its port and files are free afterwards.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A PostgreSQL cluster for tests: one per test process, shared; each test takes its own
/// database with [`Postgres::database`].
pub struct Postgres {
    port: u16,
    password: String,
    _dir: PathBuf,
    /// The server under its watchdog; `None` while a private cluster is stopped.
    _child: std::sync::Mutex<Option<Child>>,
    /// A private cluster's way to start its server again, and the watchdog that removes its
    /// folder once the test process is gone (the server's own watchdog cannot: it ends at
    /// every stop).
    restart: Option<Restart>,
}

/// What [`Postgres::start_server`] needs, and the folder's own watchdog.
struct Restart {
    argv: Vec<String>,
    stop: String,
    root: bool,
    cleanup: std::sync::Mutex<Child>,
}

/// The superuser tests connect as (the frame's own connection).
pub const PG_SUPERUSER: &str = "arkham_admin";

impl Postgres {
    /// The process's cluster, started at the first call; `None` when PostgreSQL is missing
    /// (a panic under `CI=true`).
    pub fn shared() -> Option<&'static Postgres> {
        static CLUSTER: OnceLock<Option<Postgres>> = OnceLock::new();
        CLUSTER.get_or_init(|| Self::start(false, false)).as_ref()
    }

    /// A cluster of the caller's own, stopped when dropped; with `durable`, it syncs its
    /// writes to disk as a production server does (benchmarks compare like with like).
    pub fn start_owned(durable: bool) -> Option<Postgres> {
        Self::start(durable, false)
    }

    /// A cluster of the caller's own that it may stop and start again
    /// ([`stop_server`](Self::stop_server), [`start_server`](Self::start_server)) on the same
    /// port and data, as a test of what survives a database restart must; the shared one must
    /// not be, other tests use it meanwhile. Removed when dropped, or by its watchdog when the
    /// test process ends otherwise.
    pub fn private() -> Option<Postgres> {
        Self::start(false, true)
    }

    fn start(durable: bool, restartable: bool) -> Option<Postgres> {
        let Some(initdb) = find("initdb", &pg_bin_dirs()) else {
            return unavailable("PostgreSQL (initdb)");
        };
        let postgres = find("postgres", &pg_bin_dirs()).expect("postgres next to initdb");
        let root = is_root();
        // A folder the `postgres` user can reach: /tmp itself is world-writable and sticky.
        let dir =
            std::env::temp_dir().join(format!("arkham-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("creating the cluster folder");
        let password = format!("pw{:x}{}", std::process::id(), free_port());
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, &password).expect("writing the password file");
        let data = dir.join("data");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let mut init = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&initdb);
            c
        } else {
            Command::new(&initdb)
        };
        let out = init
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_SUPERUSER, "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let argv: Vec<String> = vec![
            postgres.display().to_string(),
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            dir.display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            // Throw-away data: durability of the cluster itself is not what tests measure.
            "-c".into(),
            format!("fsync={}", if durable { "on" } else { "off" }),
            "-c".into(),
            "max_connections=400".into(),
        ];
        // SIGINT to the postmaster (not to `runuser`, which does not pass it on): PostgreSQL's
        // fast shutdown.
        let stop = format!(
            "kill -INT $(head -n1 {}/postmaster.pid 2>/dev/null) 2>/dev/null",
            data.display()
        );
        if restartable {
            // The server's watchdog ends with each stop, so the folder has a watchdog of its
            // own: a `sleep` that outlives any test, whose stop waits (a bounded while) for
            // the postmaster to be gone before the folder is removed.
            let forever: Vec<String> = vec!["sleep".into(), "2147483647".into()];
            let gone = format!(
                "kill -TERM $child 2>/dev/null; n=0; \
                 while [ $n -lt 120 ] && kill -0 $(head -n1 {}/postmaster.pid 2>/dev/null) 2>/dev/null; \
                 do sleep 0.25; n=$((n+1)); done",
                data.display()
            );
            let cleanup = watched(&forever, &gone, Some(&dir), false, &dir.join("cleanup.log"));
            let postgres = Postgres {
                port,
                password,
                _dir: dir,
                _child: std::sync::Mutex::new(None),
                restart: Some(Restart {
                    argv,
                    stop,
                    root,
                    cleanup: std::sync::Mutex::new(cleanup),
                }),
            };
            postgres.start_server();
            return Some(postgres);
        }
        // The process's shared cluster lives in a static, which is never dropped: its folder
        // (a few hundred MB) goes with the server, or every test run would leave one behind.
        let mut child = watched(&argv, &stop, Some(&dir), root, &dir.join("postgres.log"));
        wait_for_port(port, &mut child, "postgres");
        Some(Postgres {
            port,
            password,
            _dir: dir,
            _child: std::sync::Mutex::new(Some(child)),
            restart: None,
        })
    }

    /// Stops a [`private`](Self::private) cluster's server with a fast shutdown (open
    /// transactions roll back, clients are disconnected) and waits for it to end; its data
    /// stays.
    pub fn stop_server(&self) {
        assert!(self.restart.is_some(), "only a private cluster is stopped");
        let mut child = self._child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            stop(&mut child);
        }
    }

    /// Starts a [`private`](Self::private) cluster's server (again) on its port and data, and
    /// waits until it accepts connections.
    pub fn start_server(&self) {
        let restart = self
            .restart
            .as_ref()
            .expect("only a private cluster is started again");
        let mut child = self._child.lock().unwrap_or_else(|e| e.into_inner());
        assert!(child.is_none(), "the server is running");
        let log = self._dir.join("postgres.log");
        let mut server = watched(&restart.argv, &restart.stop, None, restart.root, &log);
        wait_for_port(self.port, &mut server, "postgres");
        *child = Some(server);
    }

    /// The cluster's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL connecting as the superuser to `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates a fresh database for one test and returns its superuser URL. Names are unique
    /// within the process (the cluster is the process's own).
    pub fn database(&self, label: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t{}_{label}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(&name)
    }

    /// Runs `sql` with `psql` as the superuser on `database`, panicking on failure; returns
    /// its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let psql = find("psql", &pg_bin_dirs()).expect("psql");
        let out = Command::new(psql)
            .env("PGPASSWORD", &self.password)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", PG_SUPERUSER, "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let child = self._child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = child.as_mut() {
            stop(child);
        }
        if let Some(restart) = &mut self.restart {
            stop(restart.cleanup.get_mut().unwrap_or_else(|e| e.into_inner()));
        }
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A NATS server with JetStream for one test, stopped when dropped. Restartable on the same
/// port and store folder, to test what survives a restart of the engine.
pub struct Nats {
    port: u16,
    dir: PathBuf,
    program: PathBuf,
    child: Option<Child>,
}

impl Nats {
    /// Starts a server with JetStream on a free loopback port; `None` when `nats-server` is
    /// missing (a panic under `CI=true`). The one `scripts/setup` pins in `.tools/nats-venv`
    /// comes first, then one on PATH.
    pub fn start() -> Option<Nats> {
        let Some(program) = nats_server() else {
            return unavailable("nats-server");
        };
        let dir = std::env::temp_dir().join(format!(
            "arkham-nats-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("creating the store folder");
        let mut nats = Nats {
            port: free_port(),
            dir,
            program,
            child: None,
        };
        nats.run();
        Some(nats)
    }

    fn run(&mut self) {
        let argv: Vec<String> = vec![
            self.program.display().to_string(),
            "-js".into(),
            "-sd".into(),
            self.dir.display().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        let log = self.dir.join("nats-server.log");
        // No cleanup: a restart reuses the store folder; `Drop` removes it.
        let mut child = watched(&argv, "kill -TERM $child 2>/dev/null", None, false, &log);
        wait_for_port(self.port, &mut child, "nats-server");
        self.child = Some(child);
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The folder JetStream keeps its data in.
    pub fn store_dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (its data stays) and starts it again on the same port.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
        self.run();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
