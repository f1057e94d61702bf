//! Grants, the admin API and its token, and a running frame following installs and removals.

use crate::backends::Backends;
use crate::harness::{
    Frame, admin_token, arkham, data_dir, eventually, install, manifest_of, package_with, packaged,
};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use test_shards::{ECHO, TRAPPER};

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_the_token() {
    let data = data_dir("");
    let frame = Frame::start(data.path());
    let path = data.path().join("admin-token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let url = format!("{}/api/frame/admin/config", frame.base);
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let mut request = frame.client.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("admin-token"),
            "{body}"
        );
    }
    let response = frame
        .client
        .get(&url)
        .bearer_auth(admin_token(data.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let config: serde_json::Value = response.json().await.unwrap();
    assert_eq!(config["limits"]["request_timeout_ms"], 30000);
    // The public API needs no token.
    let (status, _) = frame.call("GET", "/api/frame/health", None).await;
    assert_eq!(status, 200);
    frame.stop();
}

async fn revoking_a_grant_takes_effect_on_the_next_request(backends: Backends) {
    let Some(data) = backends.data_dir("revoking_a_grant", "") else {
        return;
    };
    install(data.path(), &[&TRAPPER]);
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());
    let grants_url = format!("{}/api/frame/admin/shards/trapper/grants", frame.base);
    let blob = format!("{}/api/trapper/blob/k", frame.base);

    let current: serde_json::Value = frame
        .client
        .get(&grants_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        current["granted"]["services"]
            .to_string()
            .contains("storage"),
        "{current}"
    );
    assert_eq!(
        frame
            .client
            .put(&blob)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // Revoke storage (keep the rest).
    let response = frame
        .client
        .put(&grants_url)
        .bearer_auth(&token)
        .json(&json!({"services": ["events"], "publishes": ["trapper.thing.happened"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = frame.client.put(&blob).body("v").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // The 0.2.0 `denied` case (the trapper answers the error's code and message).
    let body = response.text().await.unwrap();
    assert!(
        body.contains("\"denied\"") && body.contains("not granted"),
        "{body}"
    );
    let (status, _) = frame
        .call(
            "POST",
            "/api/trapper/publish",
            Some(json!({"name": "trapper.thing.happened", "payload": {}})),
        )
        .await;
    assert_eq!(status, 200, "events stay granted");

    // A grant cannot exceed what the manifest requests.
    let response = frame
        .client
        .put(&grants_url)
        .bearer_auth(&token)
        .json(
            &json!({"services": ["storage", "database"], "publishes": ["packets.packet.created"]}),
        )
        .send()
        .await
        .unwrap();
    let granted: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        granted["granted"]["services"],
        json!(["storage"]),
        "{granted}"
    );
    assert_eq!(granted["granted"]["publishes"], json!([]), "{granted}");
    assert_eq!(
        frame
            .client
            .put(&blob)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // The grant survives a restart: it lives in grants.json.
    frame.stop();
    let frame = Frame::start(data.path());
    let (status, body) = frame
        .call(
            "POST",
            "/api/trapper/publish",
            Some(json!({"name": "trapper.thing.happened", "payload": {}})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_frame_follows_installs_and_removals() {
    let data = data_dir("");
    let frame = Frame::start(data.path());
    let (status, _) = frame.call("GET", "/api/echo/health", None).await;
    assert_eq!(status, 404);

    // Through the CLI, from another process.
    install(data.path(), &[&ECHO]);
    eventually("echo is served after `arkham shard add`", || async {
        frame.call("GET", "/api/echo/health", None).await.0 == 200
    })
    .await;
    let (ok, _, err) = arkham(data.path(), &["shard", "remove", "echo"]);
    assert!(ok, "{err}");
    eventually("echo is gone after `arkham shard remove`", || async {
        frame.call("GET", "/api/echo/health", None).await.0 == 404
    })
    .await;

    // Through the admin API: served as soon as the call returns.
    let bytes = std::fs::read(packaged(&TRAPPER)).unwrap();
    let response = frame
        .client
        .post(format!("{}/api/frame/admin/shards", frame.base))
        .bearer_auth(admin_token(data.path()))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap()
    );
    assert_eq!(frame.call("GET", "/api/trapper/ok", None).await.0, 200);
    let response = frame
        .client
        .delete(format!("{}/api/frame/admin/shards/trapper", frame.base))
        .bearer_auth(admin_token(data.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(frame.call("GET", "/api/trapper/ok", None).await.0, 404);
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_preapproval_updates_and_cli_revocation() {
    let work = tempfile::tempdir().unwrap();
    // Pre-approved in the frame config: a headless install needs no --yes.
    let data = data_dir(
        "[grants.trapper]\nservices = [\"storage\", \"events\"]\npublishes = [\"trapper.thing.happened\"]\n",
    );
    let trapper = packaged(&TRAPPER);
    let (ok, out, err) = arkham(data.path(), &["shard", "add", trapper.to_str().unwrap()]);
    assert!(ok, "{out}{err}");

    // An update that requests more than was granted stops and shows the difference.
    let other = data_dir("");
    let mut smaller = manifest_of(&TRAPPER);
    smaller.events.publishes.clear();
    let smaller_path = work.path().join("smaller.wasm");
    package_with(&TRAPPER, &smaller, &smaller_path);
    let (ok, _, err) = arkham(
        other.path(),
        &["shard", "add", smaller_path.to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = arkham(other.path(), &["shard", "add", trapper.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("requests more than it was granted"), "{err}");
    assert!(
        err.contains("+ publish trapper.thing.happened") && !err.contains("+ service"),
        "{err}"
    );
    let (ok, _, err) = arkham(
        other.path(),
        &["shard", "add", trapper.to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{err}");
    // Re-adding within the grant needs no consent.
    let (ok, _, err) = arkham(other.path(), &["shard", "add", trapper.to_str().unwrap()]);
    assert!(ok, "{err}");

    // `arkham shard grants` shows and revokes; a running frame applies it.
    let frame = Frame::start(data.path());
    let blob = format!("{}/api/trapper/blob/k", frame.base);
    assert_eq!(
        frame
            .client
            .put(&blob)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let (ok, out, err) = arkham(
        data.path(),
        &["shard", "grants", "trapper", "--revoke", "storage"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("requested but not granted:\n  service storage"),
        "{out}"
    );
    eventually("storage is revoked in the running frame", || async {
        frame
            .client
            .put(&blob)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
            == 400
    })
    .await;
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "grants", "trapper", "--grant", "database"],
    );
    assert!(!ok && err.contains("does not request"), "{err}");
    let (ok, out, err) = arkham(
        data.path(),
        &["shard", "grants", "trapper", "--grant", "storage", "--json"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"storage\""), "{out}");
    eventually("storage is granted again", || async {
        frame
            .client
            .put(&blob)
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
            == 200
    })
    .await;
    frame.stop();
}

crate::on_both_backends!(revoking_a_grant_takes_effect_on_the_next_request);
