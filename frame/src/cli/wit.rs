//! `arkham wit [--out DIR]`: the WIT package `arkham:shard` this frame speaks, embedded in the
//! binary, so that a toolchain can bind to it without the repository (`shard new` writes the
//! same files into Python and JavaScript projects).
//!
//! `arkham wit push` / `pull`: the same package as an OCI artifact in the layout `wkg` (wasm-pkg-tools)
//! publishes WIT packages in, so `wkg get arkham:shard@VERSION` finds it: the package encoded to
//! its binary form (`wit_component::encode`), one `application/wasm` layer titled `shard.wasm`, the
//! `application/vnd.wasm.config.v0+json` config with `os: wasip2` and, as oci-wasm writes for a WIT
//! package, `component.exports` listing every world and interface of the package and no
//! imports; the repository `{prefix}arkham/shard` (wkg's `{namespace}/{name}`), tagged with the
//! package version.

use super::DataDirArg;
use super::shard::{RegistryArgs, parse_ref};
use crate::datadir::DataDir;
use anyhow::Context as _;
use arkham_registry::artifact::{ComponentInfo, WASM_CONFIG_MEDIA_TYPE};
use arkham_registry::reference::Selector;
use arkham_registry::repo::{ConnectOptions, Repo};
use std::path::PathBuf;
use wit_component::{DecodedWasm, WitPrinter};
use wit_parser::{PackageId, PackageName, Resolve, SourceMap};

macro_rules! wit {
    ($($path:literal),* $(,)?) => {
        &[$((concat!("wit/", $path), include_str!(concat!("../../../wit/", $path)))),*]
    };
}

/// The frame's WIT (`arkham:shard` and the vendored WASI it includes), as this binary speaks it,
/// at its place in a project: `wit/…`; `world.wit` first (it declares the package).
pub const FILES: &[(&str, &str)] = wit!(
    "world.wit",
    "database.wit",
    "events.wit",
    "http-handler.wit",
    "logging.wit",
    "storage.wit",
    "deps/cli.wit",
    "deps/clocks.wit",
    "deps/filesystem.wit",
    "deps/http.wit",
    "deps/io.wit",
    "deps/random.wit",
    "deps/sockets.wit",
);

/// `arkham wit` arguments.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WitArgs {
    #[command(subcommand)]
    command: Option<WitCommand>,
    /// Write the package folder (`DIR/*.wit` and its WASI dependencies in `DIR/deps/`), ready
    /// for wit-bindgen, componentize-py or jco, instead of printing the package.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `arkham wit` subcommands.
#[derive(Debug, clap::Subcommand)]
enum WitCommand {
    /// Publish the package as a Wasm OCI artifact in wkg's layout for WIT packages (binary WIT in
    /// one `application/wasm` layer), tagged with the package version, so `wkg get` fetches it.
    Push {
        /// The repository, like `ghcr.io/org/arkham/shard` or `oci:DIR/arkham/shard`; wkg looks
        /// for `arkham:shard` at `{registry}/{namespacePrefix}arkham/shard`
        /// [default: {default registry}/arkham/shard; see `arkham shard add`].
        reference: Option<String>,
        /// Overwrite the version's tag if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a WIT package artifact (pushed by `arkham wit push` or `wkg publish`) and print it
    /// as WIT text, write it as a WIT folder, or write its binary form.
    Pull {
        /// The artifact: `HOST/arkham/shard:0.2.0`, `…/arkham/shard@0.2`, `oci:DIR/arkham/shard`,
        /// or `arkham/shard@0.2` under the default registry.
        reference: String,
        /// With WIT: the folder to write (the package in `DIR/{ns}-{name}-{version}.wit`, the
        /// packages it uses in `DIR/deps/`). With --wasm: the file to write
        /// [default: `{ns}_{name}@{version}.wasm`, as wkg names it].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Write the binary WIT package (the layer as published) instead of WIT text.
        #[arg(long)]
        wasm: bool,
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

pub async fn run(args: WitArgs) -> anyhow::Result<()> {
    match args.command {
        None => write(args.out),
        Some(WitCommand::Push {
            reference,
            force,
            data_dir,
            registry,
            json,
        }) => push(&data_dir.get(), reference, force, registry.options(), json).await,
        Some(WitCommand::Pull {
            reference,
            out,
            wasm,
            data_dir,
            registry,
        }) => pull(&data_dir.get(), &reference, out, wasm, registry.options()).await,
    }
}

fn write(out: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(out) = out else {
        // One file: `world.wit` (with the `package` line) and then the interfaces, which is
        // itself a valid single-file package; the WASI it imports comes with --out.
        for (path, text) in FILES
            .iter()
            .filter(|(path, _)| !path.starts_with("wit/deps/"))
        {
            println!("// {path}\n{}", text.trim_end());
            println!();
        }
        return Ok(());
    };
    for (path, text) in FILES {
        let path = out.join(path.trim_start_matches("wit/"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote arkham:shard@{} to {} ({} files, WASI in deps/)",
        crate::runtime::linker::ARKHAM_VERSIONS[0],
        out.display(),
        FILES.len()
    );
    Ok(())
}

/// The embedded package, resolved with the WASI packages it uses.
pub fn resolve() -> anyhow::Result<(Resolve, PackageId)> {
    let parse = |map: SourceMap| {
        map.parse()
            .map_err(|(_, e)| anyhow::Error::new(e).context("the embedded WIT does not parse"))
    };
    let mut main = SourceMap::default();
    let mut deps = Vec::new();
    for (path, text) in FILES {
        if path.starts_with("wit/deps/") {
            // Each file under deps/ is one WASI package.
            let mut map = SourceMap::default();
            map.push_str(path, *text);
            deps.push(parse(map)?);
        } else {
            main.push_str(path, *text);
        }
    }
    let mut resolve = Resolve::default();
    let package = resolve
        .push_groups(parse(main)?, deps)
        .context("the embedded WIT does not resolve")?;
    Ok((resolve, package))
}

/// The package in its binary form, as `wkg wit build` encodes one.
pub fn encode() -> anyhow::Result<(Vec<u8>, PackageName)> {
    let (resolve, package) = resolve()?;
    let bytes = wit_component::encode(&resolve, package).context("encoding the WIT package")?;
    Ok((bytes, resolve.packages[package].name.clone()))
}

/// What oci-wasm's `Component::from_package` puts in the config of a WIT package: each world
/// (`ns:name/world@version`) and what it exports, and each interface of the package, sorted
/// (oci-wasm collects them in a set, so their order carries nothing); no imports.
pub fn package_info(resolve: &Resolve, package: PackageId) -> ComponentInfo {
    let pkg = &resolve.packages[package];
    let mut exports = std::collections::BTreeSet::new();
    for world in pkg.worlds.values() {
        let world = &resolve.worlds[*world];
        exports.extend(world.exports.keys().map(|key| resolve.name_world_key(key)));
        let mut name = format!("{}:{}/{}", pkg.name.namespace, pkg.name.name, world.name);
        if let Some(version) = &pkg.name.version {
            name.push_str(&format!("@{version}"));
        }
        exports.insert(name);
    }
    exports.extend(pkg.interfaces.values().filter_map(|id| resolve.id_of(*id)));
    ComponentInfo {
        exports: exports.into_iter().collect(),
        imports: Vec::new(),
        target: None,
    }
}

/// `ns-name-version`, the file name wkg gives a package (no `:` or `@`).
fn file_stem(name: &PackageName) -> String {
    name.to_string().replace([':', '@'], "-")
}

async fn push(
    data: &DataDir,
    reference: Option<String>,
    force: bool,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let (bytes, name) = encode()?;
    let version = name
        .version
        .clone()
        .context("the embedded WIT package has no version")?;
    let target = parse_ref(
        data,
        reference
            .as_deref()
            .unwrap_or(&format!("{}/{}", name.namespace, name.name)),
    )?;
    match &target.selector {
        Selector::Latest => {}
        Selector::Tag(tag) if *tag == version.to_string() => {}
        other => anyhow::bail!(
            "the tag is the package version {version}; drop `{other}` from the reference"
        ),
    }
    let (resolve, package) = resolve()?;
    let repo = Repo::open(&target.location, options)?;
    let created = crate::shards::install::now_rfc3339();
    let pushed = arkham_registry::push::push(
        &repo,
        arkham_registry::push::PushRequest {
            component: arkham_registry::push::Component::Bytes(&bytes),
            // The layer's title: `{name}.wasm`, as wkg names it.
            name: &name.name,
            version: &version,
            interfaces: package_info(&resolve, package),
            // wkg's manifest annotations come from the package's metadata: version always,
            // then description, licenses and source when set.
            shard: None,
            description: Some(format!(
                "The WIT contract between the arkham frame and its shards ({}:{}@{version}).",
                name.namespace, name.name
            )),
            licenses: Some(env!("CARGO_PKG_LICENSE").to_string()),
            // As `shard push`: the source only when the publisher says where it is.
            source: std::env::var("ARKHAM_SOURCE_URL").ok(),
            created: &created,
            force,
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
    } else {
        println!(
            "pushed {name} as {} {}",
            pushed.reference, pushed.manifest_digest
        );
    }
    Ok(())
}

async fn pull(
    data: &DataDir,
    reference: &str,
    out: Option<PathBuf>,
    wasm: bool,
    options: ConnectOptions,
) -> anyhow::Result<()> {
    let source = parse_ref(data, reference)?;
    let repo = Repo::open(&source.location, options)?;
    let resolved = arkham_registry::pull::resolve(&repo, &source).await?;
    let artifact = arkham_registry::pull::fetch_artifact(&repo, &resolved.target).await?;
    // wkg reads only this config media type; anything else is not a WIT package artifact.
    if artifact.manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        anyhow::bail!(
            "{} is not a Wasm artifact: its config has media type `{}`",
            artifact.reference,
            artifact.manifest.config.media_type
        );
    }
    let bytes = arkham_registry::pull::fetch_component(&repo, &artifact).await?;
    let (resolve, package) = match wit_component::decode(&bytes)
        .with_context(|| format!("decoding the layer of {}", artifact.reference))?
    {
        DecodedWasm::WitPackage(resolve, package) => (resolve, package),
        DecodedWasm::Component(..) => anyhow::bail!(
            "{} holds a component, not a WIT package (add it with `arkham shard add`)",
            artifact.reference
        ),
    };
    let name = resolve.packages[package].name.clone();
    if wasm {
        let path = out.unwrap_or_else(|| {
            PathBuf::from(format!(
                "{}_{}@{}.wasm",
                name.namespace,
                name.name,
                name.version
                    .as_ref()
                    .map_or("latest".to_string(), ToString::to_string)
            ))
        });
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {name} (binary WIT) to {}", path.display());
        return Ok(());
    }
    let print = |id: PackageId| -> anyhow::Result<String> {
        let mut printer = WitPrinter::default();
        printer
            .print(&resolve, id, &[])
            .with_context(|| format!("printing {}", resolve.packages[id].name))?;
        Ok(printer.output.to_string())
    };
    let Some(dir) = out else {
        print!("{}", print(package)?);
        return Ok(());
    };
    let mut files = vec![(
        dir.join(format!("{}.wit", file_stem(&name))),
        print(package)?,
    )];
    for (id, dep) in resolve.packages.iter().filter(|(id, _)| *id != package) {
        files.push((
            dir.join("deps")
                .join(format!("{}.wit", file_stem(&dep.name))),
            print(id)?,
        ));
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote {name} to {} ({} packages, the ones it uses in deps/)",
        dir.display(),
        files.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wit_is_all_there() {
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
            .unwrap()
            .chain(std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/deps")).unwrap())
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wit")
            })
            .count();
        // A WIT file added to wit/ must be added to `FILES`, or new projects would not build.
        assert_eq!(FILES.len(), on_disk);
        assert!(FILES.iter().all(|(path, _)| path.starts_with("wit/")));
    }

    #[test]
    fn the_binary_package_decodes_to_the_embedded_one() {
        let (bytes, name) = encode().unwrap();
        assert_eq!(
            name.to_string(),
            format!(
                "arkham:shard@{}",
                crate::runtime::linker::ARKHAM_VERSIONS[0]
            )
        );
        let wit_component::DecodedWasm::WitPackage(decoded, package) =
            wit_component::decode(&bytes).unwrap()
        else {
            panic!("not a WIT package");
        };
        let (embedded, original) = resolve().unwrap();
        let names = |r: &Resolve, p: PackageId| {
            let pkg = &r.packages[p];
            (
                pkg.interfaces.keys().cloned().collect::<Vec<_>>(),
                pkg.worlds.keys().cloned().collect::<Vec<_>>(),
            )
        };
        assert_eq!(names(&decoded, package), names(&embedded, original));
        // The config lists the three worlds and the package's interfaces, and imports nothing.
        let info = package_info(&decoded, package);
        assert!(info.imports.is_empty());
        for world in ["imports", "shard", "buffered-shard"] {
            assert!(
                info.exports.contains(&format!(
                    "arkham:shard/{world}@{}",
                    name.version.as_ref().unwrap()
                )),
                "{:?}",
                info.exports
            );
        }
        assert!(
            info.exports
                .iter()
                .any(|e| e.starts_with("arkham:shard/database@"))
        );
        assert!(
            info.exports
                .contains(&"wasi:http/incoming-handler@0.2.12".to_string())
        );
    }
}
