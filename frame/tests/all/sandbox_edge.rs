//! The HTTP edge under attack: idle-connection floods, stalled bodies, slowloris heads and
//! clients that stop reading, against a frame with small `[server]` limits. Each attack is cut
//! within its bound, the frame's descriptors and memory stay bounded and return, and packets
//! answers throughout.

use crate::harness::{Frame, data_dir, eventually, install, rss};
use serde_json::json;
use std::time::{Duration, Instant};
use test_shards::{ECHO, PACKETS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_CONNECTIONS: usize = 64;
const BUDGET: u64 = 32 << 20;

const CONFIG: &str = "
[server]
header_read_timeout_ms = 1000
body_read_timeout_ms = 2000
write_timeout_ms = 2000
max_connections = 64
max_buffered_body_bytes = 33554432
";

/// Descriptors the frame's own work may open beside the connections (databases, logs).
const FD_SLACK: usize = 12;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Whether process `pid` has a descriptor for the TCP connection whose other end is `client`
/// (found through `/proc/net/tcp`: the socket's inode, then the process's descriptors).
fn frame_holds_socket_to(pid: u32, client: std::net::SocketAddr) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let peer = format!(":{:04X}", client.port());
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // fields: sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode
            (fields.len() > 9 && fields[2].ends_with(&peer)).then(|| fields[9].to_string())
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes
                .iter()
                .any(|inode| target == format!("socket:[{inode}]"))
        })
    })
}

fn addr(frame: &Frame) -> String {
    frame.base.strip_prefix("http://").unwrap().to_string()
}

/// Creates and reads back a packet on fresh connections, each step within `bound`; returns how
/// long it took. Fresh connections: a pooled one may be one the frame just closed as idle.
async fn packets_answers_within(frame: &Frame, name: &str, bound: Duration) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(bound)
        .build()
        .unwrap();
    let start = Instant::now();
    let response = client
        .post(format!("{}/api/packets/", frame.base))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("packets did not answer within {bound:?}: {e}"));
    assert_eq!(response.status().as_u16(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let got: serde_json::Value = client
        .get(format!("{}/api/packets/{id}", frame.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("packets did not answer within {bound:?}: {e}"))
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], name, "{got}");
    start.elapsed()
}

/// Starts a frame with the small limits and packets (and echo) warmed up; returns it with its
/// settled descriptor count.
async fn start() -> (tempfile::TempDir, Frame, usize) {
    let data = data_dir(CONFIG);
    install(data.path(), &[&PACKETS, &ECHO]);
    let frame = Frame::start(data.path());
    for i in 0..3 {
        packets_answers_within(&frame, &format!("warm-{i}"), Duration::from_secs(10)).await;
    }
    // The warm-up's connections are closed by now (fresh connections, closed by the client);
    // wait until the count stops moving.
    let pid = frame.pid();
    let mut last = fd_count(pid);
    let mut baseline = None;
    eventually("the frame's descriptor count settles", || {
        let now = fd_count(pid);
        let settled = now == last;
        last = now;
        if settled {
            baseline = Some(now);
        }
        async move { settled }
    })
    .await;
    (data, frame, baseline.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_floods_hold_no_more_than_the_limit() {
    let (_data, frame, baseline) = start().await;
    let pid = frame.pid();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr(&frame)).await.unwrap());
    }
    let during = fd_count(pid);
    assert!(
        during <= baseline + MAX_CONNECTIONS + FD_SLACK,
        "{during} descriptors with 300 idle connections (baseline {baseline}, limit {MAX_CONNECTIONS})"
    );
    // Waiting clients are served once the frame cuts idle ones (1 s header timeout, 64 at a
    // time: about 5 rounds for 300).
    let took = packets_answers_within(&frame, "during idle flood", Duration::from_secs(15)).await;
    eprintln!(
        "idle flood: {during} descriptors (baseline {baseline}); packets answered in {took:?}"
    );
    assert!(took < Duration::from_secs(10), "packets took {took:?}");
    // While the attacker still holds every socket, the frame has closed its side of all of them.
    eventually("the frame closes idle connections on its own", || async {
        fd_count(pid) <= baseline + FD_SLACK / 2
    })
    .await;
    let mut buf = [0u8; 64];
    for stream in idle.iter_mut().take(20) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was not closed: {read:?}"
        );
    }
    drop(idle);
    eventually("descriptors return to the baseline", || async {
        fd_count(pid) <= baseline + FD_SLACK / 2
    })
    .await;
    packets_answers_within(&frame, "after idle flood", Duration::from_secs(5)).await;
    frame.stop();
}

/// What became of one stalled body.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16, String),
    /// The frame cut the connection before its answer could be read.
    Reset,
}

async fn stalled_body(address: String, sent: usize) -> (Outcome, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = "POST /api/packets/ HTTP/1.1\r\nHost: attacker\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n";
    let mut request = head.as_bytes().to_vec();
    request.resize(head.len() + sent, b' ');
    // A refusal may close the connection before all of it is written: read what came back.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "a stalled body was never answered or cut");
    let text = String::from_utf8_lossy(&response).into_owned();
    let outcome = match text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(status) => {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            Outcome::Status(status, body)
        }
        None => Outcome::Reset,
    };
    (outcome, start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_are_cut_and_buffer_within_the_budget() {
    let (_data, frame, _) = start().await;
    let pid = frame.pid();
    let baseline = rss(pid);
    // Half send a little and stall (408 at the body timeout); half send 1 MiB and stall, which
    // together pass the 32 MiB budget (503 `frame_busy` for those past it).
    let attackers: Vec<_> = (0..100)
        .map(|i| {
            let sent = if i % 2 == 0 { 64 << 10 } else { 1 << 20 };
            tokio::spawn(stalled_body(addr(&frame), sent))
        })
        .collect();
    let mut peak = baseline;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered_during = None;
    while attackers.iter().any(|a| !a.is_finished()) {
        assert!(Instant::now() < deadline, "stalled bodies were not cut");
        peak = peak.max(rss(pid));
        if answered_during.is_none() {
            answered_during = Some(
                packets_answers_within(&frame, "during stalled bodies", Duration::from_secs(15))
                    .await,
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut timeouts = 0;
    let mut busy = 0;
    for attacker in attackers {
        let (outcome, took) = attacker.await.unwrap();
        // Two rounds of the 2 s body timeout (64 connections at a time) plus slack.
        assert!(took < Duration::from_secs(15), "{outcome:?} after {took:?}");
        match outcome {
            Outcome::Status(408, body) => {
                assert!(body.contains("\"request_timeout\""), "{body}");
                timeouts += 1;
            }
            Outcome::Status(503, body) => {
                assert!(body.contains("\"frame_busy\""), "{body}");
                busy += 1;
            }
            Outcome::Reset => {}
            Outcome::Status(status, body) => panic!("a stalled body got {status}: {body}"),
        }
    }
    eprintln!(
        "stalled bodies: {timeouts} got 408, {busy} got 503; RSS {baseline} -> peak {peak}; packets answered in {:?}",
        answered_during.unwrap_or_default()
    );
    assert!(timeouts > 0 && busy > 0, "{timeouts} timeouts, {busy} busy");
    let slack = 64 << 20;
    assert!(
        peak < baseline + BUDGET + slack,
        "RSS went from {baseline} to {peak} (budget {BUDGET})"
    );
    let took = answered_during.unwrap();
    assert!(took < Duration::from_secs(10), "packets took {took:?}");
    packets_answers_within(&frame, "after stalled bodies", Duration::from_secs(5)).await;
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_heads_and_idle_keep_alive_are_cut_at_the_header_timeout() {
    let (_data, frame, _) = start().await;
    // Slowloris: one byte of the head every 500 ms.
    let mut stream = TcpStream::connect(addr(&frame)).await.unwrap();
    let start = Instant::now();
    let head = b"GET /api/frame/health HTTP/1.1\r\nHost: slow\r\n\r\n";
    let mut sent = 0;
    let mut buf = [0u8; 512];
    let cut = loop {
        assert!(sent < head.len(), "the whole slow head was accepted");
        if stream.write_all(&head[sent..=sent]).await.is_err() {
            break start.elapsed();
        }
        sent += 1;
        tokio::select! {
            read = stream.read(&mut buf) => {
                // Closed (or answered and closed): the head was cut.
                let _ = read;
                break start.elapsed();
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(3),
        "cut after {cut:?} and {sent} bytes"
    );
    packets_answers_within(&frame, "after slowloris", Duration::from_secs(5)).await;

    // Keep-alive: after a whole exchange, an idle connection is closed at the same timeout.
    let mut stream = TcpStream::connect(addr(&frame)).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut response = Vec::new();
    while !String::from_utf8_lossy(&response).contains("\"status\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        response.extend_from_slice(&buf[..n]);
    }
    let idle_since = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle keep-alive connection was not closed: {read:?}"
    );
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "idle connection closed after {idle:?}"
    );
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_loses_its_connection() {
    let (_data, frame, _) = start().await;
    let pid = frame.pid();
    let mut stream = TcpStream::connect(addr(&frame)).await.unwrap();
    stream
        .write_all(b"GET /api/echo/bytes/33554432 HTTP/1.1\r\nHost: reader\r\n\r\n")
        .await
        .unwrap();
    // The frame writes until the socket buffers fill, then waits for a reader that never comes.
    let client = stream.local_addr().unwrap();
    eventually("the frame serves the response", || async {
        frame_holds_socket_to(pid, client)
    })
    .await;
    packets_answers_within(&frame, "while a reader stalls", Duration::from_secs(5)).await;
    // After 2 s without progress the frame drops the connection, while the client still holds it.
    eventually("the stalled response's connection is closed", || async {
        !frame_holds_socket_to(pid, client)
    })
    .await;
    // What the client can still read is what the buffers held: the response was cut.
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received))
        .await
        .unwrap();
    let _ = read; // EOF or reset, whichever the kernel reports
    assert!(
        received.len() < 32 << 20,
        "the whole response arrived: {} bytes",
        received.len()
    );
    packets_answers_within(&frame, "after the stalled reader", Duration::from_secs(5)).await;
    frame.stop();
}
