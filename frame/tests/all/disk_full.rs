//! A real disk full: the frame's data dir on a 40 MiB tmpfs in a private mount namespace
//! (`unshare -m`, root only). Filled up, packets' creates fail cleanly and the frame stays up;
//! freed, creates succeed again without a restart, and everything a client was told 201 for is
//! stored and its event delivered.

use crate::harness::{Frame, data_dir, eventually, install};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use test_shards::{HOSTILE_EVENTS, PACKETS, RECORDER};

/// Retries that outlast the full disk: the recorder's own writes fail while it is full.
const CONFIG: &str = "
[events]
retry_base_ms = 20
retry_max_ms = 200
max_attempts = 100000
";

const TEST: &str = "disk_full::writes_fail_cleanly_and_recover_without_a_restart";

/// Whether the test can run here: root (for the mount namespace) and `unshare`. Outside CI it
/// skips with a notice; under `CI=true` it must run.
fn can_run() -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        });
    let root = uid.as_deref() == Some("0");
    let unshare = crate::harness::have("unshare");
    if root && unshare {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{TEST} needs root and `unshare` (util-linux) for its tmpfs, and CI=true"
    );
    eprintln!("SKIPPED {TEST}: needs root and `unshare` to mount a private tmpfs");
    false
}

/// `arkham serve` on a copy of `data` in a fresh tmpfs at `mount`, in its own mount namespace.
struct Confined {
    frame: Frame,
    /// `mount` as the frame sees it, reached from outside its namespace through /proc.
    inside: PathBuf,
}

impl std::ops::Deref for Confined {
    type Target = Frame;

    fn deref(&self) -> &Frame {
        &self.frame
    }
}

impl std::ops::DerefMut for Confined {
    fn deref_mut(&mut self) -> &mut Frame {
        &mut self.frame
    }
}

impl Confined {
    fn start(data: &Path, mount: &Path) -> Self {
        // The harness appends `serve --listen …`: what follows the binary's path.
        let script = "mount -t tmpfs -o size=40m tmpfs \"$1\" && cp -a \"$2\"/. \"$1\"/ && \
                      bin=\"$3\" && shift 3 && exec \"$bin\" \"$@\"";
        let mut command = Command::new("unshare");
        command
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(mount)
            .arg(data)
            .arg(crate::harness::arkham_bin());
        let frame = Frame::start_command(mount, command);
        // unshare and sh exec: the process is the frame itself.
        let inside = PathBuf::from(format!("/proc/{}/root", frame.pid()))
            .join(mount.strip_prefix("/").unwrap_or(mount));
        Self { frame, inside }
    }

    /// Fills the tmpfs: writes a file until the file system refuses more.
    fn fill(&self) -> u64 {
        let path = self.inside.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let mut written = 0u64;
        for size in [1 << 20, 4 << 10, 512] {
            let chunk = vec![0u8; size];
            // At most 40 MiB of 1 MiB chunks, then the crumbs.
            for _ in 0..(41 << 20) / size {
                match file.write(&chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written += n as u64,
                }
            }
        }
        let _ = file.sync_all();
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.inside.join("filler")).unwrap();
    }

    fn stop(self) {
        self.frame.stop();
    }
}

async fn create(frame: &Confined, name: &str) -> (u16, serde_json::Value) {
    frame
        .call("POST", "/api/packets/", Some(json!({ "name": name })))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_fail_cleanly_and_recover_without_a_restart() {
    if !can_run() {
        return;
    }
    let data = data_dir(CONFIG);
    install(data.path(), &[&PACKETS, &RECORDER, &HOSTILE_EVENTS]);
    let mount = tempfile::tempdir().unwrap();
    let mut frame = Confined::start(data.path(), mount.path());
    // What a client was told 201 for: (id, name).
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let (status, body) = create(&frame, "before").await;
    assert_eq!(status, 201, "{body}\n{}", frame.log());
    acknowledged.push((body["id"].as_str().unwrap().to_string(), "before".into()));

    let filled = frame.fill();
    assert!(filled > 0, "nothing could be written to the tmpfs");

    // Full: creates fail with a 5xx and an error body, or succeed for real (checked below).
    let mut failures = 0;
    for i in 0..60 {
        let name = format!("while full {i} {}", "n".repeat(180));
        let (status, body) = create(&frame, &name).await;
        match status {
            201 => acknowledged.push((body["id"].as_str().unwrap().to_string(), name)),
            500..=599 => {
                assert!(
                    body["error"]["code"].is_string(),
                    "a {status} without an error body: {body}"
                );
                failures += 1;
                eprintln!("disk full: create answered {status}: {body}");
                if failures >= 5 {
                    break;
                }
            }
            _ => panic!("create while full answered {status}: {body}"),
        }
    }
    assert!(
        failures > 0,
        "the disk never looked full to packets ({} creates acknowledged)\n{}",
        acknowledged.len(),
        frame.log()
    );
    // Events only: hostile-events publishes without writing its database, so the frame's own
    // append to frame.db meets the full disk, and the writer must say so.
    let (status, body) = frame
        .call("POST", "/api/hostile-events/flood?n=50&bytes=60000", None)
        .await;
    // A 2xx waits for the request's events to be durable: they were not, so no 2xx.
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("events_not_logged")),
        "{body}"
    );
    eventually("the event log reported the failed append", || async {
        frame.log().contains("event log append")
    })
    .await;
    eprintln!(
        "disk full: filled {filled} bytes; {failures} creates failed, {} acknowledged",
        acknowledged.len()
    );
    assert!(frame.alive(), "the frame died:\n{}", frame.log());
    // Reads still work while full.
    let (id, name) = &acknowledged[0];
    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (200, Some(name.as_str())),
        "{got}"
    );

    // Space is back: without a restart, creates succeed again.
    frame.free();
    let mut recovered = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while recovered.is_none() && Instant::now() < deadline {
        let (status, body) = create(&frame, "after").await;
        if status == 201 {
            recovered = Some(body["id"].as_str().unwrap().to_string());
        } else {
            assert!(status >= 500, "{status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "packets did not recover after the space was freed:\n{}",
            frame.log()
        )
    });
    acknowledged.push((recovered, "after".into()));
    for i in 0..3 {
        let name = format!("after {i}");
        let (status, body) = create(&frame, &name).await;
        assert_eq!(status, 201, "{body}\n{}", frame.log());
        acknowledged.push((body["id"].as_str().unwrap().to_string(), name));
    }

    // Everything acknowledged is stored, and its event logged and delivered to the recorder.
    for (id, name) in &acknowledged {
        let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
        assert_eq!(
            (status, got["name"].as_str()),
            (200, Some(name.as_str())),
            "packet {id} was acknowledged but is not stored: {got}"
        );
    }
    eventually(
        "every acknowledged create's event reached the recorder",
        || async {
            let (status, body) = frame.call("GET", "/api/recorder/events", None).await;
            if status != 200 {
                return false;
            }
            let events = body["events"].as_array().cloned().unwrap_or_default();
            acknowledged.iter().all(|(id, _)| {
                events.iter().any(|e| {
                    e["name"] == "packets.packet.created"
                        && e["payload"]
                            .as_str()
                            .is_some_and(|p| p.contains(id.as_str()))
                })
            })
        },
    )
    .await;
    assert!(frame.alive());
    frame.stop();
}
