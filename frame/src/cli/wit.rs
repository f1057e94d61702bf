//! `arkham wit [--out DIR]`: the WIT package `arkham:shard` this frame speaks, embedded in the
//! binary, so that a toolchain can bind to it without the repository (`shard new` writes the
//! same files into Python and JavaScript projects).

use anyhow::Context as _;
use std::path::PathBuf;

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
pub struct WitArgs {
    /// Write the package folder (`DIR/*.wit` and its WASI dependencies in `DIR/deps/`), ready
    /// for wit-bindgen, componentize-py or jco, instead of printing the package.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: WitArgs) -> anyhow::Result<()> {
    let Some(out) = args.out else {
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
}
