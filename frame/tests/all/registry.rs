//! Shards as OCI artifacts: push, add by requirement, lockfile, update, remove, against Debian's
//! `docker-registry` on loopback (with and without basic auth) and local OCI layouts; every
//! refusal leaves the installed shards and the lockfile as they were.

use crate::harness::{
    Frame, Registry, TokenPolicy, arkham, arkham_with, data_dir, manifest_of, package_with, require,
};
use arkham_registry::artifact::{self, ComponentInfo, annotations};
use arkham_registry::digest::Digest;
use arkham_registry::layout::Layout;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use test_shards::{PACKETS, TRAPPER};

/// PACKETS packaged with `version`.
fn packets_version(dir: &Path, version: &str) -> PathBuf {
    let mut manifest = manifest_of(&PACKETS);
    manifest.version = version.parse().unwrap();
    let path = dir.join(format!("packets-{version}.shard.wasm"));
    package_with(&PACKETS, &manifest, &path);
    path
}

/// Asserts that `data`'s store holds neither the blob `component` nor a temporary file: a refused
/// or broken-off download leaves nothing behind.
fn nothing_half_written(data: &Path, component: &Digest) {
    let blobs = data.join("store/blobs/sha256");
    assert!(
        !blobs.join(component.hex()).exists(),
        "the refused component was stored"
    );
    let temporaries: Vec<String> = std::fs::read_dir(&blobs)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(temporaries.is_empty(), "left in the store: {temporaries:?}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn installed(data: &Path) -> serde_json::Value {
    let (ok, out, err) = arkham_with(data, &["shard", "list", "--json"], &[]);
    assert!(ok, "{err}");
    json(&out)
}

/// What must not change when an add is refused.
fn snapshot(data: &Path) -> (serde_json::Value, Option<Vec<u8>>) {
    (
        installed(data),
        std::fs::read(data.join("arkham.lock")).ok(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn push_add_update_locked_remove_against_a_registry() {
    let Some(registry) = Registry::start("registry round trip", None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let docker_config = docker.path().to_str().unwrap();
    let env = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", docker_config),
    ];
    let v010 = packets_version(work.path(), "0.1.0");
    let v011 = packets_version(work.path(), "0.1.1");
    let data = data_dir("");

    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "push", v010.to_str().unwrap(), "--json"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        json(&out)["reference"],
        format!("{}/packets:0.1.0", registry.host)
    );

    let (ok, out, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");

    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "push", v011.to_str().unwrap()],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("pushed "), "{out}");
    // A version is never overwritten, unless forced.
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "push", v011.to_str().unwrap()],
        &env,
    );
    assert!(
        !ok && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "push", v011.to_str().unwrap(), "--force"],
        &env,
    );
    assert!(ok, "{err}");

    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "list", "--outdated", "--json"],
        &env,
    );
    assert!(ok, "{err}");
    let outdated = json(&out);
    assert_eq!(outdated[0]["name"], "packets");
    assert_eq!(outdated[0]["wanted"], "0.1.1");

    let (ok, out, err) = arkham_with(data.path(), &["shard", "update", "--json"], &env);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)[0]["version"], "0.1.1", "{out}");
    let list = installed(data.path());
    assert_eq!(list[0]["version"], "0.1.1");
    let digest = list[0]["digest"].as_str().unwrap().to_string();
    let lock = std::fs::read_to_string(data.path().join("arkham.lock")).unwrap();
    assert!(
        lock.contains(&digest) && lock.contains("requirement = \"^0.1\""),
        "{lock}"
    );

    // The frame serves what was installed.
    let frame = Frame::start(data.path());
    let (status, body) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(serde_json::json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    frame.stop();

    // A second data dir with the same lockfile installs the same digest.
    let second = data_dir("");
    std::fs::copy(
        data.path().join("arkham.lock"),
        second.path().join("arkham.lock"),
    )
    .unwrap();
    let (ok, out, err) = arkham_with(second.path(), &["shard", "add", "--locked", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert_eq!(installed(second.path())[0]["digest"], digest.as_str());
    // Already in the store: installs without the registry.
    let offline = [
        ("ARKHAM_REGISTRY", "127.0.0.1:1"),
        ("DOCKER_CONFIG", docker_config),
    ];
    let (ok, _, err) = arkham_with(second.path(), &["shard", "add", "--locked"], &offline);
    assert!(ok, "{err}");

    // Inspect by reference, without installing.
    let (ok, out, err) = arkham_with(
        work.path(),
        &["shard", "inspect", "packets@0.1", "--json"],
        &env,
    );
    assert!(ok, "{err}");
    let inspected = json(&out);
    assert_eq!(inspected["shard"]["manifest"]["name"], "packets");
    assert_eq!(inspected["shard"]["digest"], digest.as_str());

    // Failures name the problem and change nothing.
    let before = snapshot(data.path());
    let (ok, _, err) = arkham_with(data.path(), &["shard", "add", "packets@0.5", "--yes"], &env);
    assert!(
        !ok && err.contains("versions available: 0.1.0, 0.1.1"),
        "{err}"
    );
    let (ok, _, err) = arkham_with(data.path(), &["shard", "add", "nosuch@0.1", "--yes"], &env);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.1", "--yes"],
        &offline,
    );
    assert!(
        !ok && err.contains("cannot reach the registry 127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(snapshot(data.path()), before);

    std::fs::write(data.path().join("arkham.lock"), "[[shard]\nbroken").unwrap();
    let before = snapshot(data.path());
    let (ok, _, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(!ok && err.contains("is corrupt"), "{err}");
    let (ok, _, err) = arkham_with(data.path(), &["shard", "remove", "packets"], &env);
    assert!(!ok && err.contains("is corrupt"), "{err}");
    assert_eq!(snapshot(data.path()), before);
    std::fs::copy(
        second.path().join("arkham.lock"),
        data.path().join("arkham.lock"),
    )
    .unwrap();

    // Interop: skopeo pulls what arkham pushed, intact.
    if require("skopeo", "registry interop (skopeo)") {
        let out_dir = work.path().join("skopeo-out");
        let status = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/packets:0.1.1", registry.host),
                &format!("oci:{}:pulled", out_dir.display()),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let layout = Layout::new(&out_dir);
        let desc = layout.resolve_tag("pulled").unwrap();
        let manifest: artifact::ImageManifest =
            serde_json::from_slice(&layout.blob(&desc.digest).unwrap()).unwrap();
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].media_type, "application/wasm");
        assert_eq!(manifest.layers[0].digest, digest);
        assert_eq!(
            manifest.config.media_type,
            "application/vnd.wasm.config.v0+json"
        );
        let bytes = layout.blob(&manifest.layers[0].digest).unwrap();
        assert_eq!(Digest::of(&bytes).to_string(), digest);

        // And arkham installs an artifact written and pushed by other tools: a layout written by
        // hand, copied to the registry by skopeo, without arkham's annotations.
        let foreign = work.path().join("foreign");
        let component = std::fs::read(packets_version(work.path(), "0.2.0")).unwrap();
        write_artifact(&foreign, "0.2.0", &component, None, BTreeMap::new(), 1);
        let status = Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:0.2.0", foreign.display()),
                &format!("docker://{}/mirror/packets:0.2.0", registry.host),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let third = data_dir("");
        let (ok, out, err) = arkham_with(
            third.path(),
            &[
                "shard",
                "add",
                &format!("{}/mirror/packets@0.2", registry.host),
                "--yes",
            ],
            &env,
        );
        assert!(ok, "{out}{err}");
        assert!(out.contains("installed packets 0.2.0"), "{out}");
    }

    // A blob corrupted in the registry is refused and nothing is installed.
    let layer = registry.blob_file(&digest);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let fresh = data_dir("");
    let (ok, _, err) = arkham_with(
        fresh.path(),
        &["shard", "add", "packets@0.1", "--yes"],
        &env,
    );
    assert!(!ok && err.contains("corrupt"), "{err}");
    assert_eq!(installed(fresh.path()), serde_json::json!([]));
    assert!(!fresh.path().join("arkham.lock").exists());
    nothing_half_written(fresh.path(), &digest.parse().unwrap());

    let (ok, _, err) = arkham_with(data.path(), &["shard", "remove", "packets"], &env);
    assert!(ok, "{err}");
    let lock = std::fs::read_to_string(data.path().join("arkham.lock")).unwrap();
    assert!(!lock.contains("packets"), "{lock}");
}

#[test]
fn basic_auth_login_and_env_credentials() {
    let Some(registry) = Registry::start("registry basic auth", Some(("ark", "s3cret-pw"))) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let docker_config = docker.path().to_str().unwrap();
    let env = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", docker_config),
    ];
    let v010 = packets_version(work.path(), "0.1.0");
    let data = data_dir("");

    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "push", v010.to_str().unwrap()],
        &env,
    );
    assert!(!ok, "pushed without credentials");
    assert!(
        err.contains(&format!("arkham registry login {}", registry.host)),
        "{err}"
    );

    // Wrong password: refused, and the secret is not echoed.
    let wrong = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", docker_config),
        ("ARKHAM_REGISTRY_USERNAME", "ark"),
        ("ARKHAM_REGISTRY_PASSWORD", "not-the-pw"),
    ];
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.1", "--yes"],
        &wrong,
    );
    assert!(!ok && err.contains("registry login"), "{err}");
    assert!(!err.contains("not-the-pw") && !out.contains("not-the-pw"));

    let mut login = Command::new(crate::harness::arkham_bin())
        .args([
            "registry",
            "login",
            &registry.host,
            "-u",
            "ark",
            "--password-stdin",
            "--json",
        ])
        .env("DOCKER_CONFIG", docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        login
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3cret-pw\n")
            .unwrap();
    }
    let out = login.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    let config = std::fs::read_to_string(docker.path().join("config.json")).unwrap();
    assert!(
        config.contains(&registry.host) && config.contains("\"auth\""),
        "{config}"
    );

    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "push", v010.to_str().unwrap(), "--json"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"));
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.1", "--yes", "--json"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(!out.contains("s3cret-pw"));

    // Credentials from the environment alone.
    let empty = tempfile::tempdir().unwrap();
    let from_env = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", empty.path().to_str().unwrap()),
        ("ARKHAM_REGISTRY_USERNAME", "ark"),
        ("ARKHAM_REGISTRY_PASSWORD", "s3cret-pw"),
    ];
    let other = data_dir("");
    let (ok, out, err) = arkham_with(
        other.path(),
        &["shard", "add", "packets", "--yes"],
        &from_env,
    );
    assert!(ok, "{out}{err}");
}

/// Writes a Wasm artifact into the layout `dir` by hand, tagged `tag`, with `layers` copies of the
/// layer, `shard_manifest` as annotation and `imports` in the config.
fn write_artifact(
    dir: &Path,
    tag: &str,
    component: &[u8],
    config: Option<ComponentInfo>,
    notes: BTreeMap<String, String>,
    layers: usize,
) -> artifact::ImageManifest {
    let layout = Layout::new(dir);
    layout.put_blob(component).unwrap();
    let (mut manifest, config_bytes) = artifact::build(
        component,
        "shard.wasm",
        config.unwrap_or_default(),
        "2026-01-01T00:00:00Z",
        notes,
    );
    layout.put_blob(&config_bytes).unwrap();
    let layer = manifest.layers[0].clone();
    manifest.layers = vec![layer; layers];
    layout
        .put_manifest(
            tag,
            artifact::MANIFEST_MEDIA_TYPE,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    manifest
}

#[test]
fn local_layout_as_registry_and_bad_artifacts() {
    let work = tempfile::tempdir().unwrap();
    let shards = work.path().join("shards");
    let default = format!("oci:{}", shards.display());
    let env = [("ARKHAM_REGISTRY", default.as_str())];
    let v010 = packets_version(work.path(), "0.1.0");
    let v011 = packets_version(work.path(), "0.1.1");
    let data = data_dir("");
    for file in [&v010, &v011] {
        let (ok, out, err) = arkham_with(
            data.path(),
            &["shard", "push", file.to_str().unwrap()],
            &env,
        );
        assert!(ok, "{out}{err}");
    }
    assert!(shards.join("packets/oci-layout").is_file());
    let (ok, out, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.1"), "{out}");

    // The bad artifacts below carry 0.1.1's component, which `probe`'s store does not hold.
    let probe = data_dir("");
    let (ok, out, err) = arkham_with(
        probe.path(),
        &["shard", "add", "packets@=0.1.0", "--yes"],
        &env,
    );
    assert!(ok, "{out}{err}");
    let before = snapshot(probe.path());

    let component = std::fs::read(&v011).unwrap();
    let good_manifest = manifest_of(&PACKETS).to_embedded_toml();
    let add = |name: &str| {
        arkham_with(
            probe.path(),
            &[
                "shard",
                "add",
                &format!("oci:{}/{name}@0.1", shards.display()),
                "--yes",
            ],
            &[],
        )
    };

    // Size mismatch: the descriptor says one byte more than the blob has.
    let layout = Layout::new(shards.join("sizes"));
    layout.put_blob(&component).unwrap();
    let (mut manifest, config) = artifact::build(
        &component,
        "x.wasm",
        ComponentInfo::default(),
        "now",
        BTreeMap::new(),
    );
    layout.put_blob(&config).unwrap();
    manifest.layers[0].size += 1;
    layout
        .put_manifest(
            "0.1.1",
            artifact::MANIFEST_MEDIA_TYPE,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    let (ok, _, err) = add("sizes");
    assert!(
        !ok && err.contains("bytes but its descriptor says"),
        "{err}"
    );
    nothing_half_written(probe.path(), &Digest::of(&component));

    // Digest mismatch: the blob's content was altered.
    let layout_dir = shards.join("altered");
    let m = write_artifact(&layout_dir, "0.1.1", &component, None, BTreeMap::new(), 1);
    let blob = layout_dir
        .join("blobs/sha256")
        .join(m.layers[0].digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let (ok, _, err) = add("altered");
    assert!(!ok && err.contains("is corrupt"), "{err}");
    nothing_half_written(probe.path(), &Digest::of(&component));

    // More than one layer.
    write_artifact(
        &shards.join("twolayers"),
        "0.1.1",
        &component,
        None,
        BTreeMap::new(),
        2,
    );
    let (ok, _, err) = add("twolayers");
    assert!(!ok && err.contains("2 layers"), "{err}");

    // No shard manifest in the component.
    let raw = std::fs::read(TRAPPER.component).unwrap();
    write_artifact(
        &shards.join("bare"),
        "0.1.0",
        &raw,
        None,
        BTreeMap::new(),
        1,
    );
    let (ok, _, err) = add("bare");
    assert!(!ok && err.to_lowercase().contains("manifest"), "{err}");

    // Incompatible frame version and a missing import: refused from the manifest and config,
    // before the component is downloaded (here it is not even there).
    let incompatible = good_manifest.replace("requires_frame = \"", "requires_frame = \">=99, ");
    let manifest = write_artifact(
        &shards.join("future"),
        "0.1.1",
        &component,
        Some(ComponentInfo {
            imports: vec!["wasi:http/outgoing-handler@0.2.0".into()],
            exports: vec!["wasi:http/incoming-handler@0.2.6".into()],
            target: None,
        }),
        BTreeMap::from([(annotations::SHARD_MANIFEST.to_string(), incompatible)]),
        1,
    );
    std::fs::remove_file(
        shards
            .join("future/blobs/sha256")
            .join(manifest.layers[0].digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let (ok, _, err) = add("future");
    assert!(!ok, "{err}");
    assert!(
        err.contains(">=99") && err.contains("wasi:http/outgoing-handler@0.2.0"),
        "{err}"
    );
    assert!(err.contains("nothing was downloaded"), "{err}");

    assert_eq!(snapshot(probe.path()), before);
}

#[test]
fn the_data_dirs_local_registry_is_the_default_and_unreachable_registries_are_named() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();
    let file = packets_version(work.path(), "0.1.0");
    // No ARKHAM_REGISTRY, no config: push and add go to the data dir's own OCI layout.
    let (ok, out, err) = arkham(data.path(), &["shard", "push", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(data.path().join("registry/packets/index.json").is_file());
    let (ok, out, err) = arkham(data.path(), &["shard", "add", "packets@0.1", "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");

    // A registry nobody listens on: the error names it and what to check; nothing changes.
    let before = snapshot(data.path());
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.1", "--yes"],
        &[("ARKHAM_REGISTRY", "127.0.0.1:9/shards")],
    );
    assert!(!ok);
    assert!(
        err.contains("cannot reach the registry 127.0.0.1:9"),
        "{err}"
    );
    assert_eq!(snapshot(data.path()), before);
}

/// A loopback TCP proxy to `upstream` that cuts every response to a request for `cut_path`
/// after `keep` bytes, as a dropped connection or a killed download would.
fn cutting_proxy(upstream: String, cut_path: String, keep: usize) -> String {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                return;
            };
            let cut = Arc::new(AtomicBool::new(false));
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (flag, path) = (cut.clone(), cut_path.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = client_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if String::from_utf8_lossy(&buf[..n]).contains(&path) {
                        flag.store(true, Ordering::SeqCst);
                    }
                    if server_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let n = if cut.load(Ordering::SeqCst) {
                        n.min(keep.saturating_sub(sent))
                    } else {
                        n
                    };
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if cut.load(Ordering::SeqCst) && sent >= keep {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    address
}

#[test]
fn a_download_cut_midway_installs_nothing_and_the_next_add_completes() {
    let Some(registry) = Registry::start("interrupted download", None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let file = packets_version(work.path(), "0.1.0");
    let data = data_dir("");
    let env = [("ARKHAM_REGISTRY", registry.host.as_str())];
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "push", file.to_str().unwrap(), "--json"],
        &env,
    );
    assert!(ok, "{out}{err}");
    let layer = Digest::of(&std::fs::read(&file).unwrap());

    let fresh = data_dir("");
    let proxy = cutting_proxy(registry.host.clone(), format!("/blobs/{layer}"), 64 * 1024);
    let (ok, _, err) = arkham_with(
        fresh.path(),
        &["shard", "add", &format!("{proxy}/packets@0.1"), "--yes"],
        &[],
    );
    assert!(!ok, "an interrupted download was installed");
    assert!(
        err.contains("broke off") && err.contains("run the command again"),
        "{err}"
    );
    assert_eq!(installed(fresh.path()), serde_json::json!([]));
    nothing_half_written(fresh.path(), &layer);
    assert!(
        !fresh.path().join("arkham.lock").exists()
            || !std::fs::read_to_string(fresh.path().join("arkham.lock"))
                .unwrap()
                .contains("packets")
    );

    let (ok, out, err) = arkham_with(
        fresh.path(),
        &["shard", "add", "packets@0.1", "--yes"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");
}

/// Appends a custom section of `data_len` bytes to the component in `file` (a valid component
/// still, with the same embedded manifest).
fn pad_component(file: &Path, data_len: usize) {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.resize(payload.len() + data_len, 0x5a);
    let mut bytes = std::fs::read(file).unwrap();
    bytes.push(0);
    leb(payload.len(), &mut bytes);
    bytes.extend_from_slice(&payload);
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_component_of_several_upload_chunks_streams_up_and_down() {
    let Some(registry) = Registry::start("streamed layers", None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let file = packets_version(work.path(), "0.1.0");
    // Past oci-client's 4 MiB chunk twice: the upload is three PATCHes.
    pad_component(&file, 9 << 20);
    let layer = Digest::of(&std::fs::read(&file).unwrap());
    let env = [("ARKHAM_REGISTRY", registry.host.as_str())];
    let publisher = data_dir("");
    let (ok, out, err) = arkham_with(
        publisher.path(),
        &["shard", "push", file.to_str().unwrap(), "--json"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["component_digest"], layer.to_string(), "{out}");
    nothing_half_written(publisher.path(), &layer);

    let data = data_dir("");
    let (ok, out, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");
    let stored = data.path().join("store/blobs/sha256").join(layer.hex());
    assert_eq!(Digest::of(&std::fs::read(stored).unwrap()), layer);
}

/// Tags the manifest `from` of `repository` also as each of `tags`, straight through the
/// registry's API (as `crane tag` does).
async fn tag_again(registry: &Registry, repository: &str, from: &str, tags: &[String]) {
    let client = reqwest::Client::new();
    let base = format!("http://{}/v2/{repository}/manifests", registry.host);
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let manifest = client
        .get(format!("{base}/{from}"))
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status().as_u16(), 200);
    let bytes = manifest.bytes().await.unwrap();
    for tag in tags {
        let response = client
            .put(format!("{base}/{tag}"))
            .header("content-type", media_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "tagging {tag}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resolution_reads_every_page_of_tags_and_outdated_shows_pinned_shards() {
    let Some(registry) = Registry::start("tag pages", None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let env = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
    ];
    let data = data_dir("");
    let push = |version: &str| {
        let file = packets_version(work.path(), version);
        let (ok, out, err) = arkham_with(
            data.path(),
            &["shard", "push", file.to_str().unwrap(), "--json"],
            &env,
        );
        assert!(ok, "{out}{err}");
        json(&out)["manifest_digest"].as_str().unwrap().to_string()
    };
    let v010 = push("0.1.0");
    // 150 older tags, which sort before `0.1.0`: in pages of 100, `0.1.0` is on the second.
    let decoys: Vec<String> = (0..150).map(|i| format!("0.0.{i}")).collect();
    tag_again(&registry, "packets", "0.1.0", &decoys).await;
    let (ok, out, err) = arkham_with(data.path(), &["shard", "add", "packets@<1", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");

    // Pinned by digest: update leaves it, --outdated still names the newer release.
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", &format!("packets@{v010}"), "--yes"],
        &env,
    );
    assert!(ok, "{out}{err}");
    push("0.1.1");
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "list", "--outdated", "--json"],
        &env,
    );
    assert!(ok, "{err}");
    let rows = json(&out);
    assert_eq!(rows[0]["name"], "packets", "{rows}");
    assert_eq!(rows[0]["pinned"], true, "{rows}");
    assert_eq!(rows[0]["latest"], "0.1.1", "{rows}");
    assert_eq!(rows[0]["wanted"], serde_json::Value::Null, "{rows}");
    let (ok, out, err) = arkham_with(data.path(), &["shard", "list", "--outdated"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("pinned") && out.contains("0.1.1"), "{out}");
    let (ok, out, err) = arkham_with(data.path(), &["shard", "update", "--json"], &env);
    assert!(ok, "{out}{err}");
    assert_eq!(installed(data.path())[0]["version"], "0.1.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_added_before_installs_with_the_registry_down() {
    let Some(registry) = Registry::start("offline", None) else {
        return;
    };
    let host = registry.host.clone();
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let env = [
        ("ARKHAM_REGISTRY", host.as_str()),
        ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
    ];
    let data = data_dir("");
    let mut digests = BTreeMap::new();
    for version in ["0.1.0", "0.1.1"] {
        let file = packets_version(work.path(), version);
        let (ok, out, err) = arkham_with(
            data.path(),
            &["shard", "push", file.to_str().unwrap(), "--json"],
            &env,
        );
        assert!(ok, "{out}{err}");
        digests.insert(
            version,
            json(&out)["manifest_digest"].as_str().unwrap().to_string(),
        );
    }
    let (ok, out, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(ok && out.contains("installed packets 0.1.1"), "{out}{err}");
    let remove = || {
        let (ok, _, err) = arkham_with(data.path(), &["shard", "remove", "packets"], &env);
        assert!(ok, "{err}");
    };
    remove();
    drop(registry);

    // Online, the registry is the truth: its absence is named, with the way out.
    let (ok, _, err) = arkham_with(data.path(), &["shard", "add", "packets@0.1", "--yes"], &env);
    assert!(!ok && err.contains("cannot reach the registry"), "{err}");
    assert!(err.contains("--offline"), "{err}");
    // Offline: resolved against what was added before.
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.1", "--offline", "--yes"],
        &env,
    );
    assert!(ok && out.contains("installed packets 0.1.1"), "{out}{err}");
    remove();
    // A digest the store holds needs no network, without --offline.
    let (ok, out, err) = arkham_with(
        data.path(),
        &[
            "shard",
            "add",
            &format!("packets@{}", digests["0.1.1"]),
            "--yes",
        ],
        &env,
    );
    assert!(ok && out.contains("installed packets 0.1.1"), "{out}{err}");
    remove();
    // What was never added is not invented: a version offline, a digest online.
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "add", "packets@0.2", "--offline", "--yes"],
        &env,
    );
    assert!(!ok && err.contains("0.1.1"), "{err}");
    let (ok, _, err) = arkham_with(
        data.path(),
        &[
            "shard",
            "add",
            &format!("packets@{}", digests["0.1.0"]),
            "--yes",
        ],
        &env,
    );
    assert!(!ok && err.contains("cannot reach the registry"), "{err}");
    let (ok, _, err) = arkham_with(
        data.path(),
        &[
            "shard",
            "add",
            &format!("packets@{}", digests["0.1.0"]),
            "--offline",
            "--yes",
        ],
        &env,
    );
    assert!(!ok && err.contains("not in the local cache"), "{err}");
    assert_eq!(installed(data.path()), serde_json::json!([]));
}

/// `arkham registry login HOST -u USER --password-stdin ARGS` with `password` on stdin:
/// (success, stdout + stderr).
fn login(
    docker_config: &Path,
    host: &str,
    user: &str,
    password: &str,
    args: &[&str],
) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(crate::harness::arkham_bin())
        .args(["registry", "login", host, "-u", user, "--password-stdin"])
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn login_is_checked_before_it_is_stored_and_logout_removes_it() {
    let Some(registry) = Registry::start("registry login check", Some(("ark", "s3cret-pw"))) else {
        return;
    };
    let docker = tempfile::tempdir().unwrap();
    let config = docker.path().join("config.json");
    let (ok, text) = login(docker.path(), &registry.host, "ark", "not-the-pw", &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("refused these credentials") && text.contains("nothing was stored"),
        "{text}"
    );
    assert!(!text.contains("not-the-pw"), "{text}");
    assert!(!config.exists(), "wrong credentials were stored");

    let (ok, text) = login(
        docker.path(),
        &registry.host,
        "ark",
        "s3cret-pw",
        &["--json"],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("\"verified\":true") && !text.contains("s3cret-pw"),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains(&registry.host)
    );

    let logout = |json: bool| {
        let mut args = vec!["registry", "logout", registry.host.as_str()];
        if json {
            args.push("--json");
        }
        let out = Command::new(crate::harness::arkham_bin())
            .args(&args)
            .env("DOCKER_CONFIG", docker.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(logout(true).contains("\"removed\":true"));
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains(&registry.host)
    );
    assert!(logout(false).contains("no credentials for"));

    // A registry that asks for nothing: stored, and said plainly that nothing was checked.
    let Some(open) = Registry::start("registry login, no auth", None) else {
        return;
    };
    let (ok, text) = login(docker.path(), &open.host, "anyone", "anything", &[]);
    assert!(ok && text.contains("asks for no credentials"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_auth_registry_as_ghcr_runs_one() {
    let policy = TokenPolicy {
        users: vec![("ark", "tok-pw-1"), ("reader", "read-pw-2")],
        refresh_tokens: vec![("identity-ark-3", "ark")],
        grants: vec![
            ("public/", "anonymous", &["pull"]),
            ("public/", "ark", &["pull", "push"]),
            ("private/", "ark", &["pull", "push"]),
            ("private/", "reader", &["pull"]),
        ],
    };
    let Some((registry, tokens)) = Registry::start_with_tokens("token auth", policy) else {
        return;
    };
    let host = registry.host.clone();
    let work = tempfile::tempdir().unwrap();
    let file = packets_version(work.path(), "0.1.0");
    let file = file.to_str().unwrap();
    let ark_config = tempfile::tempdir().unwrap();
    let nobody = tempfile::tempdir().unwrap();
    let data = data_dir("");
    let outputs = std::cell::RefCell::new(String::new());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let (ok, out, err) = arkham_with(data.path(), args, env);
        let text = out + &err;
        outputs.borrow_mut().push_str(&text);
        (ok, text)
    };
    let as_ark = [("DOCKER_CONFIG", ark_config.path().to_str().unwrap())];
    let anonymous = [("DOCKER_CONFIG", nobody.path().to_str().unwrap())];
    let public = format!("{host}/public/packets");
    let private = format!("{host}/private/packets");

    // Pushing needs a login; the token service's refusal reads as one.
    let (ok, text) = run(&["shard", "push", file, &public], &anonymous);
    assert!(
        !ok && text.contains(&format!("arkham registry login {host}")),
        "{text}"
    );

    // Login goes through the token service's challenge, and a wrong password stores nothing.
    let (ok, text) = login(ark_config.path(), &host, "ark", "wrong", &[]);
    assert!(!ok && text.contains("refused these credentials"), "{text}");
    assert!(!ark_config.path().join("config.json").exists());
    let (ok, text) = login(ark_config.path(), &host, "ark", "tok-pw-1", &[]);
    assert!(ok && text.contains("accepted the credentials"), "{text}");
    outputs.borrow_mut().push_str(&text);

    // With the docker config's credentials: push to both.
    for repository in [&public, &private] {
        let (ok, text) = run(&["shard", "push", file, repository], &as_ark);
        assert!(ok, "{text}");
    }
    let (ok, text) = run(
        &["shard", "add", &format!("{private}@0.1"), "--yes"],
        &as_ark,
    );
    assert!(ok && text.contains("installed packets 0.1.0"), "{text}");
    let (ok, text) = run(&["shard", "remove", "packets"], &[]);
    assert!(ok, "{text}");

    // Anonymous: the public repository pulls, the private one asks for a login.
    let (ok, text) = run(
        &["shard", "add", &format!("{public}@0.1"), "--yes"],
        &anonymous,
    );
    assert!(ok && text.contains("installed packets 0.1.0"), "{text}");
    let (ok, text) = run(&["shard", "remove", "packets"], &[]);
    assert!(ok, "{text}");
    let (ok, text) = run(
        &["shard", "add", &format!("{private}@0.1"), "--yes"],
        &anonymous,
    );
    assert!(!ok && text.contains("registry login"), "{text}");

    // From the environment: `reader` pulls the private repository, and may not push to it.
    let reader = [
        ("DOCKER_CONFIG", nobody.path().to_str().unwrap()),
        ("ARKHAM_REGISTRY_USERNAME", "reader"),
        ("ARKHAM_REGISTRY_PASSWORD", "read-pw-2"),
    ];
    let (ok, text) = run(
        &["shard", "add", &format!("{private}@0.1"), "--yes"],
        &reader,
    );
    assert!(ok && text.contains("installed packets 0.1.0"), "{text}");
    let (ok, text) = run(&["shard", "push", file, &private, "--force"], &reader);
    assert!(!ok, "{text}");
    assert!(
        text.contains("does not let `reader` push to `private/packets`")
            && text.contains("write access"),
        "{text}"
    );

    // An identity token in the docker config (what `docker login` keeps for some registries),
    // exchanged for access tokens through OAuth2's refresh grant.
    let identity = tempfile::tempdir().unwrap();
    let identity_config = |token: &str| {
        std::fs::write(
            identity.path().join("config.json"),
            serde_json::json!({"auths": {&host: {"auth": "YXJrOg==", "identitytoken": token}}})
                .to_string(),
        )
        .unwrap();
    };
    identity_config("identity-ark-3");
    let as_identity = [("DOCKER_CONFIG", identity.path().to_str().unwrap())];
    let (ok, text) = run(&["shard", "push", file, &private, "--force"], &as_identity);
    assert!(ok, "{text}");
    let (ok, text) = run(&["shard", "remove", "packets"], &[]);
    assert!(ok, "{text}");
    let (ok, text) = run(
        &["shard", "add", &format!("{private}@0.1"), "--yes"],
        &as_identity,
    );
    assert!(ok && text.contains("installed packets 0.1.0"), "{text}");
    identity_config("identity-revoked");
    let (ok, text) = run(
        &["shard", "add", &format!("{private}@0.1"), "--yes"],
        &as_identity,
    );
    assert!(!ok && text.contains("registry login"), "{text}");

    // No secret in anything said: passwords, nor the tokens the service issued.
    let issued = tokens.issued.lock().unwrap().clone();
    assert!(!issued.is_empty());
    for secret in ["tok-pw-1", "read-pw-2", "identity-ark-3"]
        .into_iter()
        .map(String::from)
        .chain(issued)
    {
        assert!(!outputs.borrow().contains(&secret), "a secret was printed");
    }
}

#[test]
fn a_password_typed_at_the_prompt_is_not_echoed() {
    use std::io::{Read, Write};
    if !require("script", "hidden password prompt") {
        return;
    }
    let Some(registry) = Registry::start("hidden password prompt", Some(("ark", "typed-pw-9")))
    else {
        return;
    };
    let docker = tempfile::tempdir().unwrap();
    // `script` gives the command a terminal; what it prints is what the terminal shows.
    let command = format!(
        "{} registry login {} -u ark",
        crate::harness::arkham_bin(),
        registry.host
    );
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("DOCKER_CONFIG", docker.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    // Type only once the prompt is up: echo is off by then.
    while !String::from_utf8_lossy(&shown).contains("password for ark@") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&shown));
        shown.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed-pw-9\n").unwrap();
    stdout.read_to_end(&mut shown).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let shown = String::from_utf8_lossy(&shown);
    assert!(!shown.contains("typed-pw-9"), "echoed: {shown}");
    assert!(shown.contains("accepted the credentials"), "{shown}");
    let config = std::fs::read_to_string(docker.path().join("config.json")).unwrap();
    assert!(config.contains(&registry.host));
}
