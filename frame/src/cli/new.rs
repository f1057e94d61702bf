//! `arkham shard new NAME [--lang rust|python|js] [--path DIR]`: a working shard project from
//! templates built into the binary (`frame/templates/`), so it needs no repository checkout.
//!
//! Python and JavaScript projects get the frame's WIT written into `wit/`, from the copies
//! embedded here, so their build needs nothing but the language toolchain (which `build.sh`
//! installs into the project when it is not on PATH). Rust projects depend on the guest SDK,
//! which is not published: they point at it in the repository this binary was built from, and
//! `new` says so when that repository is gone.

use crate::shards::manifest::validate_name;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The languages `shard new` has templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust on the arkham guest SDK (cargo, target wasm32-wasip2).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// `arkham shard new` arguments.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The shard's name: a lowercase letter, then lowercase letters, digits, `_` or `-`.
    name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Where to create the project [default: ./NAME]; must not exist or be empty.
    #[arg(long)]
    path: Option<PathBuf>,
}

/// A template file: its path in the project and its text, with `{{name}}`-style placeholders.
type File = (&'static str, &'static str);

macro_rules! template {
    ($lang:literal: $($path:literal => $source:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $lang, "/", $source)))),*]
    };
}

// `.gitignore` is stored as `gitignore`, so that git does not apply it to the templates folder.
const RUST: &[File] = template!("rust":
    "Cargo.toml" => "Cargo.toml",
    "shard.toml" => "shard.toml",
    "src/lib.rs" => "src/lib.rs",
    "README.md" => "README.md",
    ".gitignore" => "gitignore",
);

const PYTHON: &[File] = template!("python":
    "shard.toml" => "shard.toml",
    "app.py" => "app.py",
    "build.sh" => "build.sh",
    "README.md" => "README.md",
    ".gitignore" => "gitignore",
);

const JS: &[File] = template!("js":
    "shard.toml" => "shard.toml",
    "app.js" => "app.js",
    "build.sh" => "build.sh",
    "package.json" => "package.json",
    "README.md" => "README.md",
    ".gitignore" => "gitignore",
);

/// Writes the project and prints what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    validate_name(&args.name).map_err(|problem| anyhow::anyhow!("the shard name {problem}"))?;
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    check_empty(&dir)?;
    let files = project(&args.name, args.lang)?;
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let lang = match args.lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    };
    println!(
        "created shard `{}` ({lang}) in {}",
        args.name,
        dir.display()
    );
    println!(
        "next: arkham shard add {} --yes  (builds it, then installs it)",
        dir.display()
    );
    println!("then: arkham serve, and GET /api/{}/", args.name);
    Ok(())
}

/// The project's files for `lang`, placeholders filled in.
fn project(name: &str, lang: Lang) -> anyhow::Result<Vec<(&'static str, String)>> {
    let (template, with_wit) = match lang {
        Lang::Rust => (RUST, false),
        Lang::Python => (PYTHON, true),
        Lang::Js => (JS, true),
    };
    let sdk = match lang {
        Lang::Rust => sdk_path()?,
        Lang::Python | Lang::Js => String::new(),
    };
    let mut files: Vec<(&'static str, String)> = template
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace("{{name}}", name)
                .replace("{{crate}}", &name.replace('-', "_"))
                .replace("{{sdk_path}}", &sdk);
            (*path, text)
        })
        .collect();
    if with_wit {
        files.extend(
            super::wit::FILES
                .iter()
                .map(|(path, text)| (*path, (*text).to_string())),
        );
    }
    Ok(files)
}

/// The guest SDK in the repository this binary was built from, as a TOML-ready path.
fn sdk_path() -> anyhow::Result<String> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shards/sdk");
    let sdk = sdk.canonicalize().map_err(|_| {
        anyhow::anyhow!(
            "a Rust shard depends on the arkham guest SDK, which is not published; it was in {}, \
             which is gone. Build `arkham` from a checkout of the repository, or use \
             --lang python or --lang js, whose projects need no repository",
            sdk.display()
        )
    })?;
    let text = sdk.to_str().with_context(|| {
        format!(
            "the SDK's path {} is not UTF-8; Cargo.toml cannot name it",
            sdk.display()
        )
    })?;
    // TOML basic strings escape `\` and `"`.
    Ok(text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Refuses a destination that exists and holds anything, so `new` never overwrites a file.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} already exists and is not empty; choose another name or --path",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        for lang in [Lang::Python, Lang::Js] {
            let files = project("hello-world", lang).unwrap();
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{path} keeps a placeholder");
            }
            assert!(files.iter().any(|(path, _)| *path == "wit/world.wit"));
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let args = NewArgs {
            name: "Hello".into(),
            lang: Lang::Python,
            path: Some(std::env::temp_dir().join("arkham-new-never-written")),
        };
        let err = run(args).unwrap_err().to_string();
        assert!(err.contains("shard name"), "{err}");
    }
}
