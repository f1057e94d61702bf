//! `scripts/cluster` as a user runs it (issue 16's "done when"): PostgreSQL, nats-server, three
//! members and HAProxy in front. A packet created through the balancer is read through every
//! member, and a member killed with SIGKILL under a load of creates through the balancer loses
//! no acknowledged create; the script's supervisor brings it back.

use crate::harness::{arkham_bin, packaged, require};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_shards::PACKETS;
use test_shards::cluster::{Script, Start};

/// The script on the run's binary and packets, once the engines it needs are here.
fn start(test: &str, dir: &std::path::Path) -> Option<Script> {
    if !require("haproxy", test) {
        return None;
    }
    // The engines' harness finds PostgreSQL's binaries (not on PATH) and the pinned
    // nats-server the script runs, and fails under CI=true when one is missing.
    test_shards::engines::Postgres::shared()?;
    test_shards::engines::Nats::start()?;
    let shard = packaged(&PACKETS);
    let start = Start {
        arkham: std::path::Path::new(arkham_bin()),
        dir,
        shard: &shard,
        members: 3,
    };
    Some(Script::start(&start).unwrap_or_else(|e| panic!("{e}")))
}

async fn post(client: &reqwest::Client, base: &str, name: &str) -> Result<(u16, Value), String> {
    let response = client
        .post(format!("{base}/api/packets/"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    match client.get(format!("{base}{path}")).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_script_serves_through_its_balancer_and_survives_a_killed_member() {
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = start("scripts/cluster", dir.path()) else {
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let balancer = script.base();
    let member = |n: u16| script.member(n);

    // The README's `curl -X POST localhost:PORT/api/packets/ -d '{"name":"x"}'`, then the packet
    // read through each member.
    let (status, created) = post(&client, &balancer, "x").await.unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    for n in 1..=3 {
        // A member may still be starting when the balancer first answers.
        let asked = Instant::now();
        loop {
            let (status, got) = get(&client, &member(n), &format!("/api/packets/{id}")).await;
            if status == 200 {
                assert_eq!(got["name"], "x", "member {n}: {got}");
                break;
            }
            assert!(
                status == 0 && asked.elapsed() < Duration::from_secs(60),
                "member {n}: {status} {got}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Creates through the balancer from four clients; member 2 killed after a second.
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (client, balancer) = (client.clone(), balancer.clone());
        let (created, refused) = (created.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(5) {
                i += 1;
                match post(&client, &balancer, &format!("c{c}-{i}")).await {
                    Ok((201, body)) => created
                        .lock()
                        .unwrap()
                        .push(body["id"].as_str().unwrap().to_string()),
                    Ok((status, body)) => refused.lock().unwrap().push((status, body.to_string())),
                    Err(e) => refused.lock().unwrap().push((0, e)),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    script.kill_member(2).unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let created = created.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert!(
        created.len() > 20,
        "only {} creates answered 201",
        created.len()
    );
    // Only a create in flight on the killed member may fail (HAProxy does not retry a POST
    // that reached a member): the balancer's 502/503, or the client's connection cut (0),
    // never a member's own error.
    assert!(
        refused.len() <= 8 && refused.iter().all(|(s, _)| matches!(s, 0 | 502 | 503)),
        "{} refused of {}: {refused:?}",
        refused.len(),
        created.len() + refused.len()
    );

    // The killed member is restarted by the script and serves again by itself.
    let back = Instant::now();
    while get(&client, &member(2), "/api/packets/").await.0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "member 2 did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every acknowledged create is readable through every member, the restarted one included.
    for n in 1..=3 {
        for id in &created {
            let (status, got) = get(&client, &member(n), &format!("/api/packets/{id}")).await;
            assert_eq!(status, 200, "member {n}, packet {id}: {got}");
        }
    }
    drop(script);
}
