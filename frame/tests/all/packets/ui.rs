//! The packets shard's own dashboard page (`navigation.ui = "/ui/"`): its three files are served
//! by the shard's API, and `ui` is never taken for a packet id.

use super::new_packet;
use crate::harness::{Frame, data_dir, install};
use test_shards::PACKETS;

/// `GET path`: (status, content type, cache-control, body); asserts the shard policy the frame
/// puts on every shard answer, under which the page runs sandboxed and cannot fetch.
async fn get(frame: &Frame, path: &str) -> (u16, String, String, String) {
    let response = frame
        .client
        .get(format!("{}{path}", frame.base))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let policy = header("content-security-policy");
    assert!(
        policy.starts_with("sandbox allow-scripts") && policy.contains("connect-src 'none'"),
        "{path}: {policy:?}"
    );
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    let status = response.status().as_u16();
    (
        status,
        content_type,
        cache_control,
        response.text().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_files_are_served_beside_the_api() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());

    for path in ["/api/packets/ui/", "/api/packets/ui"] {
        let (status, content_type, cache_control, page) = get(&frame, path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(content_type, "text/html; charset=utf-8", "{path}");
        assert_eq!(cache_control, "no-cache", "{path}");
        // The bridge client first, then the page's own script; no fetch, no CDN.
        let bridge = page.find("<script src=\"/static/arkham-ui.js\"></script>");
        let script = page.find("app.js\"></script>");
        assert!(
            matches!((bridge, script), (Some(b), Some(s)) if b < s),
            "{path}: {page}"
        );
        for hook in [
            "id=\"packet-list\"",
            "id=\"create-packet\"",
            "id=\"packet-detail\"",
            "id=\"error\"",
            "data-status=\"draft\"",
        ] {
            assert!(page.contains(hook), "{path} lacks {hook}");
        }
        assert!(!page.contains("https://"), "{path} loads nothing remote");
    }

    let (status, content_type, cache_control, script) = get(&frame, "/api/packets/ui/app.js").await;
    assert_eq!(
        (status, content_type.as_str(), cache_control.as_str()),
        (200, "text/javascript; charset=utf-8", "no-cache")
    );
    assert!(script.contains("arkham"), "{script}");
    // Data reaches the page as text only.
    assert!(
        !script.contains("innerHTML"),
        "app.js must not use innerHTML"
    );
    let (status, content_type, _, style) = get(&frame, "/api/packets/ui/app.css").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/css; charset=utf-8"),
        "{style}"
    );

    // The API around the page is unchanged.
    let id = new_packet(&frame, "<img src=x onerror=alert(1)>").await;
    let (status, packet) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, packet["id"].as_str(), packet["name"].as_str()),
        (200, Some(id.as_str()), Some("<img src=x onerror=alert(1)>"))
    );
    let (status, list) = frame.call("GET", "/api/packets/", None).await;
    assert_eq!((status, list["total"].as_i64()), (200, Some(1)), "{list}");

    // Nothing else under /ui, and `ui` is a route, not a packet id.
    let (status, _, _, body) = get(&frame, "/api/packets/ui/nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = frame
        .call(
            "PUT",
            "/api/packets/ui",
            Some(serde_json::json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 405, "{body}");
    frame.stop();
}
