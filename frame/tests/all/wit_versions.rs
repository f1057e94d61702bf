//! A shard built against an older `arkham:shard` package keeps running: the frame links 0.1.0
//! next to 0.2.0 and calls 0.1.0's exports.

use crate::backends::Backends;
use crate::harness::{Frame, admin_token, eventually, install};
use serde_json::json;
use test_shards::LEGACY;

async fn a_shard_built_against_0_1_0_runs_unchanged(backends: Backends) {
    let Some(data) = backends.data_dir("legacy_0_1_0", "") else {
        return;
    };
    // Built for what it claims: every arkham import and export of the component is 0.1.0's.
    let bytes = std::fs::read(LEGACY.component).unwrap();
    let names = component_interfaces(&bytes);
    let arkham: Vec<&String> = names.iter().filter(|n| n.starts_with("arkham:")).collect();
    assert_eq!(arkham.len(), 6, "{names:?}");
    assert!(arkham.iter().all(|n| n.ends_with("@0.1.0")), "{names:?}");

    install(data.path(), &[&LEGACY]);
    let frame = Frame::start(data.path());
    let (status, listing) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        listing["shards"][0]["http_interface"], "arkham:shard/http-handler@0.1.0",
        "{listing}"
    );

    // Storage, database and events through the 0.1.0 imports; the handler through 0.1.0's export.
    let url = format!("{}/api/legacy/notes/first", frame.base);
    let response = frame.client.put(&url).body("hello").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.text().await.unwrap(), "stored first 5");
    let response = frame.client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), "hello");
    eventually("the 0.1.0 event-handler receives the event", || async {
        let (_, body) = frame.call("GET", "/api/legacy/received", None).await;
        body == "legacy.note.stored legacy first"
    })
    .await;

    // Storage revoked: 0.1.0 has no `denied`, so the refusal arrives as `io`, as 0.1.0 always
    // answered (a 0.2.0 shard gets `denied`: the grants tests).
    let response = frame
        .client
        .put(format!(
            "{}/api/frame/admin/shards/legacy/grants",
            frame.base
        ))
        .bearer_auth(admin_token(data.path()))
        .json(&json!({
            "services": ["database", "events"],
            "publishes": ["legacy.note.stored"],
            "subscribes": ["legacy.note.*"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = frame.client.put(&url).body("again").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with("io: storage is not granted to this shard"),
        "{body}"
    );
    frame.stop();
}

crate::on_both_backends!(a_shard_built_against_0_1_0_runs_unchanged);

/// The names of the instances a component imports and exports.
fn component_interfaces(bytes: &[u8]) -> Vec<String> {
    use wasmparser::{ComponentExternalKind, Parser, Payload};
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    names.push(import.unwrap().name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) => {
                for export in section {
                    let export = export.unwrap();
                    if export.kind == ComponentExternalKind::Instance {
                        names.push(export.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    names
}
