//! The packets shard end to end: CRUD, workflow, errors, persistence across restarts.

use crate::backends::Backends;
use crate::harness::{Frame, install};
use serde_json::json;
use test_shards::PACKETS;

async fn crud_workflow_and_errors(backends: Backends) {
    let Some(data) = backends.data_dir("crud_workflow_and_errors", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());

    let (status, health) = frame.call("GET", "/api/packets/health", None).await;
    assert_eq!(status, 200, "{health}");

    let (status, created) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"name": "Case file", "description": "d"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "Case file");
    assert_eq!(created["status"], "draft");
    let id = created["id"].as_str().unwrap().to_string();

    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!((status, got["id"].as_str()), (200, Some(id.as_str())));

    let (status, updated) = frame
        .call(
            "PUT",
            &format!("/api/packets/{id}"),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(
        (status, updated["name"].as_str()),
        (200, Some("Renamed")),
        "{updated}"
    );

    let (status, content) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/contents"),
            Some(
                json!({"content_type": "document", "content_id": "doc-1", "content_title": "Doc"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{content}");
    let (status, contents) = frame
        .call("GET", &format!("/api/packets/{id}/contents"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        contents.to_string().matches("doc-1").count(),
        1,
        "{contents}"
    );

    let (status, count) = frame.call("GET", "/api/packets/count", None).await;
    assert_eq!((status, count["count"].as_i64()), (200, Some(1)));

    let (status, drafts) = frame.call("GET", "/api/packets/status/draft", None).await;
    assert_eq!(
        (status, drafts["total"].as_i64()),
        (200, Some(1)),
        "{drafts}"
    );

    let (status, finalized) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(
        (status, finalized["status"].as_str()),
        (200, Some("finalized")),
        "{finalized}"
    );

    // Finalizing stored a snapshot through the storage service.
    let (status, versions) = frame
        .call("GET", &format!("/api/packets/{id}/versions"), None)
        .await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(
        versions
            .to_string()
            .matches(&format!("snapshots/{id}/v"))
            .count(),
        1,
        "a snapshot key in {versions}"
    );
    assert!(
        !frame.log().contains("no snapshot stored"),
        "{}",
        frame.log()
    );

    // A finalized packet cannot be edited, nor finalized again.
    let (status, err) = frame
        .call(
            "PUT",
            &format!("/api/packets/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"]["code"].is_string(), "{err}");
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 409);

    let (status, list) = frame
        .call("GET", "/api/packets/?status=finalized&limit=10", None)
        .await;
    assert_eq!((status, list["total"].as_i64()), (200, Some(1)), "{list}");

    let (status, archived) = frame
        .call("POST", &format!("/api/packets/{id}/archive"), None)
        .await;
    assert_eq!(
        (status, archived["status"].as_str()),
        (200, Some("archived")),
        "{archived}"
    );

    // Errors: unknown id, bad bodies, wrong method.
    let (status, err) = frame.call("GET", "/api/packets/does-not-exist", None).await;
    assert_eq!(status, 404, "{err}");
    let (status, err) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"description": "no name"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("name"), "{err}");
    let (status, _) = frame
        .client
        .post(format!("{}/api/packets/", frame.base))
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 422);

    // The frame's own API and error shape.
    let (status, shards) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200);
    assert_eq!(shards["shards"][0]["name"], "packets");
    assert_eq!(shards["shards"][0]["status"], "running");
    let (status, err) = frame.call("GET", "/api/nosuch/x", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("shard_not_found"))
    );
    frame.stop();
}

async fn packets_survive_a_restart(backends: Backends) {
    let Some(data) = backends.data_dir("packets_survive_a_restart", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let (status, created) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "durable"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    frame.stop();

    let frame = Frame::start(data.path());
    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (200, Some("durable")),
        "{got}"
    );
    frame.stop();
}

/// Packets written before a `kill -9` of the frame are there after it: a 2xx means durable.
async fn packets_survive_kill_9(backends: Backends) {
    let Some(data) = backends.data_dir("packets_survive_kill_9", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let mut frame = Frame::start(data.path());
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, created) = frame
            .call(
                "POST",
                "/api/packets/",
                Some(json!({"name": format!("k{i}")})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    frame.kill();

    let frame = Frame::start(data.path());
    for (i, id) in ids.iter().enumerate() {
        let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
        assert_eq!(
            (status, got["name"].as_str()),
            (200, Some(format!("k{i}").as_str()))
        );
    }
    let (_, count) = frame.call("GET", "/api/packets/count", None).await;
    assert_eq!(count["count"].as_i64(), Some(20), "{count}");
    frame.stop();
}

crate::on_both_backends!(
    crud_workflow_and_errors,
    packets_survive_a_restart,
    packets_survive_kill_9
);
