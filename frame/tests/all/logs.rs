//! `arkham logs`: a running shard's own lines, asked of the frame through its admin API.

use crate::harness::{Frame, arkham, arkham_bin, cache_dir, data_dir, eventually, install};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use test_shards::LEGACY;

#[tokio::test(flavor = "multi_thread")]
async fn logs_shows_what_a_shard_wrote_and_follows_it() {
    let data = data_dir("");
    install(data.path(), &[&LEGACY]);
    let frame = Frame::start(data.path());
    // The legacy fixture logs every request it serves at `info`.
    let (status, _) = frame.call("GET", "/api/legacy/notes/first", None).await;
    assert_eq!(status, 404);
    let (ok, out, err) = arkham(data.path(), &["logs", "legacy"]);
    assert!(ok, "{err}");
    assert!(out.contains(" info  GET /notes/first"), "{out}");
    let (ok, out, err) = arkham(data.path(), &["logs", "legacy", "--json"]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], "info", "{line}");
    assert_eq!(line["stream"], "log", "{line}");
    assert_eq!(line["message"], "GET /notes/first", "{line}");

    // --follow prints what comes after, as it comes.
    let mut follow = Command::new(arkham_bin())
        .args(["logs", "legacy", "--follow"])
        .env("ARKHAM_DATA_DIR", data.path())
        .env("ARKHAM_CACHE_DIR", cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let seen = std::sync::Mutex::new(Vec::new());
    let mut asked = false;
    eventually("--follow prints a line written after it started", || {
        let first = !asked;
        asked = true;
        let frame = &frame;
        let seen = &seen;
        let lines_rx = &lines_rx;
        async move {
            if first {
                frame.call("GET", "/api/legacy/notes/second", None).await;
            }
            let mut seen = seen.lock().unwrap();
            seen.extend(lines_rx.try_iter());
            seen.iter().any(|l| l.contains("GET /notes/second"))
        }
    })
    .await;
    let _ = follow.kill();
    let _ = follow.wait();

    let (ok, _, err) = arkham(data.path(), &["logs", "nosuch"]);
    assert!(!ok && err.contains("no shard named `nosuch`"), "{err}");
    frame.stop();
    let (ok, _, err) = arkham(data.path(), &["logs", "legacy"]);
    assert!(!ok && err.contains("no frame is running"), "{err}");
}
