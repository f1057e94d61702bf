//! Picking a version from a repository's tags, with Cargo's meaning of requirements.
//!
//! Tags that are not semver (`latest`, `main`) and signature tags (`sha256-….sig`) are ignored.
//! Pre-releases match only a requirement that names a pre-release of the same version, as in Cargo.

use crate::reference::Selector;

/// No tag satisfies the requirement.
#[derive(Debug, thiserror::Error)]
#[error("no version of `{repository}` matches `{wanted}`; {}", available(.versions))]
pub struct NoMatch {
    /// The repository.
    pub repository: String,
    /// The requirement.
    pub wanted: String,
    /// Every version the repository has, ascending.
    pub versions: Vec<semver::Version>,
}

fn available(versions: &[semver::Version]) -> String {
    if versions.is_empty() {
        "it has no versions (was the shard pushed? `arkham shard push`)".to_string()
    } else {
        let list: Vec<String> = versions.iter().map(ToString::to_string).collect();
        format!("versions available: {}", list.join(", "))
    }
}

/// The semver versions among `tags`, ascending; everything else is ignored.
pub fn versions(tags: &[String]) -> Vec<semver::Version> {
    let mut versions: Vec<semver::Version> = tags
        .iter()
        .filter(|t| !t.starts_with("sha256-"))
        .filter_map(|t| semver::Version::parse(t).ok())
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// The highest version among `tags` that `selector` (a requirement or "latest") allows.
///
/// Returns `None` for the exact selectors (`Tag`, `Digest`), which need no resolution.
pub fn pick(
    repository: &str,
    tags: &[String],
    selector: &Selector,
) -> Option<Result<semver::Version, NoMatch>> {
    let all = versions(tags);
    let found = match selector {
        Selector::Latest => all.iter().rev().find(|v| v.pre.is_empty()),
        Selector::Requirement(req) => all.iter().rev().find(|v| req.matches(v)),
        Selector::Tag(_) | Selector::Digest(_) => return None,
    };
    Some(found.cloned().ok_or_else(|| NoMatch {
        repository: repository.to_string(),
        wanted: selector.to_string(),
        versions: all,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn req(r: &str) -> Selector {
        if r == "*" {
            Selector::Latest
        } else {
            Selector::Requirement(semver::VersionReq::parse(r).unwrap())
        }
    }

    #[test]
    fn resolution_table() {
        let t = tags(&[
            "0.1.0",
            "0.1.1",
            "0.1.2-beta.1",
            "0.2.0",
            "0.3.5",
            "0.4.0",
            "1.0.0",
            "1.2.0",
            "2.0.0-rc.1",
            "latest",
            "main",
            "sha256-0123abcd.sig",
            "v9.9.9",
        ]);
        let table = [
            ("0.1", Some("0.1.1")),
            ("=0.1.0", Some("0.1.0")),
            ("0.1.2-beta.1", Some("0.1.2-beta.1")),
            (">=0.1.2-beta.0, <0.2", Some("0.1.2-beta.1")),
            (">=0.2, <0.4", Some("0.3.5")),
            ("~0.3", Some("0.3.5")),
            ("1", Some("1.2.0")),
            ("^1.1", Some("1.2.0")),
            ("*", Some("1.2.0")),
            ("2", None),
            ("2.0.0-rc.1", Some("2.0.0-rc.1")),
            ("0.5", None),
            ("9", None),
        ];
        for (r, want) in table {
            let got = pick("packets", &t, &req(r))
                .unwrap()
                .ok()
                .map(|v| v.to_string());
            assert_eq!(got.as_deref(), want, "requirement {r}");
        }
    }

    #[test]
    fn no_match_lists_the_versions() {
        let err = pick("packets", &tags(&["0.1.0", "latest", "0.2.0"]), &req("0.5"))
            .unwrap()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("versions available: 0.1.0, 0.2.0"), "{text}");
        let err = pick("packets", &[], &req("*")).unwrap().unwrap_err();
        assert!(err.to_string().contains("no versions"), "{err}");
    }
}
