//! Installing from folders and files, and refusing what cannot run, with nothing changed.

use crate::harness::{arkham, arkham_with, data_dir, install, manifest_of, package_with};
use std::path::Path;
use test_shards::{ECHO, PACKETS, TRAPPER};

fn installed(data: &Path) -> serde_json::Value {
    let (ok, out, err) = arkham(data, &["shard", "list", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// A shard folder whose "build" copies nothing: the component is already there.
fn shard_folder(dir: &Path, manifest_extra: &str) -> std::path::PathBuf {
    let folder = dir.join("trapper-src");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(TRAPPER.component, folder.join("trapper.wasm")).unwrap();
    let mut manifest = std::fs::read_to_string(TRAPPER.manifest).unwrap();
    // Replace the fixture's own [build] section with one that works in this folder.
    if let Some(at) = manifest.find("[build]") {
        manifest.truncate(at);
    }
    manifest.push_str(manifest_extra);
    manifest.push_str("\n[build]\ncommand = \"true\"\ncomponent = \"trapper.wasm\"\n");
    std::fs::write(folder.join("shard.toml"), manifest).unwrap();
    folder
}

#[test]
fn folder_build_inspect_add_list_remove() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();
    let folder = shard_folder(work.path(), "");

    let (ok, out, err) = arkham(data.path(), &["shard", "build", folder.to_str().unwrap()]);
    assert!(ok, "{err}");
    let built = out.trim().to_string();
    assert!(built.ends_with("trapper-0.1.0.shard.wasm"), "{built}");

    let (ok, out, err) = arkham(data.path(), &["shard", "inspect", &built, "--json"]);
    assert!(ok, "{err}");
    let inspection: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspection["manifest"]["name"], "trapper");
    assert!(
        inspection["manifest"].get("build").is_none(),
        "[build] is not embedded"
    );
    let imports = inspection["imports"].to_string();
    assert!(imports.contains("arkham:shard/storage"), "{imports}");
    assert!(
        inspection["exports"]
            .to_string()
            .contains("arkham:shard/http-handler")
    );
    assert_eq!(inspection["problems"], serde_json::json!([]));

    let (ok, out, err) = arkham(
        data.path(),
        &["shard", "add", folder.to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed trapper 0.1.0 sha256:"), "{out}");
    assert_eq!(installed(data.path())[0]["name"], "trapper");

    // Without --yes and without a terminal, a first install refuses; re-adding what is already
    // granted needs no consent.
    let fresh = data_dir("");
    let (ok, _, err) = arkham(fresh.path(), &["shard", "add", &built]);
    assert!(!ok);
    assert!(err.contains("--yes"), "{err}");
    let (ok, _, err) = arkham(data.path(), &["shard", "add", &built]);
    assert!(ok, "{err}");

    let shard_data = data.path().join("shards/trapper");
    std::fs::create_dir_all(&shard_data).unwrap();
    let (ok, out, err) = arkham(data.path(), &["shard", "remove", "trapper"]);
    assert!(ok, "{err}");
    assert!(out.contains("--purge"), "{out}");
    assert!(shard_data.exists(), "data kept without --purge");
    assert_eq!(installed(data.path()), serde_json::json!([]));
    let (ok, _, err) = arkham(data.path(), &["shard", "remove", "trapper"]);
    assert!(
        !ok && err.contains("no shard named `trapper` is installed"),
        "{err}"
    );

    install(data.path(), &[&TRAPPER]);
    let (ok, _, err) = arkham(data.path(), &["shard", "remove", "trapper", "--purge"]);
    assert!(ok, "{err}");
    assert!(!shard_data.exists(), "data deleted with --purge");
}

#[test]
fn bad_manifests_are_refused_naming_the_field() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();
    // An unknown top-level field.
    let folder = shard_folder(work.path(), "");
    let manifest = std::fs::read_to_string(folder.join("shard.toml")).unwrap();
    std::fs::write(
        folder.join("shard.toml"),
        format!("entry_point = \"x\"\n{manifest}"),
    )
    .unwrap();
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "add", folder.to_str().unwrap(), "--yes"],
    );
    assert!(!ok && err.contains("entry_point"), "{err}");
    // A value out of its set.
    let folder = shard_folder(
        work.path(),
        "[navigation]\ncategory = \"Nope\"\nlabel = \"x\"\nroute = \"/x\"\n",
    );
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "add", folder.to_str().unwrap(), "--yes"],
    );
    assert!(
        !ok && err.contains("navigation.category") && err.contains("Export"),
        "{err}"
    );
    // A build command that fails.
    let folder = shard_folder(work.path(), "");
    std::fs::write(
        folder.join("shard.toml"),
        std::fs::read_to_string(folder.join("shard.toml"))
            .unwrap()
            .replace("command = \"true\"", "command = \"false\""),
    )
    .unwrap();
    std::fs::write(folder.join("touched.txt"), "newer than the component").unwrap();
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "add", folder.to_str().unwrap(), "--yes"],
    );
    assert!(!ok);
    assert!(err.contains("`false` failed"), "{err}");
    assert_eq!(installed(data.path()), serde_json::json!([]));
}

/// A refused file: its name, how to make it, and what the error must say.
type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);

#[test]
fn incompatible_components_are_refused_and_nothing_changes() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let before = installed(data.path());
    let catalog_before = std::fs::read(data.path().join("installed.json")).unwrap();
    let work = tempfile::tempdir().unwrap();

    let mut newer_frame = manifest_of(&TRAPPER);
    newer_frame.requires_frame = ">=9.0.0".parse().unwrap();
    let mut undeclared = manifest_of(&TRAPPER);
    undeclared.services = Default::default();
    undeclared.events = Default::default();

    let cases: Vec<Case> = vec![
        (
            "newer-frame",
            Box::new(|p: &Path| package_with(&TRAPPER, &newer_frame, p)),
            "requires frame >=9.0.0",
        ),
        (
            "undeclared",
            Box::new(|p: &Path| package_with(&TRAPPER, &undeclared, p)),
            "imports `arkham:shard/storage@0.2.0` but its manifest does not declare the `storage` service",
        ),
        (
            "raw",
            Box::new(|p: &Path| drop(std::fs::copy(TRAPPER.component, p))),
            "carries no shard manifest",
        ),
        (
            "module",
            Box::new(|p: &Path| std::fs::write(p, b"\0asm\x01\0\0\0").unwrap()),
            "core WebAssembly module",
        ),
        (
            "text",
            Box::new(|p: &Path| std::fs::write(p, b"hello").unwrap()),
            "not a WebAssembly file",
        ),
    ];
    for (name, make, needle) in cases {
        let path = work.path().join(format!("{name}.wasm"));
        make(&path);
        let (ok, _, err) = arkham(
            data.path(),
            &["shard", "add", path.to_str().unwrap(), "--yes"],
        );
        assert!(!ok, "{name} was accepted");
        assert!(
            err.contains(needle),
            "{name}: expected `{needle}` in: {err}"
        );
    }
    assert_eq!(installed(data.path()), before);
    assert_eq!(
        std::fs::read(data.path().join("installed.json")).unwrap(),
        catalog_before
    );
}

#[test]
fn a_cargo_shard_builds_wherever_cargo_puts_its_target() {
    // CARGO_TARGET_DIR moves cargo's output away from shard.toml's `component` path (where a
    // stale file may sit); the build asks cargo where the component went. The fixtures' own
    // target dir is warm, so cargo only reports what it has.
    let folder = Path::new(ECHO.manifest).parent().unwrap();
    let target = Path::new(ECHO.component)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let env = [("CARGO_TARGET_DIR", target.to_str().unwrap())];
    let data = data_dir("");
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "build", folder.to_str().unwrap()],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.trim_end().ends_with("echo-0.1.0.shard.wasm") && out.contains(target.to_str().unwrap()),
        "{out}"
    );
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", folder.to_str().unwrap(), "--yes"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(installed(data.path())[0]["name"], "echo");
    // An error is said once, even when its cause is quoted in it.
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "build", "/nonexistent-shard-folder"],
    );
    assert!(!ok);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
