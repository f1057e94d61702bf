//! `arkham shard new NAME --lang L`: the project it writes builds, installs and answers with no
//! edits, in every language.

use crate::examples::{repo_root, require_tool};
use crate::harness::{Frame, arkham_command, run};
use std::path::Path;

/// Runs `arkham` in `cwd` with the repository's toolchains on PATH (as `scripts/setup --test`
/// installs them) and without the host build settings of the test run, which must not reach the
/// guest's cargo.
fn arkham_in(cwd: &Path, data: &Path, args: &[&str]) -> (bool, String, String) {
    let root = repo_root();
    let path = format!(
        "{}:{}:{}",
        root.join(".tools/python-venv/bin").display(),
        root.join(".tools/js/node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(arkham_command(data, args)
        .current_dir(cwd)
        .env("PATH", path)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET"))
}

/// `shard new hello --lang L`, `shard add ./hello --yes`, then `GET /api/hello/` twice.
async fn new_project_answers(lang: &str, tool: Option<&str>, test: &str) {
    if let Some(tool) = tool
        && !require_tool(tool, test)
    {
        return;
    }
    let _heavy = crate::harness::cpu_heavy().await;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (ok, out, err) = arkham_in(
        work.path(),
        &data,
        &["shard", "new", "hello", "--lang", lang],
    );
    assert!(ok, "shard new failed:\n{out}\n{err}");
    assert!(out.contains("created shard `hello`"), "{out}");
    if lang == "rust" {
        // The guest dependencies the fixtures compiled this run, with the same release profile:
        // a fresh target dir would compile them again (minutes on a busy machine).
        std::os::unix::fs::symlink(
            repo_root().join("target/guests"),
            work.path().join("hello/target"),
        )
        .unwrap();
    }

    // A second `new` into the same folder refuses rather than overwrite it.
    let (ok, _, err) = arkham_in(
        work.path(),
        &data,
        &["shard", "new", "hello", "--lang", lang],
    );
    assert!(!ok);
    assert!(err.contains("already exists and is not empty"), "{err}");

    let (ok, out, err) = arkham_in(work.path(), &data, &["shard", "add", "./hello", "--yes"]);
    assert!(ok, "shard add ./hello failed:\n{out}\n{err}");

    let frame = Frame::start(&data);
    let (status, body) = frame.call("GET", "/api/hello/", None).await;
    assert_eq!(status, 200, "{body}\n{}", frame.log());
    assert_eq!(body["hello"], "hello", "{body}");
    assert_eq!(body["visits"], 1, "{body}");
    let (status, body) = frame.call("GET", "/api/hello/", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["visits"], 2, "the count lives in the database: {body}");
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn new_python_project_answers() {
    new_project_answers(
        "python",
        Some(".tools/python-venv/bin/componentize-py"),
        "new_python_project_answers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_js_project_answers() {
    new_project_answers(
        "js",
        Some(".tools/js/node_modules/.bin/componentize-js"),
        "new_js_project_answers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_rust_project_answers() {
    new_project_answers("rust", None, "new_rust_project_answers").await;
}

#[test]
fn new_refuses_a_bad_name() {
    let work = tempfile::tempdir().unwrap();
    let (ok, _, err) = arkham_in(work.path(), work.path(), &["shard", "new", "Hello"]);
    assert!(!ok);
    assert!(err.contains("the shard name is `Hello`"), "{err}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn wit_prints_and_writes_the_package_this_frame_speaks() {
    let data = crate::harness::data_dir("");
    let (ok, out, err) = crate::harness::arkham(data.path(), &["wit"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.matches("package arkham:shard@0.2.0;").count(),
        1,
        "{out}"
    );
    for interface in [
        "database",
        "events",
        "storage",
        "logging",
        "http-handler",
        "event-handler",
    ] {
        assert!(
            out.contains(&format!("interface {interface} {{")),
            "{interface}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("wit");
    let (ok, out, err) =
        crate::harness::arkham(data.path(), &["wit", "--out", out_dir.to_str().unwrap()]);
    assert!(ok && out.contains("arkham:shard@0.2.0"), "{out}{err}");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    for file in ["world.wit", "storage.wit", "deps/io.wit", "deps/http.wit"] {
        assert_eq!(
            std::fs::read(out_dir.join(file)).unwrap(),
            std::fs::read(repo.join(file)).unwrap(),
            "{file}"
        );
    }
}
