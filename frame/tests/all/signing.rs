//! Signed shards (issue 18, section 2): push → sign → add under a `require` policy against the
//! token-auth registry; every refusal (unsigned, an untrusted key, the tag moved after signing,
//! a signature copied from another digest, a corrupt signature) happens before the component is
//! downloaded and leaves the installed shards and the lockfile as they were; cosign's encrypted
//! key files, their password from COSIGN_PASSWORD or the terminal; and interop with an
//! independent implementation of cosign's scheme and key files (scripts/cosign-interop.py).
//! Keyless signatures (a Fulcio certificate and a Rekor entry) are made by that script's test
//! Sigstore: one whose identity the policy trusts installs, and every way one can fail is
//! refused the same way.

use crate::harness::{
    Frame, Registry, TokenPolicy, admin_token, arkham_with, data_dir, manifest_of, package_with,
    require,
};
use arkham_registry::digest::Digest;
use arkham_registry::reference::Location;
use arkham_registry::repo::Repo;
use arkham_registry::signature;
use std::path::{Path, PathBuf};
use test_shards::PACKETS;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// PACKETS packaged as `version`, with `description` (to make different bytes of one version).
fn packets(dir: &Path, version: &str, description: &str) -> PathBuf {
    let mut manifest = manifest_of(&PACKETS);
    manifest.version = version.parse().unwrap();
    manifest.description = description.to_string();
    let path = dir.join(format!(
        "packets-{version}-{}.shard.wasm",
        description.len()
    ));
    package_with(&PACKETS, &manifest, &path);
    path
}

/// A token-auth registry (anonymous may pull and push under `signed/`), two key pairs, and a
/// data dir whose policy requires the `trusted` key for `HOST/signed/*`, with packets 0.1.0
/// pushed, signed and installed.
struct Signed {
    registry: Registry,
    _tokens: crate::harness::TokenServer,
    work: tempfile::TempDir,
    docker: tempfile::TempDir,
    data: tempfile::TempDir,
    repository: String,
    trusted_fingerprint: String,
}

impl Signed {
    fn start(test: &str) -> Option<Self> {
        let policy = TokenPolicy {
            users: vec![],
            refresh_tokens: vec![],
            grants: vec![("signed/", "anonymous", &["pull", "push"])],
        };
        let (registry, tokens) = Registry::start_with_tokens(test, policy)?;
        let work = tempfile::tempdir().unwrap();
        let docker = tempfile::tempdir().unwrap();
        let repository = format!("{}/signed/packets", registry.host);
        let config = format!(
            "[[trust]]\nregistry = \"{}/signed/*\"\nkeys = [\"keys/trusted.pub\"]\nsignatures = \"require\"\n",
            registry.host
        );
        let data = data_dir(&config);
        let mut setup = Self {
            registry,
            _tokens: tokens,
            work,
            docker,
            data,
            repository,
            trusted_fingerprint: String::new(),
        };
        for name in ["trusted", "other"] {
            let prefix = setup.work.path().join(name);
            let (ok, out, err) = setup.run(&[
                "key",
                "generate",
                "--out",
                prefix.to_str().unwrap(),
                "--json",
            ]);
            assert!(ok, "{out}{err}");
            if name == "trusted" {
                setup.trusted_fingerprint = json(&out)["fingerprint"].as_str().unwrap().to_string();
            }
        }
        // The private key is the owner's alone; the public one is for everyone.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |file: &str| {
            std::fs::metadata(setup.key(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("trusted.key"), mode("trusted.pub")), (0o600, 0o644));
        let private = std::fs::read_to_string(setup.key("trusted.key")).unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{private}"
        );
        std::fs::create_dir(setup.data.path().join("keys")).unwrap();
        std::fs::copy(
            setup.key("trusted.pub"),
            setup.data.path().join("keys/trusted.pub"),
        )
        .unwrap();

        let v010 = packets(setup.work.path(), "0.1.0", "signed");
        let pushed = setup.push(&v010, Some("trusted.key"), false);
        assert_eq!(
            pushed["signature"]["fingerprint"],
            setup.trusted_fingerprint.as_str()
        );
        let (ok, out, err) = setup.run(&[
            "shard",
            "add",
            &format!("{}@0.1", setup.repository),
            "--yes",
        ]);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("installed packets 0.1.0")
                && out.contains(&format!(
                    "signed by the trusted key {}",
                    setup.trusted_fingerprint
                )),
            "{out}"
        );
        // Where `refused` looks for a downloaded component: this one was.
        assert!(
            setup
                .stored(pushed["component_digest"].as_str().unwrap())
                .exists()
        );
        Some(setup)
    }

    /// Where the data dir's store keeps the blob `digest`.
    fn stored(&self, digest: &str) -> PathBuf {
        stored(self.data.path(), digest)
    }

    fn key(&self, file: &str) -> PathBuf {
        self.work.path().join(file)
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with(args, &[])
    }

    /// `run` with more environment variables.
    fn run_with(&self, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
        let mut all = vec![("DOCKER_CONFIG", self.docker.path().to_str().unwrap())];
        all.extend_from_slice(envs);
        arkham_with(self.data.path(), args, &all)
    }

    /// Pushes `file` to the signed repository (signed with `key` when given); the push's JSON.
    fn push(&self, file: &Path, key: Option<&str>, force: bool) -> serde_json::Value {
        let key = key.map(|k| self.key(k));
        let mut args = vec![
            "shard",
            "push",
            file.to_str().unwrap(),
            &self.repository,
            "--json",
        ];
        if let Some(key) = &key {
            args.extend(["--sign", key.to_str().unwrap()]);
        }
        if force {
            args.push("--force");
        }
        let (ok, out, err) = self.run(&args);
        assert!(ok, "{out}{err}");
        json(&out)
    }

    /// The installed shards and the lockfile, which a refusal must leave as they were.
    fn snapshot(&self) -> (String, String) {
        snapshot(self.data.path(), &self.env())
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("DOCKER_CONFIG", self.docker.path().to_str().unwrap())]
    }

    /// Asserts `add REF` is refused with every one of `needles` in the message, before the
    /// component `component` (a digest) was downloaded, changing nothing.
    fn refused(&self, reference: &str, component: &str, needles: &[&str]) {
        refused(self.data.path(), &self.env(), reference, component, needles);
    }

    fn repo(&self) -> Repo {
        Repo::open(
            &Location::Remote {
                registry: self.registry.host.clone(),
                repository: "signed/packets".to_string(),
            },
            Default::default(),
        )
        .unwrap()
    }
}

/// Where the store of the data dir `data` keeps the blob `digest`.
fn stored(data: &Path, digest: &str) -> PathBuf {
    data.join("store/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The installed shards and the lockfile of `data`, which a refusal must leave as they were.
fn snapshot(data: &Path, env: &[(&str, &str)]) -> (String, String) {
    let (ok, out, err) = arkham_with(data, &["shard", "list", "--json"], env);
    assert!(ok, "{err}");
    (
        out,
        std::fs::read_to_string(data.join("arkham.lock")).unwrap_or_default(),
    )
}

/// Asserts `add REF` in `data` is refused with every one of `needles` in the message (and what
/// was expected, what was found), before the component `component` (a digest) was downloaded,
/// changing nothing.
fn refused(data: &Path, env: &[(&str, &str)], reference: &str, component: &str, needles: &[&str]) {
    let before = snapshot(data, env);
    let (ok, out, err) = arkham_with(data, &["shard", "add", reference, "--yes"], env);
    assert!(!ok, "{out}{err}");
    for needle in needles
        .iter()
        .chain(&["expected", "found", "Nothing was downloaded or changed"])
    {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert_eq!(snapshot(data, env), before);
    assert!(
        !stored(data, component).exists(),
        "the component was downloaded although refused: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_shard_installs_under_require_and_locked_reverifies() {
    let Some(s) = Signed::start("signed install") else {
        return;
    };
    let lock = std::fs::read_to_string(s.data.path().join("arkham.lock")).unwrap();
    assert!(
        lock.contains(&format!("signers = [\"{}\"]", s.trusted_fingerprint)),
        "{lock}"
    );
    let reference = format!("{}:0.1.0", s.repository);
    let (ok, out, err) = s.run(&["shard", "list", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)[0]["signers"][0], s.trusted_fingerprint.as_str());
    // inspect shows the signatures and the policy's verdict.
    let (ok, out, err) = s.run(&["shard", "inspect", &reference, "--json"]);
    assert!(ok, "{err}");
    let inspected = json(&out);
    assert_eq!(inspected["signatures"]["accepted"], true, "{out}");
    assert_eq!(inspected["signatures"]["mode"], "require");
    assert_eq!(
        inspected["signatures"]["checks"][0]["fingerprint"],
        s.trusted_fingerprint.as_str()
    );
    let trusted_pub = s.key("trusted.pub");
    let (ok, out, err) = s.run(&[
        "shard",
        "verify",
        &reference,
        "--key",
        trusted_pub.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let verified = json(&out);
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["key"], s.trusted_fingerprint.as_str());
    assert!(verified["digest"].as_str().unwrap().starts_with("sha256:"));
    let other_pub = s.key("other.pub");
    let (ok, _, err) = s.run(&[
        "shard",
        "verify",
        &reference,
        "--key",
        other_pub.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("one by a key not trusted here"),
        "{err}"
    );

    // A second signer adds a layer; both verify.
    let other_key = s.key("other.key");
    let (ok, out, err) = s.run(&[
        "shard",
        "sign",
        &reference,
        "--key",
        other_key.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["signatures"], 2);
    for key in [&trusted_pub, &other_pub] {
        let (ok, _, err) = s.run(&[
            "shard",
            "verify",
            &reference,
            "--key",
            key.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
    }

    // The lockfile installs elsewhere, verified again, and the pinned signer is required.
    let second = data_dir(&std::fs::read_to_string(s.data.path().join("arkham.toml")).unwrap());
    std::fs::create_dir(second.path().join("keys")).unwrap();
    std::fs::copy(&trusted_pub, second.path().join("keys/trusted.pub")).unwrap();
    std::fs::write(second.path().join("arkham.lock"), &lock).unwrap();
    let env = [("DOCKER_CONFIG", s.docker.path().to_str().unwrap())];
    let (ok, out, err) = arkham_with(second.path(), &["shard", "add", "--locked", "--yes"], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("installed packets 0.1.0"), "{out}");
    // The signatures read were kept: the check holds offline too.
    let (ok, out, err) = arkham_with(
        second.path(),
        &["shard", "add", "--locked", "--yes", "--offline"],
        &env,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = arkham_with(
        second.path(),
        &[
            "shard",
            "verify",
            &format!("{}@{}", s.repository, verified["digest"].as_str().unwrap()),
            "--key",
            trusted_pub.to_str().unwrap(),
            "--offline",
        ],
        &[
            ("DOCKER_CONFIG", s.docker.path().to_str().unwrap()),
            ("ARKHAM_REGISTRY", "127.0.0.1:1"),
        ],
    );
    assert!(ok && out.contains("verified"), "{out}{err}");
    // The lockfile's signer no longer trusted (the rule now trusts only `other`): refused.
    std::fs::copy(&other_pub, second.path().join("keys/trusted.pub")).unwrap();
    let third_lock = lock.clone();
    std::fs::write(second.path().join("arkham.lock"), &third_lock).unwrap();
    let (ok, _, err) = arkham_with(second.path(), &["shard", "add", "--locked", "--yes"], &env);
    assert!(!ok && err.contains("recorded in arkham.lock"), "{err}");
    assert_eq!(
        std::fs::read_to_string(second.path().join("arkham.lock")).unwrap(),
        lock
    );
}

/// The admin API's install from a registry (`{"reference": …}`) goes through the same pipeline
/// as `shard add`: the policy refuses an unsigned shard before download, and what it installs
/// is pinned in the lockfile with its signer.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_installs_from_a_registry_through_the_same_checks() {
    let Some(s) = Signed::start("admin install from a registry") else {
        return;
    };
    let unsigned = s.push(&packets(s.work.path(), "0.2.0", "unsigned"), None, false);
    let frame = Frame::start(s.data.path());
    let token = admin_token(s.data.path());
    let post = |body: String| {
        frame
            .client
            .post(format!("{}/api/frame/admin/shards", frame.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, json(&text))
    };
    let reference = |version: &str| format!("{{\"reference\": \"{}@{version}\"}}", s.repository);

    let before = s.snapshot();
    let (status, body) = answer(post(reference("0.2")).await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "untrusted");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("expected") && message.contains("Nothing was downloaded or changed"),
        "{message}"
    );
    assert!(
        !s.stored(unsigned["component_digest"].as_str().unwrap())
            .exists()
    );
    assert_eq!(s.snapshot(), before);

    let (status, body) = answer(post(reference("7")).await.unwrap()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &"not_found".into()),
        "{body}"
    );
    let (status, body) = answer(post("{\"ref\": \"packets\"}".to_string()).await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reference"),
        "{body}"
    );
    assert_eq!(s.snapshot(), before);

    s.push(
        &packets(s.work.path(), "0.3.0", "signed again"),
        Some("trusted.key"),
        false,
    );
    let (status, body) = answer(post(reference("0.3")).await.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["installed"]["shard"]["version"], "0.3.0");
    assert_eq!(body["signers"][0], s.trusted_fingerprint.as_str());
    let (status, _) = frame.call("GET", "/api/packets/", None).await;
    assert_eq!(status, 200);
    let lock = std::fs::read_to_string(s.data.path().join("arkham.lock")).unwrap();
    assert!(
        lock.contains("version = \"0.3.0\"")
            && lock.contains("requirement = \"^0.3\"")
            && lock.contains(&format!("signers = [\"{}\"]", s.trusted_fingerprint)),
        "{lock}"
    );
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_shard_is_refused_where_a_signature_is_required() {
    let Some(s) = Signed::start("unsigned refused") else {
        return;
    };
    let pushed = s.push(&packets(s.work.path(), "0.2.0", "unsigned"), None, false);
    s.refused(
        &format!("{}:0.2.0", s.repository),
        pushed["component_digest"].as_str().unwrap(),
        &[
            "no signature",
            "no tag sha256-",
            "arkham shard sign",
            &s.trusted_fingerprint,
        ],
    );
    // `update` to an unsigned version within the requirement (^0.1) is refused the same way.
    let update = s.push(&packets(s.work.path(), "0.1.5", "unsigned"), None, false);
    let before = s.snapshot();
    let (ok, out, err) = s.run(&["shard", "update", "--yes"]);
    assert!(
        !ok && err.contains("no signature") && err.contains(":0.1.5"),
        "{out}{err}"
    );
    assert_eq!(s.snapshot(), before);
    assert!(
        !s.stored(update["component_digest"].as_str().unwrap())
            .exists()
    );

    // Under `verify`, an unsigned shard installs, saying so plainly.
    let config = std::fs::read_to_string(s.data.path().join("arkham.toml")).unwrap();
    std::fs::write(
        s.data.path().join("arkham.toml"),
        config.replace("\"require\"", "\"verify\""),
    )
    .unwrap();
    let (ok, out, err) = s.run(&["shard", "add", &format!("{}:0.2.0", s.repository), "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(&format!(
            "warning: installing an unsigned shard: {}:0.2.0",
            s.repository
        )),
        "{err}"
    );
    let lock = std::fs::read_to_string(s.data.path().join("arkham.lock")).unwrap();
    assert!(
        lock.contains("version = \"0.2.0\"") && !lock.contains("signers"),
        "{lock}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_signed_by_an_untrusted_key_is_refused() {
    let Some(s) = Signed::start("untrusted key refused") else {
        return;
    };
    let pushed = s.push(
        &packets(s.work.path(), "0.3.0", "other key"),
        Some("other.key"),
        false,
    );
    let (ok, out, err) = s.run(&["shard", "inspect", &format!("{}:0.3.0", s.repository)]);
    assert!(ok, "{err}");
    assert!(
        out.contains("signatures:   1 signature: one by a key not trusted here")
            && out.contains("(require): refused"),
        "{out}"
    );
    s.refused(
        &format!("{}:0.3.0", s.repository),
        pushed["component_digest"].as_str().unwrap(),
        &[
            "1 signature: one by a key not trusted here",
            "add its public key",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moved_after_signing_or_a_copied_signature_is_refused() {
    let Some(s) = Signed::start("moved tag refused") else {
        return;
    };
    let v1 = s.push(
        &packets(s.work.path(), "0.4.0", "first"),
        Some("trusted.key"),
        false,
    );
    let v2 = s.push(
        &packets(s.work.path(), "0.4.0", "second, after signing"),
        None,
        true,
    );
    let reference = format!("{}:0.4.0", s.repository);
    let component = v2["component_digest"].as_str().unwrap();
    s.refused(
        &reference,
        component,
        &["no signature", "its tag may have been moved"],
    );

    // The first manifest's signature copied to the second's signature tag: it covers another
    // digest.
    let repo = s.repo();
    let first: Digest = v1["manifest_digest"].as_str().unwrap().parse().unwrap();
    let second: Digest = v2["manifest_digest"].as_str().unwrap().parse().unwrap();
    let (bytes, _) = repo
        .manifest(&signature::signature_tag(&first))
        .await
        .unwrap();
    repo.push_manifest(&signature::signature_tag(&second), &bytes)
        .await
        .unwrap();
    s.refused(
        &reference,
        component,
        &[
            &format!("one over another manifest ({first})"),
            "sign this digest",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_signature_is_refused() {
    let Some(s) = Signed::start("corrupt signature refused") else {
        return;
    };
    let pushed = s.push(
        &packets(s.work.path(), "0.5.0", "corrupt"),
        Some("trusted.key"),
        false,
    );
    let repo = s.repo();
    let digest: Digest = pushed["manifest_digest"].as_str().unwrap().parse().unwrap();
    let tag = signature::signature_tag(&digest);
    let (bytes, _) = repo.manifest(&tag).await.unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    manifest["layers"][0]["annotations"][signature::SIGNATURE_ANNOTATION] =
        serde_json::Value::from("bm90IGEgc2lnbmF0dXJl");
    repo.push_manifest(&tag, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    s.refused(
        &format!("{}:0.5.0", s.repository),
        pushed["component_digest"].as_str().unwrap(),
        &[
            "malformed (its signature is not a DER ECDSA signature)",
            "the signature is corrupt",
        ],
    );
}

/// A python3 that imports every one of `modules` (on PATH, else Debian's, where apt-get puts
/// python3-cryptography and python3-nacl); `None` outside CI when there is none, a failure
/// under CI=true.
fn python_with(modules: &[&str], test: &str) -> Option<&'static str> {
    let import = format!("import {}", modules.join(", "));
    let found = ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", &import])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs python3 with {modules:?} (Debian: python3-cryptography, python3-nacl; scripts/setup --test installs them) and CI=true"
        );
        eprintln!("SKIPPED {test}: no python3 imports {modules:?}");
    }
    found
}

/// A python3 importing `modules` and a plain loopback registry, for a test against the
/// independent implementation; `None` outside CI when either is missing.
fn interop(test: &str, modules: &[&str]) -> Option<(&'static str, Registry)> {
    let interpreter = python_with(modules, test)?;
    Some((interpreter, Registry::start(test, None)?))
}

/// Runs scripts/cosign-interop.py with `python`: (success, stdout + stderr).
fn interop_script(python: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cosign-interop.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(args)
        .env_remove("COSIGN_PASSWORD")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn signatures_interoperate_with_an_independent_cosign_implementation() {
    let test = "cosign interop";
    let Some((interpreter, registry)) = interop(test, &["cryptography"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let data = data_dir("");
    let env = [("DOCKER_CONFIG", docker.path().to_str().unwrap())];
    let run = |args: &[&str]| arkham_with(data.path(), args, &env);
    let python = |args: &[&str]| interop_script(interpreter, args, &[]);
    let file = packets(work.path(), "0.1.0", "interop");
    let repository = format!("{}/interop/packets", registry.host);
    let (ok, out, err) = run(&[
        "shard",
        "push",
        file.to_str().unwrap(),
        &repository,
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let digest = json(&out)["manifest_digest"].as_str().unwrap().to_string();
    let reference = format!("{repository}:0.1.0");
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();

    // Python signs with a key `cryptography` made; arkham verifies.
    let (ok, text) = python(&["genkey", &path("py")]);
    assert!(ok, "{text}");
    let (ok, text) = python(&[
        "sign",
        &registry.host,
        "interop/packets",
        &digest,
        &path("py.key"),
    ]);
    assert!(ok, "{text}");
    let (ok, out, err) = run(&[
        "shard",
        "verify",
        &reference,
        "--key",
        &path("py.pub"),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["verified"], true);

    // arkham signs (adding a layer, keeping Python's); Python verifies both, arkham too; and
    // arkham reads the private key `cryptography` wrote.
    let (ok, out, err) = run(&["key", "generate", "--out", &path("ark")]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&[
        "shard",
        "sign",
        &reference,
        "--key",
        &path("ark.key"),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["signatures"], 2);
    for key in ["ark.pub", "py.pub"] {
        let (ok, text) = python(&[
            "verify",
            &registry.host,
            "interop/packets",
            &digest,
            &path(key),
        ]);
        assert!(ok && text.contains("verified"), "{key}: {text}");
        let (ok, _, err) = run(&["shard", "verify", &reference, "--key", &path(key)]);
        assert!(ok, "{key}: {err}");
    }
    let (ok, out, err) = run(&[
        "shard",
        "sign",
        &reference,
        "--key",
        &path("py.key"),
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["already_signed"], true);
    // A key that signed nothing is refused by the independent verifier too.
    let (ok, text) = python(&["genkey", &path("stranger")]);
    assert!(ok, "{text}");
    let (ok, text) = python(&[
        "verify",
        &registry.host,
        "interop/packets",
        &digest,
        &path("stranger.pub"),
    ]);
    assert!(!ok && text.contains("no signature by"), "{text}");
}

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str =
    "https://github.com/acme/packets/.github/workflows/release.yml@refs/heads/main";

#[test]
fn keyless_signatures_install_for_a_trusted_identity_and_each_failure_is_refused() {
    let test = "keyless signatures";
    let Some((interpreter, registry)) = interop(test, &["cryptography"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker.path().to_str().unwrap())];
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let python = |args: &[&str]| {
        let (ok, text) = interop_script(interpreter, args, &[]);
        assert!(ok, "{args:?}: {text}");
    };
    // The Sigstore the policy trusts, and another one.
    python(&["sigstore-init", &path("sigstore")]);
    python(&["sigstore-init", &path("rogue")]);
    let rule = format!(
        "[[trust]]\nregistry = \"{}/keyless/*\"\nidentities = [{{ issuer = \"{GITHUB}\", subject = \"https://github.com/acme/*\" }}]\ntrusted_root = \"sigstore/trusted_root.json\"\nsignatures = \"require\"\n",
        registry.host
    );
    let data = data_dir(&rule);
    let install_root = |data: &Path| {
        std::fs::create_dir(data.join("sigstore")).unwrap();
        std::fs::copy(
            work.path().join("sigstore/trusted_root.json"),
            data.join("sigstore/trusted_root.json"),
        )
        .unwrap();
    };
    install_root(data.path());
    let repository = format!("{}/keyless/packets", registry.host);
    // Pushes packets `version` and signs it keyless with `options`; (reference, component).
    let push_signed = |version: &str, options: &[&str]| {
        let file = packets(work.path(), version, &format!("keyless {options:?}"));
        let (ok, out, err) = arkham_with(
            data.path(),
            &[
                "shard",
                "push",
                file.to_str().unwrap(),
                &repository,
                "--json",
            ],
            &env,
        );
        assert!(ok, "{out}{err}");
        let pushed = json(&out);
        let digest = pushed["manifest_digest"].as_str().unwrap();
        let mut args = vec![
            "sign-keyless",
            registry.host.as_str(),
            "keyless/packets",
            digest,
        ];
        let sigstore = path("sigstore");
        args.push(&sigstore);
        args.extend(options);
        python(&args);
        (
            format!("{repository}:{version}"),
            pushed["component_digest"].as_str().unwrap().to_string(),
        )
    };
    let signer = format!("{GITHUB} {WORKFLOW}");

    // A workflow of the trusted organisation signed it: it installs, and says who signed.
    push_signed("0.1.0", &["--subject", WORKFLOW, "--issuer", GITHUB]);
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "add", &format!("{repository}@0.1"), "--yes"],
        &env,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("installed packets 0.1.0")
            && out.contains(&format!(
                "signed keyless by the trusted identity {WORKFLOW} (issuer {GITHUB})"
            )),
        "{out}"
    );
    let lock = std::fs::read_to_string(data.path().join("arkham.lock")).unwrap();
    assert!(
        lock.contains(&format!("signers = [\"{signer}\"]")),
        "{lock}"
    );
    let (ok, out, err) = arkham_with(data.path(), &["shard", "list", "--json"], &env);
    assert!(ok, "{err}");
    assert_eq!(json(&out)[0]["signers"][0], signer.as_str());
    let (ok, out, err) = arkham_with(data.path(), &["shard", "list"], &env);
    assert!(
        ok && out.contains(&format!(
            "signed keyless by the trusted identity {WORKFLOW} (issuer {GITHUB})"
        )),
        "{out}{err}"
    );
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "inspect", &format!("{repository}:0.1.0"), "--json"],
        &env,
    );
    assert!(ok, "{err}");
    let inspected = json(&out)["signatures"].clone();
    assert_eq!(inspected["accepted"], true, "{inspected}");
    assert_eq!(inspected["signers"][0], signer.as_str());
    assert_eq!(inspected["checks"][0]["result"], "certified");
    assert_eq!(inspected["checks"][0]["subject"], WORKFLOW);
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "inspect", &format!("{repository}:0.1.0")],
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "one keyless by {WORKFLOW} (issuer {GITHUB}), certified by the trusted root"
        )) && out.contains("(require): accepted"),
        "{out}"
    );

    // `--locked` elsewhere verifies again and wants the recorded identity.
    let second = data_dir(&rule);
    install_root(second.path());
    std::fs::write(second.path().join("arkham.lock"), &lock).unwrap();
    let (ok, out, err) = arkham_with(second.path(), &["shard", "add", "--locked", "--yes"], &env);
    assert!(ok && out.contains("installed packets 0.1.0"), "{out}{err}");
    let other_signer =
        format!("{GITHUB} https://github.com/acme/other/.github/workflows/x.yml@refs/heads/main");
    let third = data_dir(&rule);
    install_root(third.path());
    let repinned = lock.replace(&signer, &other_signer);
    std::fs::write(third.path().join("arkham.lock"), &repinned).unwrap();
    let (ok, _, err) = arkham_with(third.path(), &["shard", "add", "--locked", "--yes"], &env);
    assert!(
        !ok && err.contains("recorded in arkham.lock") && err.contains(&other_signer),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(third.path().join("arkham.lock")).unwrap(),
        repinned
    );

    // Each failure is refused before download, saying what was expected and found.
    let expected = "one of the keyless identities ({ issuer = \"https://token.actions.githubusercontent.com\", subject = \"https://github.com/acme/*\" })";
    let refuse = |version: &str, options: &[&str], needles: &[&str]| {
        let (reference, component) = push_signed(version, options);
        let mut all = vec![expected];
        all.extend(needles);
        refused(data.path(), &env, &reference, &component, &all);
    };
    let evil = "https://github.com/evil/packets/.github/workflows/release.yml@refs/heads/main";
    refuse(
        "0.2.0",
        &["--subject", evil, "--issuer", GITHUB],
        &[
            &format!(
                "1 signature: one keyless by {evil} (issuer {GITHUB}), certified by the trusted root"
            ),
            &format!("add `{{ issuer = \"{GITHUB}\", subject = \"{evil}\" }}`"),
        ],
    );
    refuse(
        "0.3.0",
        &[
            "--subject",
            WORKFLOW,
            "--issuer",
            "https://accounts.example",
        ],
        &[
            &format!(
                "one keyless by {WORKFLOW} (issuer https://accounts.example), certified by the trusted root"
            ),
            "to the rule's `identities`",
        ],
    );
    let rogue = path("rogue");
    refuse(
        "0.4.0",
        &["--subject", WORKFLOW, "--issuer", GITHUB, "--ca", &rogue],
        &[
            &format!("one keyless for {WORKFLOW} (issuer {GITHUB}) that does not verify"),
            "its certificate does not chain to the trusted root: it was not issued by a certificate authority the trusted root lists",
            "does not verify against the trusted root sigstore/trusted_root.json",
        ],
    );
    refuse(
        "0.5.0",
        &["--subject", WORKFLOW, "--issuer", GITHUB, "--bad-set"],
        &["its Rekor signed entry timestamp does not verify with the log's key"],
    );
    refuse(
        "0.6.0",
        &["--subject", WORKFLOW, "--issuer", GITHUB, "--expired"],
        &["its certificate was not valid when the signature was logged (integrated time"],
    );

    refuse(
        "0.6.1",
        &["--subject", WORKFLOW, "--issuer", GITHUB, "--bad-sct"],
        &["its certificate has no valid certificate transparency timestamp (SCT)"],
    );

    // A rule without a trusted root cannot check a keyless signature, and says what to add.
    let (ok, out, err) = arkham_with(data.path(), &["key", "generate", "--out", &path("k")], &env);
    assert!(ok, "{out}{err}");
    let keys_only = format!(
        "[[trust]]\nregistry = \"{}/keyless/*\"\nkeys = [\"{}\"]\nsignatures = \"require\"\n",
        registry.host,
        path("k.pub")
    );
    std::fs::write(data.path().join("arkham.toml"), keys_only).unwrap();
    let (reference, component) = push_signed("0.7.0", &["--subject", WORKFLOW, "--issuer", GITHUB]);
    refused(
        data.path(),
        &env,
        &reference,
        &component,
        &[
            &format!(
                "one keyless for {WORKFLOW} (issuer {GITHUB}) not verified, as no trusted root is configured"
            ),
            "add `trusted_root = \"trusted_root.json\"`",
        ],
    );
}

/// Asserts `path` is one of cosign's encrypted key files, private to its owner.
fn assert_encrypted_key(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "{text}"
    );
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_cosign_key_signs_with_cosign_password_and_a_wrong_one_pushes_nothing() {
    let Some(s) = Signed::start("encrypted key") else {
        return;
    };
    let secret = ("COSIGN_PASSWORD", "ci-secret-7");
    let key = s.key("cosign.key");
    let public = s.key("cosign.pub");
    let prefix = s.key("cosign");
    let (ok, out, err) = s.run_with(
        &[
            "key",
            "generate",
            "--encrypt",
            "--out",
            prefix.to_str().unwrap(),
            "--json",
        ],
        &[secret],
    );
    assert!(ok, "{out}{err}");
    let generated = json(&out);
    assert_eq!(generated["encrypted"], true);
    let fingerprint = generated["fingerprint"].as_str().unwrap().to_string();
    assert_encrypted_key(&key);
    assert!(!out.contains(secret.1) && !err.contains(secret.1));
    // Without a password nor a terminal, nothing is written.
    let other = s.key("nopass");
    let (ok, _, err) = s.run(&[
        "key",
        "generate",
        "--encrypt",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("set COSIGN_PASSWORD"), "{err}");
    assert!(!s.key("nopass.key").exists() && !s.key("nopass.pub").exists());

    // Signed with the encrypted key and COSIGN_PASSWORD; verified with its public key.
    s.push(
        &packets(s.work.path(), "0.6.0", "encrypted key"),
        None,
        false,
    );
    let reference = format!("{}:0.6.0", s.repository);
    let (ok, out, err) = s.run_with(
        &[
            "shard",
            "sign",
            &reference,
            "--key",
            key.to_str().unwrap(),
            "--json",
        ],
        &[secret],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["fingerprint"], fingerprint.as_str());
    let (ok, out, err) = s.run(&[
        "shard",
        "verify",
        &reference,
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("signed by the key {fingerprint}")),
        "{out}"
    );

    // A wrong password: refused before anything is pushed, the password never shown.
    let wrong = ("COSIGN_PASSWORD", "not-the-secret");
    let unsigned = s.push(
        &packets(s.work.path(), "0.7.0", "wrong password"),
        None,
        false,
    );
    let unsigned_ref = format!("{}:0.7.0", s.repository);
    let expected = format!(
        "wrong password for {} (or the file is corrupt)",
        key.display()
    );
    let (ok, out, err) = s.run_with(
        &[
            "shard",
            "sign",
            &unsigned_ref,
            "--key",
            key.to_str().unwrap(),
        ],
        &[wrong],
    );
    assert!(!ok && err.contains(&expected), "{out}{err}");
    assert!(err.contains("read from COSIGN_PASSWORD"), "{err}");
    assert!(
        !out.contains(wrong.1) && !err.contains(wrong.1),
        "{out}{err}"
    );
    let repo = s.repo();
    let digest: Digest = unsigned["manifest_digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        repo.manifest(&signature::signature_tag(&digest))
            .await
            .is_err(),
        "a signature was pushed"
    );
    // `push --sign` with the wrong password uploads nothing: the tag does not exist.
    let file = packets(s.work.path(), "0.8.0", "wrong password push");
    let (ok, out, err) = s.run_with(
        &[
            "shard",
            "push",
            file.to_str().unwrap(),
            &s.repository,
            "--sign",
            key.to_str().unwrap(),
        ],
        &[wrong],
    );
    assert!(!ok && err.contains(&expected), "{out}{err}");
    assert!(repo.manifest("0.8.0").await.is_err(), "0.8.0 was pushed");
    // No password and no terminal: told where to put it.
    let (ok, _, err) = s.run(&[
        "shard",
        "sign",
        &unsigned_ref,
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("is encrypted") && err.contains("set COSIGN_PASSWORD"),
        "{err}"
    );
}

/// Runs `command` (a shell command line) on a terminal (`script`), typing each answer once its
/// prompt shows: (success, what the terminal showed).
fn on_terminal(command: &str, envs: &[(&str, &str)], answers: &[(&str, &str)]) -> (bool, String) {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};
    let mut child = Command::new("script")
        .args(["-qfec", command, "/dev/null"])
        .env_remove("COSIGN_PASSWORD")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    let mut seen = 0;
    for (prompt, typed) in answers {
        // Typed only once the prompt is up: echo is off by then.
        while !String::from_utf8_lossy(&shown[seen..]).contains(prompt) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "no prompt `{prompt}`: {}",
                String::from_utf8_lossy(&shown)
            );
            shown.extend_from_slice(&buf[..n]);
        }
        seen = shown.len();
        stdin.write_all(format!("{typed}\n").as_bytes()).unwrap();
    }
    stdout.read_to_end(&mut shown).unwrap();
    drop(stdin);
    let ok = child.wait().unwrap().success();
    (ok, String::from_utf8_lossy(&shown).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_key_password_is_asked_on_the_terminal_without_echo() {
    if !require("script", "encrypted key prompt") {
        return;
    }
    let Some(s) = Signed::start("encrypted key prompt") else {
        return;
    };
    let arkham = crate::harness::arkham_bin();
    let data = s.data.path().to_str().unwrap();
    let docker = s.docker.path().to_str().unwrap();
    let env = [("ARKHAM_DATA_DIR", data), ("DOCKER_CONFIG", docker)];
    let prefix = s.key("typed");
    let generate = format!("{arkham} key generate --encrypt --out {}", prefix.display());
    // Two different passwords: nothing is written.
    let (ok, shown) = on_terminal(
        &generate,
        &env,
        &[
            ("password for the new key", "typed-pw-5"),
            ("the same password again", "typed-pw-6"),
        ],
    );
    assert!(!ok && shown.contains("the two passwords differ"), "{shown}");
    assert!(!s.key("typed.key").exists());
    let (ok, shown) = on_terminal(
        &generate,
        &env,
        &[
            ("password for the new key", "typed-pw-5"),
            ("the same password again", "typed-pw-5"),
        ],
    );
    assert!(
        ok && shown.contains("encrypted in cosign's format"),
        "{shown}"
    );
    assert!(!shown.contains("typed-pw-5"), "echoed: {shown}");
    assert_encrypted_key(&s.key("typed.key"));

    s.push(&packets(s.work.path(), "0.9.0", "typed"), None, false);
    let reference = format!("{}:0.9.0", s.repository);
    let sign = format!(
        "{arkham} shard sign {reference} --key {}",
        s.key("typed.key").display()
    );
    let (ok, shown) = on_terminal(&sign, &env, &[("password for", "typed-pw-4")]);
    assert!(!ok && shown.contains("wrong password for"), "{shown}");
    assert!(!shown.contains("typed-pw-4") && !shown.contains("read from COSIGN_PASSWORD"));
    let (ok, shown) = on_terminal(&sign, &env, &[("password for", "typed-pw-5")]);
    assert!(ok && shown.contains("signed "), "{shown}");
    assert!(!shown.contains("typed-pw-5"), "echoed: {shown}");
    let (ok, out, err) = s.run(&[
        "shard",
        "verify",
        &reference,
        "--key",
        s.key("typed.pub").to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
}

#[test]
fn encrypted_keys_interoperate_with_an_independent_implementation() {
    let test = "encrypted key interop";
    // hashlib.scrypt (the standard library), PyNaCl's SecretBox and `cryptography`.
    let Some((interpreter, registry)) = interop(test, &["cryptography", "nacl"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let data = data_dir("");
    let docker_env = ("DOCKER_CONFIG", docker.path().to_str().unwrap());
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let file = packets(work.path(), "0.1.0", "encrypted interop");
    let repository = format!("{}/interop/packets", registry.host);
    let (ok, out, err) = arkham_with(
        data.path(),
        &[
            "shard",
            "push",
            file.to_str().unwrap(),
            &repository,
            "--json",
        ],
        &[docker_env],
    );
    assert!(ok, "{out}{err}");
    let digest = json(&out)["manifest_digest"].as_str().unwrap().to_string();
    let reference = format!("{repository}:0.1.0");
    let verify_both = |public: &str| {
        let (ok, out, err) = arkham_with(
            data.path(),
            &["shard", "verify", &reference, "--key", &path(public)],
            &[docker_env],
        );
        assert!(ok, "{public}: {out}{err}");
        let (ok, text) = interop_script(
            interpreter,
            &[
                "verify",
                &registry.host,
                "interop/packets",
                &digest,
                &path(public),
            ],
            &[],
        );
        assert!(ok && text.contains("verified"), "{public}: {text}");
    };

    // Python writes a cosign encrypted key (scrypt N = 2^16, as cosign does today); arkham
    // signs with it.
    let py_password = ("COSIGN_PASSWORD", "py-pw-3");
    let (ok, text) = interop_script(
        interpreter,
        &["genkey", "--encrypt", &path("py")],
        &[py_password],
    );
    assert!(ok, "{text}");
    let py_key = std::fs::read_to_string(path("py.key")).unwrap();
    assert!(
        py_key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "{py_key}"
    );
    let (ok, out, err) = arkham_with(
        data.path(),
        &["shard", "sign", &reference, "--key", &path("py.key")],
        &[docker_env, py_password],
    );
    assert!(ok, "{out}{err}");
    verify_both("py.pub");
    let (ok, _, err) = arkham_with(
        data.path(),
        &["shard", "sign", &reference, "--key", &path("py.key")],
        &[docker_env, ("COSIGN_PASSWORD", "py-pw-4")],
    );
    assert!(!ok && err.contains("wrong password for"), "{err}");

    // arkham writes one; Python opens it (and only with its password) and signs with it.
    let ark_password = ("COSIGN_PASSWORD", "ark-pw-8");
    let (ok, out, err) = arkham_with(
        data.path(),
        &["key", "generate", "--encrypt", "--out", &path("ark")],
        &[ark_password],
    );
    assert!(ok, "{out}{err}");
    let (ok, text) = interop_script(
        interpreter,
        &["decrypt", &path("ark.key"), &path("ark.pub")],
        &[ark_password],
    );
    assert!(ok && text.contains("decrypted"), "{text}");
    let (ok, text) = interop_script(
        interpreter,
        &["decrypt", &path("ark.key"), &path("ark.pub")],
        &[("COSIGN_PASSWORD", "ark-pw-9")],
    );
    assert!(!ok && text.contains("wrong password"), "{text}");
    let (ok, text) = interop_script(
        interpreter,
        &[
            "sign",
            &registry.host,
            "interop/packets",
            &digest,
            &path("ark.key"),
        ],
        &[ark_password],
    );
    assert!(ok, "{text}");
    verify_both("ark.pub");
}
