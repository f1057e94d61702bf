//! Several frames, one deployment: the state an operator changes (the catalog of installed
//! shards, their grants, the admin token, and the installed components themselves) is shared
//! through NATS JetStream, so every member serves every shard.
//!
//! Why JetStream and not PostgreSQL tables: a key-value bucket gives compare-and-set on a
//! revision (two operators changing the catalog at once: one wins, the other is told) and a
//! watch (members hear a change within milliseconds instead of polling the database), and the
//! object store holds components of any size in chunks; the members already speak to it for
//! events and storage.
//!
//! Each member keeps its data dir as a mirror of the shared state, so everything that works on
//! one frame (the CLI against a data dir, the admin API, the reconcile loop) is unchanged:
//! - a change made on a member (its catalog or grants file written) is pushed to the bucket with
//!   compare-and-set on the revision the member last saw, its components uploaded first;
//! - a change pushed by another member is pulled (components downloaded and checked against
//!   their digest first) and written to the data dir, where the reconcile loop applies it.
//!
//! Members announce themselves in a second bucket whose entries expire, so `cluster status`
//! shows who is alive, what each serves, and what each failed to load.

use crate::datadir::DataDir;
use crate::shards::catalog::Catalog;
use arkham_registry::digest::Digest;
use async_nats::jetstream::{self, kv, object_store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// `[cluster]` in `arkham.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Makes this frame a member of the deployment its `[nats]` section names (by `prefix`):
    /// catalog, grants, admin token and components are shared. Needs the shared engines:
    /// `[database] backend = "postgres"`, `[events]` and `[storage]` `backend = "nats"`.
    pub enabled: bool,
    /// The address other people reach this member at, shown by `arkham cluster status`
    /// (default: the address it listens on).
    pub advertise: Option<String>,
    /// The most members the deployment runs at once (default 3). Each opens a shard's
    /// PostgreSQL database with up to `[database] max_connections` connections, so a shard's
    /// role may hold that many per member.
    pub members: Option<u32>,
}

impl ClusterConfig {
    /// The members a deployment is sized for: 1 when this frame is not a member.
    pub fn frames(&self) -> u32 {
        if self.enabled {
            self.members.unwrap_or(3).max(1)
        } else {
            1
        }
    }
}

/// How long a member's announcement lives without being renewed.
pub const MEMBER_TTL: Duration = Duration::from_secs(15);

/// How often a member renews its announcement.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(3);

/// Where a shared file lives in a data dir.
type FilePath = fn(&DataDir) -> PathBuf;

/// The shared files: the bucket key and where the file lives in a data dir.
const FILES: [(&str, FilePath); 2] = [("installed", DataDir::catalog), ("grants", DataDir::grants)];

/// The key of the admin token.
const TOKEN: &str = "admin-token";

/// What [`Cluster::sync`] says when another member's concurrent change won.
pub const LOST: &str = "a concurrent change by another member won; this change was undone";

/// How long a member waits before watching the shared state again after a watch ended.
const WATCH_AGAIN: Duration = Duration::from_secs(1);

/// Most bytes of one component read from the object store.
const MAX_COMPONENT_BYTES: usize = 512 << 20;

/// What can go wrong sharing the deployment's state.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A NATS call failed.
    #[error("{what} on NATS JetStream failed: {message}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// The client's message.
        message: String,
    },
    /// The data dir could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A component in the object store is not what its name says.
    #[error(
        "the deployment's copy of component {digest} is damaged (its bytes hash to {actual}); \
         install the shard again from a member that has it"
    )]
    Damaged {
        /// The digest it is stored under.
        digest: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// A component the shared catalog names is neither here nor in the object store.
    #[error(
        "component {0} named by the deployment's catalog is in no member's store and not in the \
         deployment's object store; install that shard again"
    )]
    Missing(String),
    /// A command holds the data dir's lock: tried again at the next round.
    #[error("a command is changing the data dir; the deployment's state is taken next time")]
    Busy,
    /// The catalog pulled from the deployment does not parse.
    #[error("the deployment's {key} is not valid: {message}")]
    Invalid {
        /// Which file.
        key: &'static str,
        /// Why.
        message: String,
    },
}

fn nats<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ClusterError {
    move |e| ClusterError::Nats {
        what,
        message: e.to_string(),
    }
}

/// What one member announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Where it serves.
    pub address: String,
    /// The frame's version.
    pub version: String,
    /// When it started, RFC 3339.
    pub up_since: String,
    /// When it last renewed this, RFC 3339.
    pub seen_at: String,
    /// The shards it serves, `name@version`.
    pub loaded: Vec<String>,
    /// The shards it failed to load, with why.
    pub failed: Vec<FailedShard>,
}

/// A shard a member did not load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedShard {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Why.
    pub error: String,
}

/// The bucket names of a deployment. Upper case: shards' own buckets are `<prefix>_<shard>`
/// with lower-case shard names, so none can be called this.
fn bucket(prefix: &str, what: &str) -> String {
    format!("{}_FRAME_{what}", prefix.to_ascii_uppercase())
}

/// A member's key in the members bucket (keys allow letters, digits and `-_=./`).
fn member_key(address: &str) -> String {
    address
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '=' | '.' => c,
            _ => '_',
        })
        .collect()
}

/// What a member last agreed with the deployment on, per shared file.
#[derive(Debug, Clone, Default)]
struct Agreed {
    /// Whether it has looked at the deployment's copy at all: before the first look the
    /// deployment's state wins; after it, a local file that differs is a change of this member's
    /// (also when that look found no state: a CLI that found an empty deployment and installed
    /// into it made a change, which another operator's may have beaten).
    looked: bool,
    revision: u64,
    bytes: Option<Vec<u8>>,
}

/// The deployment's shared state, as one member (or the CLI) sees it.
pub struct Cluster {
    state: kv::Store,
    members: kv::Store,
    components: object_store::ObjectStore,
    agreed: tokio::sync::Mutex<[Agreed; 2]>,
}

/// Opens (or creates) a key-value bucket. Its stream is made here, with the key-value
/// conventions (`KV_<bucket>`, subjects `$KV.<bucket>.>`, roll-ups, direct gets): the client's
/// own `create_key_value` first reads the account's info, which it cannot parse from servers
/// before 2.10 (Debian's 2.9).
async fn key_value(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    // Another member may have made it meanwhile: what matters is that it exists now.
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(e) => match created {
            Err(created) => Err(nats("creating a key-value bucket")(created)),
            Ok(_) => Err(nats("opening a key-value bucket")(e)),
        },
    }
}

impl Cluster {
    /// Joins the deployment whose buckets are named after `prefix` (`[nats] prefix`).
    pub async fn join(client: async_nats::Client, prefix: &str) -> Result<Self, ClusterError> {
        let js = jetstream::new(client);
        let state = key_value(&js, bucket(prefix, "STATE"), Duration::ZERO).await?;
        let members = key_value(&js, bucket(prefix, "MEMBERS"), MEMBER_TTL).await?;
        let name = bucket(prefix, "COMPONENTS");
        let components = match js.get_object_store(&name).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name,
                    ..Default::default()
                })
                .await
                .map_err(nats("creating the components' object store"))?,
        };
        Ok(Self {
            state,
            members,
            components,
            agreed: tokio::sync::Mutex::default(),
        })
    }

    /// The deployment's admin token: `local` if this is the first member, else the one the
    /// first member set (every member then accepts the same token).
    pub async fn admin_token(&self, local: &str) -> Result<String, ClusterError> {
        match self
            .state
            .create(TOKEN, local.as_bytes().to_vec().into())
            .await
        {
            Ok(_) => Ok(local.to_string()),
            Err(_) => {
                let token = self
                    .state
                    .get(TOKEN)
                    .await
                    .map_err(nats("reading the admin token"))?
                    .ok_or_else(|| ClusterError::Nats {
                        what: "reading the admin token",
                        message: "the key exists but has no value".to_string(),
                    })?;
                Ok(String::from_utf8_lossy(&token).trim().to_string())
            }
        }
    }

    /// Wakes `changed` whenever the shared state changes (any member's push, this one's too):
    /// a watch on the state bucket, so another member's change is taken within milliseconds
    /// rather than at a poll. A watch that ends (the NATS server went away) is made again, and
    /// `changed` woken then too: what happened meanwhile is read at the next sync. The watch
    /// lasts as long as the returned task.
    pub fn watch(
        &self,
        changed: std::sync::Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        use futures::StreamExt as _;
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut watch) = state.watch_all().await {
                    while let Some(Ok(_)) = watch.next().await {
                        changed.notify_one();
                    }
                }
                changed.notify_one();
                tokio::time::sleep(WATCH_AGAIN).await;
            }
        })
    }

    /// Whether the data dir's shared files differ from what this member last agreed with the
    /// deployment: a change made here (by a command or the admin API) that [`sync`](Self::sync)
    /// would share. Reads local files only.
    pub async fn changed_here(&self, data: &DataDir) -> bool {
        let agreed = self.agreed.lock().await;
        FILES.iter().zip(agreed.iter()).any(|((_, path), seen)| {
            // Unreadable, removed or changed: sync decides what it means.
            read_optional(&path(data)).map_or(true, |local| local != seen.bytes)
        })
    }

    /// Brings the data dir and the deployment in line, once: local changes since the last
    /// call are pushed, changes of other members pulled. At the first call the deployment's
    /// state wins where it has one (a member that was away takes what the others agreed on),
    /// and a deployment without state takes this member's. Returns what it did, for the log.
    pub async fn sync(&self, data: &DataDir) -> Result<Vec<String>, ClusterError> {
        let mut agreed = self.agreed.lock().await;
        let mut done = Vec::new();
        for (i, (key, path)) in FILES.iter().enumerate() {
            let path = path(data);
            let local = read_optional(&path)?;
            let remote = self
                .state
                .entry(*key)
                .await
                .map_err(nats("reading the shared state"))?
                .filter(|e| e.operation == kv::Operation::Put);
            let seen = &mut agreed[i];
            let first = !seen.looked;
            seen.looked = true;
            // A file removed here is not a change to share: the deployment's is written back.
            let changed_here = !first && local.is_some() && local != seen.bytes;
            match remote {
                Some(entry) if !changed_here => {
                    // Another member's change (or the first look at the deployment).
                    if local.as_deref() != Some(&entry.value[..]) {
                        if *key == "installed" {
                            self.fetch_components(data, &entry.value).await?;
                        }
                        write_locked(data, &path, &entry.value)?;
                        done.push(format!(
                            "took the deployment's {key} (revision {})",
                            entry.revision
                        ));
                    }
                    *seen = Agreed {
                        looked: true,
                        revision: entry.revision,
                        bytes: Some(entry.value.to_vec()),
                    };
                }
                remote => {
                    // A change here (or a deployment that has none yet): shared, if nobody
                    // else changed it since this member last looked.
                    let Some(bytes) = local else {
                        continue;
                    };
                    if *key == "installed" {
                        self.upload_components(data, &bytes).await?;
                    }
                    let put = match &remote {
                        None => self
                            .state
                            .create(*key, bytes.clone().into())
                            .await
                            .map_err(|e| e.to_string()),
                        Some(_) => self
                            .state
                            .update(*key, bytes.clone().into(), seen.revision)
                            .await
                            .map_err(|e| e.to_string()),
                    };
                    match put {
                        Ok(revision) => {
                            done.push(format!("shared this member's {key} (revision {revision})"));
                            *seen = Agreed {
                                looked: true,
                                revision,
                                bytes: Some(bytes),
                            };
                        }
                        Err(why) => {
                            // Another member changed it first: its change stands, and this
                            // one's is undone here (unless it was this very change, pushed by
                            // the frame serving this data dir or by the CLI).
                            let winner = self
                                .state
                                .entry(*key)
                                .await
                                .map_err(nats("reading the shared state"))?
                                .filter(|e| e.operation == kv::Operation::Put);
                            let Some(entry) = winner else {
                                continue;
                            };
                            let same = entry.value[..] == bytes[..];
                            if !same {
                                tracing::warn!(
                                    key,
                                    error = %why,
                                    "another member changed the deployment's state first; this member's change is discarded"
                                );
                                if *key == "installed" {
                                    self.fetch_components(data, &entry.value).await?;
                                }
                                write_locked(data, &path, &entry.value)?;
                                done.push(format!("{LOST} ({key})"));
                            }
                            *seen = Agreed {
                                looked: true,
                                revision: entry.revision,
                                bytes: Some(entry.value.to_vec()),
                            };
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// Every component `catalog` names (serving versions and those kept for rollback) that
    /// this data dir's store lacks, downloaded and checked against its digest.
    async fn fetch_components(&self, data: &DataDir, catalog: &[u8]) -> Result<(), ClusterError> {
        let store = data.store();
        for digest in digests(catalog)? {
            if store.contains(&digest) {
                continue;
            }
            let name = digest.to_string().replace(':', "_");
            let mut object = match self.components.get(&name).await {
                Ok(object) => object,
                Err(_) => return Err(ClusterError::Missing(digest.to_string())),
            };
            let mut bytes = Vec::new();
            (&mut object)
                .take(MAX_COMPONENT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(nats("downloading a component"))?;
            let actual = Digest::of(&bytes);
            if actual != digest || bytes.len() > MAX_COMPONENT_BYTES {
                return Err(ClusterError::Damaged {
                    digest: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            store.put(&bytes).map_err(|e| ClusterError::Io {
                what: "storing a component in",
                path: data.root().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        Ok(())
    }

    /// Every component `catalog` names that the object store lacks, uploaded from this store.
    async fn upload_components(&self, data: &DataDir, catalog: &[u8]) -> Result<(), ClusterError> {
        let store = data.store();
        for digest in digests(catalog)? {
            let name = digest.to_string().replace(':', "_");
            if self.components.info(&name).await.is_ok() {
                continue;
            }
            // A rollback target this member never had: another member uploaded it, or it is
            // gone; not a reason to refuse the change.
            let Ok(bytes) = store.get(&digest) else {
                continue;
            };
            self.components
                .put(name.as_str(), &mut bytes.as_slice())
                .await
                .map_err(nats("uploading a component"))?;
        }
        Ok(())
    }

    /// Announces (or renews) `member`; it disappears [`MEMBER_TTL`] after its last renewal.
    pub async fn announce(&self, member: &Member) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(member).map_err(|e| ClusterError::Nats {
            what: "encoding a member",
            message: e.to_string(),
        })?;
        self.members
            .put(member_key(&member.address), value.into())
            .await
            .map_err(nats("announcing this member"))?;
        Ok(())
    }

    /// Removes `address`'s announcement (a member stopping).
    pub async fn leave(&self, address: &str) {
        let _ = self.members.purge(member_key(address)).await;
    }

    /// The members alive, by address.
    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        use futures::StreamExt as _;
        let mut keys = self
            .members
            .keys()
            .await
            .map_err(nats("listing the members"))?;
        let mut names = BTreeSet::new();
        while let Some(key) = keys.next().await {
            if let Ok(key) = key {
                names.insert(key);
            }
        }
        let mut members = Vec::new();
        for key in names {
            if let Ok(Some(value)) = self.members.get(key.as_str()).await
                && let Ok(member) = serde_json::from_slice::<Member>(value.as_ref())
            {
                members.push(member);
            }
        }
        members.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(members)
    }
}

/// The digests a catalog's bytes name.
fn digests(catalog: &[u8]) -> Result<Vec<Digest>, ClusterError> {
    let catalog: Catalog = serde_json::from_slice(catalog).map_err(|e| ClusterError::Invalid {
        key: "installed",
        message: e.to_string(),
    })?;
    let mut all = Vec::new();
    for shard in &catalog.shards {
        all.push(shard.digest.clone());
        all.extend(shard.history.iter().map(|e| e.digest.clone()));
    }
    Ok(all)
}

fn read_optional(path: &std::path::Path) -> Result<Option<Vec<u8>>, ClusterError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ClusterError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` whole (a temporary file renamed over it), under the data dir's
/// lock so that no CLI command is changing the catalog meanwhile. The lock is only tried: a
/// command holding it (an install downloading) must not block the frame's threads, and the
/// next round writes instead ([`ClusterError::Busy`]).
fn write_locked(data: &DataDir, path: &std::path::Path, bytes: &[u8]) -> Result<(), ClusterError> {
    let io = |what, source| ClusterError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.lock())
        .map_err(|e| io("opening the data dir's lock", e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(ClusterError::Busy),
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking the data dir for", e)),
    }
    let tmp = path.with_extension("cluster-tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::catalog::InstalledShard;

    /// A data dir whose store holds `component` and whose catalog names it as shard `x`.
    fn installed(data: &DataDir, component: &[u8]) -> Digest {
        let digest = data.store().put(component).unwrap();
        let catalog = Catalog {
            shards: vec![InstalledShard {
                name: "x".into(),
                version: "1.0.0".parse().unwrap(),
                digest: digest.clone(),
                source: "test".into(),
                installed_at: "2026-01-01T00:00:00Z".into(),
                history: Vec::new(),
                refused: None,
            }],
        };
        catalog.save(&data.catalog()).unwrap();
        digest
    }

    #[tokio::test]
    async fn one_of_two_concurrent_changes_wins_and_the_other_is_told() {
        let Some(nats) = test_shards::engines::Nats::start() else {
            return;
        };
        let client = async_nats::connect(nats.url()).await.unwrap();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (DataDir::new(dir_a.path()), DataDir::new(dir_b.path()));
        let member_a = Cluster::join(client.clone(), "t").await.unwrap();
        let member_b = Cluster::join(client, "t").await.unwrap();

        // The first member's state becomes the deployment's; the second takes it, component
        // included.
        let first = installed(&a, b"component one");
        assert!(member_a.sync(&a).await.unwrap()[0].starts_with("shared"));
        assert!(member_b.sync(&b).await.unwrap()[0].starts_with("took"));
        assert_eq!(Catalog::load(&b.catalog()).unwrap().shards[0].digest, first);
        assert_eq!(b.store().get(&first).unwrap(), b"component one");
        assert!(member_b.sync(&b).await.unwrap().is_empty());

        // Both change it before either hears of the other: A's reaches the deployment first,
        // so B's is undone (and B is told), and B takes A's with its component.
        let from_a = installed(&a, b"component two");
        let from_b = installed(&b, b"component three");
        member_a.sync(&a).await.unwrap();
        let told = member_b.sync(&b).await.unwrap();
        assert!(told.iter().any(|d| d.starts_with(LOST)), "{told:?}");
        let now = Catalog::load(&b.catalog()).unwrap();
        assert_eq!(now.shards[0].digest, from_a);
        assert_ne!(now.shards[0].digest, from_b);
        assert_eq!(b.store().get(&from_a).unwrap(), b"component two");
        assert!(member_a.sync(&a).await.unwrap().is_empty());

        // A catalog removed by hand is the deployment's again at the next round.
        std::fs::remove_file(b.catalog()).unwrap();
        assert!(member_b.sync(&b).await.unwrap()[0].starts_with("took"));
        assert_eq!(
            Catalog::load(&b.catalog()).unwrap().shards[0].digest,
            from_a
        );

        // One admin token for the deployment, whoever asks first.
        assert_eq!(member_a.admin_token("token-a").await.unwrap(), "token-a");
        assert_eq!(member_b.admin_token("token-b").await.unwrap(), "token-a");
    }

    #[tokio::test]
    async fn a_member_hears_anothers_change_without_polling() {
        let Some(nats) = test_shards::engines::Nats::start() else {
            return;
        };
        let client = async_nats::connect(nats.url()).await.unwrap();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (DataDir::new(dir_a.path()), DataDir::new(dir_b.path()));
        let member_a = Cluster::join(client.clone(), "w").await.unwrap();
        let member_b = Cluster::join(client, "w").await.unwrap();
        let changed = std::sync::Arc::new(tokio::sync::Notify::new());
        let watching = member_b.watch(changed.clone());
        // Nothing changed here, so nothing to push; nothing heard yet.
        assert!(!member_b.changed_here(&b).await);
        installed(&a, b"component");
        assert!(member_a.changed_here(&a).await);
        member_a.sync(&a).await.unwrap();
        assert!(!member_a.changed_here(&a).await);
        // B is woken by the change itself, and takes it.
        tokio::time::timeout(Duration::from_secs(10), changed.notified())
            .await
            .expect("the watch never woke the other member");
        assert!(member_b.sync(&b).await.unwrap()[0].starts_with("took"));
        assert!(!member_b.changed_here(&b).await);
        watching.abort();
    }

    #[tokio::test]
    async fn two_first_changes_to_an_empty_deployment_one_wins() {
        let Some(nats) = test_shards::engines::Nats::start() else {
            return;
        };
        let client = async_nats::connect(nats.url()).await.unwrap();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (DataDir::new(dir_a.path()), DataDir::new(dir_b.path()));
        let member_a = Cluster::join(client.clone(), "e").await.unwrap();
        let member_b = Cluster::join(client, "e").await.unwrap();
        // Both look at a deployment that has no state yet (as `arkham shard add` does before
        // its change), then both install.
        assert!(member_a.sync(&a).await.unwrap().is_empty());
        assert!(member_b.sync(&b).await.unwrap().is_empty());
        let from_a = installed(&a, b"first of two");
        installed(&b, b"second of two");
        assert!(member_a.sync(&a).await.unwrap()[0].starts_with("shared"));
        // B's change is not taken for the deployment's first state: it lost, and is told.
        let told = member_b.sync(&b).await.unwrap();
        assert!(told.iter().any(|d| d.starts_with(LOST)), "{told:?}");
        assert_eq!(
            Catalog::load(&b.catalog()).unwrap().shards[0].digest,
            from_a
        );
    }

    #[test]
    fn names_cannot_meet_a_shards_bucket() {
        assert_eq!(bucket("arkham", "STATE"), "ARKHAM_FRAME_STATE");
        assert_eq!(member_key("10.0.0.5:8470"), "10.0.0.5_8470");
        assert_eq!(member_key("[::1]:8470"), "___1__8470");
    }
}
