//! `scripts/cluster` run as a user runs it (PostgreSQL, nats-server, N members, HAProxy in front),
//! for the cluster test and the cluster benchmark alike.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `scripts/cluster`; stopped, with everything it started, when dropped.
pub struct Script {
    child: Child,
    /// The balancer's port; member `n` listens on `port + n`.
    pub port: u16,
}

/// What the script needs to start.
pub struct Start<'a> {
    /// The `arkham` binary the members run (`$ARKHAM_BIN`).
    pub arkham: &'a Path,
    /// Its state folder (`$ARKHAM_CLUSTER_DIR`).
    pub dir: &'a Path,
    /// The packaged packets component it publishes (`$ARKHAM_CLUSTER_SHARD`).
    pub shard: &'a Path,
    /// How many members (1 to 3).
    pub members: u32,
}

impl Script {
    /// Starts the script on free ports and waits until it says everything answers; `Err` with
    /// what it printed on stderr when it stops before.
    pub fn start(start: &Start<'_>) -> Result<Self, String> {
        let port = free_ports().ok_or("no six free consecutive loopback ports")?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster");
        let mut child = Command::new(script)
            .args(["--port", &port.to_string()])
            .args(["--members", &start.members.to_string()])
            .env("ARKHAM_BIN", start.arkham)
            .env("ARKHAM_CLUSTER_DIR", start.dir)
            .env("ARKHAM_CLUSTER_SHARD", start.shard)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {script}: {e}"))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("scripts/cluster's output is not piped".to_string());
        };
        let errors = Arc::new(Mutex::new(String::new()));
        let kept = errors.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut errors) = kept.lock() {
                    errors.push_str(&line);
                    errors.push('\n');
                }
            }
        });
        // Read to the end, not just to its line: the script prints more after it, and a closed
        // pipe would stop it (SIGPIPE).
        let (tell, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("frame(s) behind") {
                    let _ = tell.send(());
                }
            }
        });
        let script = Script { child, port };
        if told.recv().is_ok() {
            return Ok(script);
        }
        let said = errors.lock().map(|e| e.clone()).unwrap_or_default();
        Err(format!(
            "scripts/cluster stopped before its members answered:\n{said}"
        ))
    }

    /// `http://127.0.0.1:PORT`, the balancer.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address of member `n` (1-based).
    pub fn member(&self, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.port + n)
    }

    /// Kills member `n` with SIGKILL, as a crash would (the script's supervisor restarts it).
    pub fn kill_member(&self, n: u16) -> Result<(), String> {
        let pattern = format!("serve --listen 127.0.0.1:{} ", self.port + n);
        let killed = Command::new("pkill")
            .args(["-KILL", "-f", &pattern])
            .status()
            .map_err(|e| format!("pkill: {e}"))?;
        if killed.success() {
            Ok(())
        } else {
            Err(format!("no member process matched `{pattern}`"))
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // SIGTERM: the script's trap stops the members, HAProxy, NATS and PostgreSQL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        // Its PostgreSQL cluster is kept between runs of the script; not between these.
        let _ = std::fs::remove_dir_all(format!("/tmp/arkham-cluster-pg-{}", self.port));
    }
}

/// A base port with it and the next five free (the balancer, three members, NATS, PostgreSQL).
fn free_ports() -> Option<u16> {
    (41000..49000)
        .step_by(23)
        .find(|&base| (0..6).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
}
