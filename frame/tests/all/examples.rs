//! The example shards (`examples/python-notes`, `examples/js-notes`, `examples/rust-annotations`),
//! built with `arkham shard build` once per run, installed, and driven over HTTP on both backend
//! sets: their database, events and storage, and their data after a frame restart.

use crate::backends::Backends;
use crate::harness::{Frame, arkham_command, eventually, install, manifest_of, package_with, run};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Fast retries, so delivery is not waited for on back-off.
const CONFIG: &str = "[events]\nretry_base_ms = 20\nretry_max_ms = 200\n";

/// The repository root (the frame crate's parent).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// One example shard: its folder, its name, and the toolchain program its build needs.
pub struct Example {
    pub folder: &'static str,
    pub name: &'static str,
    /// Where `scripts/setup --test` installs the toolchain, relative to the repository root.
    pub tool: &'static str,
    /// Whether it prints `note {id} created` and stamps notes with the WASI wall clock: the
    /// Python build links the real WASI basics (no stubs), so the standard library's work.
    pub uses_wasi: bool,
}

pub const PYTHON_NOTES: Example = Example {
    folder: "examples/python-notes",
    name: "pynotes",
    tool: ".tools/python-venv/bin/componentize-py",
    uses_wasi: true,
};

pub const JS_NOTES: Example = Example {
    folder: "examples/js-notes",
    name: "jsnotes",
    tool: ".tools/js/node_modules/.bin/componentize-js",
    uses_wasi: false,
};

/// Whether the toolchain `scripts/setup --test` installs is there: false (with a skip notice)
/// outside CI, a failure under `CI=true`, as `harness::require` does for programs on PATH.
pub fn require_tool(tool: &str, test: &str) -> bool {
    if repo_root().join(tool).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs {tool} (`scripts/setup --test` installs it) and CI=true"
    );
    eprintln!("SKIPPED {test}: {tool} is missing (`scripts/setup --test` installs it)");
    false
}

/// Runs `arkham shard build` on a shard folder once per run (the Python and JavaScript builds take
/// seconds each); returns the packaged `.wasm`.
pub fn built(folder: &Path) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(PathBuf, PathBuf)>>> = OnceLock::new();
    // Held while building, so two tests wanting the same folder build it once.
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some((_, output)) = built.iter().find(|(f, _)| f == folder) {
        return output.clone();
    }
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // A Rust example builds into the guests' target dir, where the fixtures' build left the
    // dependencies compiled with the same release profile (a fresh one would take minutes); that
    // also builds it with CARGO_TARGET_DIR set, as many Rust users have it. The test run's own
    // build settings are for the host and must not reach the guest's cargo.
    let (ok, out, err) = run(arkham_command(
        scratch.path(),
        &["shard", "build", folder.to_str().unwrap()],
    )
    .env("CARGO_TARGET_DIR", repo_root().join("target/guests"))
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET"));
    assert!(ok, "building {} failed:\n{out}\n{err}", folder.display());
    eprintln!(
        "built {} in {:.1} s",
        folder.display(),
        started.elapsed().as_secs_f64()
    );
    // The path is the last line; the build command's own output may come before it.
    let output = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    let output = if output.is_absolute() {
        output
    } else {
        repo_root().join(output)
    };
    built.push((folder.to_path_buf(), output.clone()));
    output
}

/// `arkham shard add PACKAGE --yes` into `data`, asserting success.
fn add(data: &Path, package: &Path) {
    let (ok, out, err) = run(&mut arkham_command(
        data,
        &["shard", "add", package.to_str().unwrap(), "--yes"],
    ));
    assert!(ok, "installing {} failed:\n{out}\n{err}", package.display());
}

async fn heard(frame: &Frame, shard: &str) -> Vec<serde_json::Value> {
    let (status, body) = frame
        .call("GET", &format!("/api/{shard}/events"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// The notes examples' contract: notes in the database, bodies in storage, a `created` event
/// the shard hears itself (it subscribes to `*.note.created`), and all of it after a restart.
async fn notes_example(example: &Example, backends: Backends, test: &str) {
    if !require_tool(example.tool, test) {
        return;
    }
    let _heavy = crate::harness::cpu_heavy().await;
    let Some(data) = backends.data_dir(test, CONFIG) else {
        return;
    };
    add(data.path(), &built(&repo_root().join(example.folder)));
    let api = format!("/api/{}", example.name);

    let frame = Frame::start(data.path());
    let (status, body) = frame.call("GET", &format!("{api}/"), None).await;
    assert_eq!(status, 200, "{body}\n{}", frame.log());
    assert_eq!(body["notes"], json!([]));

    let (status, created) = frame
        .call(
            "POST",
            &format!("{api}/"),
            Some(json!({"title": "first", "body": "kept in storage"})),
        )
        .await;
    assert_eq!(status, 201, "{created}\n{}", frame.log());
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["blob_key"], format!("notes/{id}.txt"));
    if example.uses_wasi {
        // `datetime.now(timezone.utc)`: this year's date, in UTC.
        let at = created["created_at"].as_str().unwrap();
        assert!(at.starts_with("20") && at.ends_with("+00:00"), "{created}");
        let printed = format!("note {id} created");
        eventually("the shard's print in the frame's log", || async {
            frame.log().lines().any(|l| l.contains(&printed))
        })
        .await;
    }

    // A bad request answers 400 and publishes nothing.
    let (status, body) = frame
        .call(
            "POST",
            &format!("{api}/"),
            Some(json!({"body": "no title"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_note");

    let (status, note) = frame.call("GET", &format!("{api}/{id}"), None).await;
    assert_eq!(status, 200, "{note}");
    assert_eq!(note["title"], "first");
    assert_eq!(note["body"], "kept in storage");
    let (status, _) = frame.call("GET", &format!("{api}/999"), None).await;
    assert_eq!(status, 404);

    let event_name = format!("{}.note.created", example.name);
    eventually("the created event delivered to the shard", || async {
        heard(&frame, example.name)
            .await
            .iter()
            .any(|e| e["name"] == event_name.as_str())
    })
    .await;
    let events = heard(&frame, example.name).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], example.name);
    let payload: serde_json::Value =
        serde_json::from_str(events[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["id"].as_i64(), Some(id));
    frame.stop();

    // Everything lives in the frame's services, so a new frame process sees it all.
    let frame = Frame::start(data.path());
    let (status, body) = frame.call("GET", &format!("{api}/"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notes"].as_array().unwrap().len(), 1, "{body}");
    let (status, note) = frame.call("GET", &format!("{api}/{id}"), None).await;
    assert_eq!(status, 200, "{note}");
    assert_eq!(note["body"], "kept in storage");
    assert_eq!(heard(&frame, example.name).await.len(), 1);
    frame.stop();
}

async fn python_notes(backends: Backends) {
    notes_example(&PYTHON_NOTES, backends, "python_notes").await;
}

crate::on_both_backends!(python_notes);

async fn js_notes(backends: Backends) {
    notes_example(&JS_NOTES, backends, "js_notes").await;
}

crate::on_both_backends!(js_notes);

/// The two examples subscribe to `*.note.created`: each hears the other's notes as well as its
/// own, across languages.
#[tokio::test(flavor = "multi_thread")]
async fn notes_examples_hear_each_other() {
    let test = "notes_examples_hear_each_other";
    if !require_tool(PYTHON_NOTES.tool, test) || !require_tool(JS_NOTES.tool, test) {
        return;
    }
    let _heavy = crate::harness::cpu_heavy().await;
    let data = crate::harness::data_dir(CONFIG);
    for example in [&PYTHON_NOTES, &JS_NOTES] {
        add(data.path(), &built(&repo_root().join(example.folder)));
    }
    let frame = Frame::start(data.path());
    for example in [&PYTHON_NOTES, &JS_NOTES] {
        let (status, body) = frame
            .call(
                "POST",
                &format!("/api/{}/", example.name),
                Some(json!({"title": example.name})),
            )
            .await;
        assert_eq!(status, 201, "{body}\n{}", frame.log());
    }
    for listener in [&PYTHON_NOTES, &JS_NOTES] {
        eventually(&format!("{} hears both notes", listener.name), || async {
            let mut sources: Vec<String> = heard(&frame, listener.name)
                .await
                .iter()
                .map(|e| e["source"].as_str().unwrap().to_string())
                .collect();
            sources.sort();
            sources == ["jsnotes", "pynotes"]
        })
        .await;
    }
    frame.stop();
}

/// The Rust example's folder; its shard is `annotations`.
pub const RUST_ANNOTATIONS: &str = "examples/rust-annotations";

/// `POST path` with `body` sent as is (not necessarily JSON); returns (status, JSON body).
async fn post_raw(frame: &Frame, path: &str, body: &'static str) -> (u16, serde_json::Value) {
    let response = frame
        .client
        .post(format!("{}{path}", frame.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The Rust example next to packets: it hears packets' events (`packets.*`), keeps annotation
/// texts in storage and rows in its database, rejects bad input, and keeps it all across a
/// restart.
async fn rust_annotations(backends: Backends) {
    let _heavy = crate::harness::cpu_heavy().await;
    let Some(data) = backends.data_dir("rust_annotations", CONFIG) else {
        return;
    };
    install(data.path(), &[&test_shards::PACKETS]);
    add(data.path(), &built(&repo_root().join(RUST_ANNOTATIONS)));
    // A recorder fixture listening to the example's own events.
    let mut recorder = manifest_of(&test_shards::RECORDER);
    recorder.events.subscribes = vec!["annotations.*".to_string()];
    let recorder_package = data.path().join("recorder.shard.wasm");
    package_with(&test_shards::RECORDER, &recorder, &recorder_package);
    add(data.path(), &recorder_package);
    // On the embedded set the blobs are files the test can see; on NATS they are the engine's.
    let blobs = (backends == Backends::Embedded).then(|| {
        data.path()
            .join("shards/annotations/storage/objects/annotations")
    });

    let frame = Frame::start(data.path());
    assert_eq!(
        heard(&frame, "annotations").await,
        Vec::<serde_json::Value>::new()
    );
    let (status, packet) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "Case file"})))
        .await;
    assert_eq!(status, 201, "{packet}\n{}", frame.log());
    let packet_id = packet["id"].as_str().unwrap().to_string();
    eventually("packets.packet.created heard by annotations", || async {
        heard(&frame, "annotations")
            .await
            .iter()
            .any(|e| e["name"] == "packets.packet.created")
    })
    .await;
    let events = heard(&frame, "annotations").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], "packets");
    assert_eq!(events[0]["packet_id"], packet_id.as_str());
    assert_eq!(events[0]["payload"]["name"], "Case file");

    let api = format!("/api/annotations/{packet_id}");
    let (status, first) = frame
        .call("POST", &api, Some(json!({"text": "check the dates"})))
        .await;
    assert_eq!(status, 201, "{first}\n{}", frame.log());
    assert_eq!(first["packet_id"], packet_id.as_str());
    assert_eq!(first["text"], "check the dates");
    let first_id = first["id"].as_str().unwrap().to_string();
    let (status, second) = frame
        .call("POST", &api, Some(json!({"text": "ask for the originals"})))
        .await;
    assert_eq!(status, 201, "{second}");
    let second_id = second["id"].as_str().unwrap().to_string();
    if let Some(blobs) = &blobs {
        let file = blobs.join(&packet_id).join(format!("{first_id}.txt"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "check the dates");
    }

    // Bad input: 400 with a code that says what is wrong, and nothing stored.
    for (body, code) in [
        ("{not json", "invalid_json"),
        ("{}", "missing_text"),
        (r#"{"text": "   "}"#, "missing_text"),
        (r#"{"text": 42}"#, "invalid_annotation"),
    ] {
        let (status, error) = post_raw(&frame, &api, body).await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (400, &json!(code)),
            "{body}: {error}"
        );
    }
    let (status, error) = frame
        .call("POST", &api, Some(json!({"text": "x".repeat(4097)})))
        .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (400, &json!("text_too_long")),
        "{error}"
    );
    let (status, error) = frame
        .call("POST", "/api/annotations/a.b", Some(json!({"text": "t"})))
        .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (400, &json!("invalid_packet_id")),
        "{error}"
    );

    let (status, listed) = frame.call("GET", &api, None).await;
    assert_eq!(status, 200, "{listed}");
    let texts: Vec<&str> = listed["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["check the dates", "ask for the originals"],
        "{listed}"
    );

    let (status, _) = frame
        .call("DELETE", &format!("{api}/{first_id}"), None)
        .await;
    assert_eq!(status, 204, "{}", frame.log());
    let (status, error) = frame
        .call("DELETE", &format!("{api}/{first_id}"), None)
        .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (404, &json!("not_found")),
        "{error}"
    );
    let (status, _) = frame
        .call(
            "DELETE",
            &format!("/api/annotations/other-packet/{second_id}"),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "an annotation is deleted only under its own packet"
    );
    if let Some(blobs) = &blobs {
        assert!(
            !blobs
                .join(&packet_id)
                .join(format!("{first_id}.txt"))
                .exists()
        );
    }

    // Its own events went out, one per annotation created: the recorder hears them.
    let expected = [&first_id, &second_id].map(|id| json!({"id": id, "packet_id": packet_id}));
    eventually("annotations.annotation.created delivered", || async {
        let payloads: Vec<serde_json::Value> = heard(&frame, "recorder")
            .await
            .iter()
            .filter(|e| e["name"] == "annotations.annotation.created")
            .map(|e| serde_json::from_str(e["payload"].as_str().unwrap()).unwrap())
            .collect();
        payloads == expected
    })
    .await;
    frame.stop();

    // Everything lives in the frame's services, so a new frame process sees it all.
    let frame = Frame::start(data.path());
    let (status, listed) = frame.call("GET", &api, None).await;
    assert_eq!(status, 200, "{listed}\n{}", frame.log());
    let annotations = listed["annotations"].as_array().unwrap();
    assert_eq!(annotations.len(), 1, "{listed}");
    assert_eq!(annotations[0]["id"], second_id.as_str());
    assert_eq!(annotations[0]["text"], "ask for the originals");
    assert_eq!(heard(&frame, "annotations").await.len(), 1);
    frame.stop();
}

crate::on_both_backends!(rust_annotations);
