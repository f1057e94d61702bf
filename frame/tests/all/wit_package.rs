//! The WIT contract as an OCI artifact (`arkham wit push|pull`) against Debian's
//! `docker-registry`: the artifact has the shape wkg 0.16 (oci-client 0.17, oci-wasm 0.6) writes
//! for a WIT package, and what is pulled back is the package in `wit/`.

use crate::harness::{Registry, arkham_with, data_dir, packaged};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use test_shards::PACKETS;
use wit_parser::{PackageId, Resolve, WorldKey};

/// A package as names: its name, each interface with its functions and types, each world with
/// its imports and exports (as elaborated, so with the interfaces they use). Comparable across resolves (ids differ, names do not).
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    name: String,
    interfaces: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    worlds: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
}

fn summary(resolve: &Resolve, package: PackageId) -> Summary {
    let pkg = &resolve.packages[package];
    let interfaces = pkg
        .interfaces
        .iter()
        .map(|(name, id)| {
            let iface = &resolve.interfaces[*id];
            (
                name.clone(),
                (
                    iface.functions.keys().cloned().collect(),
                    iface.types.keys().cloned().collect(),
                ),
            )
        })
        .collect();
    let keys = |items: &mut dyn Iterator<Item = &WorldKey>| {
        items
            .map(|key| resolve.name_world_key(key))
            .collect::<BTreeSet<_>>()
    };
    let worlds = pkg
        .worlds
        .iter()
        .map(|(name, id)| {
            let world = &resolve.worlds[*id];
            (
                name.clone(),
                (
                    keys(&mut world.imports.keys()),
                    keys(&mut world.exports.keys()),
                ),
            )
        })
        .collect();
    Summary {
        name: pkg.name.to_string(),
        interfaces,
        worlds,
    }
}

fn repo_wit() -> (Resolve, PackageId) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit")))
        .unwrap();
    (resolve, package)
}

/// What oci-wasm 0.6's `Component::from_package` lists as a WIT package's exports, computed here
/// on the repository's `wit/` as that code does: each world's exports, each world
/// (`ns:name/world@version`), each interface.
fn oci_wasm_exports(resolve: &Resolve, package: PackageId) -> BTreeSet<String> {
    let pkg = &resolve.packages[package];
    let version = pkg.name.version.as_ref().unwrap();
    let mut exports = BTreeSet::new();
    for id in pkg.worlds.values() {
        let world = &resolve.worlds[*id];
        exports.extend(world.exports.keys().map(|k| resolve.name_world_key(k)));
        exports.insert(format!(
            "{}:{}/{}@{version}",
            pkg.name.namespace, pkg.name.name, world.name
        ));
    }
    exports.extend(
        pkg.interfaces
            .values()
            .map(|id| resolve.id_of(*id).unwrap()),
    );
    exports
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wit_package_round_trips_in_wkgs_layout() {
    let Some(registry) = Registry::start("wit package push/pull", None) else {
        return;
    };
    let (wit, wit_pkg) = repo_wit();
    let expected = summary(&wit, wit_pkg);
    let version = wit.packages[wit_pkg].name.version.clone().unwrap();
    let data = data_dir("");
    let docker = tempfile::tempdir().unwrap();
    let env = [
        ("ARKHAM_REGISTRY", registry.host.as_str()),
        ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
    ];

    // The default repository is wkg's `{namespace}/{name}` under the default registry, the tag
    // the package version.
    let (ok, out, err) = arkham_with(data.path(), &["wit", "push", "--json"], &env);
    assert!(ok, "{out}{err}");
    let pushed = json(&out);
    assert_eq!(
        pushed["reference"],
        format!("{}/arkham/shard:{version}", registry.host)
    );

    let client = reqwest::Client::new();
    let base = format!("http://{}/v2/arkham/shard", registry.host);
    let manifest: serde_json::Value = client
        .get(format!("{base}/manifests/{version}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(manifest.get("artifactType").is_none(), "{manifest}");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "shard.wasm"
    );
    assert_eq!(layers[0]["digest"], pushed["component_digest"]);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        version.to_string()
    );

    let blob = |digest: &serde_json::Value| {
        let url = format!("{base}/blobs/{}", digest.as_str().unwrap());
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap().to_vec()
        }
    };
    let config = json(std::str::from_utf8(&blob(&manifest["config"]["digest"]).await).unwrap());
    let fields: BTreeSet<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "created",
            "author",
            "architecture",
            "os",
            "layerDigests",
            "component"
        ])
    );
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert!(config["author"].is_null());
    assert!(config["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        config["layerDigests"],
        serde_json::json!([layers[0]["digest"]])
    );
    assert_eq!(config["component"]["imports"], serde_json::json!([]));
    assert!(config["component"]["target"].is_null());
    let exports: BTreeSet<String> = config["component"]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(exports, oci_wasm_exports(&wit, wit_pkg));
    assert!(exports.contains(&format!("arkham:shard/buffered-shard@{version}")));

    // The layer is the binary WIT package of `wit/`.
    let layer = blob(&layers[0]["digest"]).await;
    assert_eq!(layer.len() as u64, layers[0]["size"].as_u64().unwrap());
    match wit_component::decode(&layer).unwrap() {
        wit_component::DecodedWasm::WitPackage(resolve, package) => {
            assert_eq!(summary(&resolve, package), expected);
        }
        wit_component::DecodedWasm::Component(..) => panic!("the layer is a component"),
    }

    // Pulled as text, by a requirement, into a folder that parses as a WIT package again.
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("wit");
    let requirement = format!("arkham/shard@{}.{}", version.major, version.minor);
    let (ok, out, err) = arkham_with(
        data.path(),
        &[
            "wit",
            "pull",
            &requirement,
            "--out",
            folder.to_str().unwrap(),
        ],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(
        folder.join(format!("arkham-shard-{version}.wit")).is_file(),
        "{out}"
    );
    assert!(folder.join("deps/wasi-http-0.2.12.wit").is_file(), "{out}");
    let mut pulled = Resolve::default();
    let (package, _) = pulled.push_dir(&folder).unwrap();
    assert_eq!(summary(&pulled, package), expected);

    // Printed: the package's text.
    let (ok, out, err) = arkham_with(data.path(), &["wit", "pull", "arkham/shard"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("package arkham:shard@{version};"))
            && out.contains("world buffered-shard"),
        "{out}"
    );

    // As binary: the layer's bytes.
    let file = work.path().join("shard.wasm");
    let (ok, out, err) = arkham_with(
        data.path(),
        &[
            "wit",
            "pull",
            &format!("{}/arkham/shard:{version}", registry.host),
            "--wasm",
            "--out",
            file.to_str().unwrap(),
        ],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(&file).unwrap(), layer);

    // A version is not overwritten unless forced, and the tag is the package version.
    let (ok, _, err) = arkham_with(data.path(), &["wit", "push"], &env);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, out, err) = arkham_with(data.path(), &["wit", "push", "--force", "--json"], &env);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["replaced"], true);
    let (ok, _, err) = arkham_with(data.path(), &["wit", "push", "arkham/shard:9.9.9"], &env);
    assert!(!ok && err.contains("package version"), "{err}");

    // A shard's artifact is a component, not a WIT package.
    let shard = packaged(&PACKETS);
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "push", shard.to_str().unwrap()],
        &env,
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = arkham_with(data.path(), &["wit", "pull", "packets"], &env);
    assert!(!ok && err.contains("holds a component"), "{err}");
}
