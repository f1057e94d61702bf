//! Instance reuse (README, "Instance reuse"): the idle instances a shard that opted in keeps
//! between requests, and the policy generation that retires them when its grant changes.

use super::http::Entry;
use crate::runtime::limits::ShardLimits;
use crate::runtime::slots::SlotPermit;
use crate::runtime::store::ShardState;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Store;

/// Idle instances kept per shard in reuse mode, at most. Past it, an instance that finishes a
/// request is discarded instead of kept, so a burst does not leave its peak of memory resident.
const MAX_IDLE_INSTANCES: usize = 32;

/// Bytes an instance may print (stdout + stderr, over its life) and still be reused; its output
/// pipes are bounded, so a chatty instance is replaced before they fill.
const MAX_REUSED_OUTPUT: usize = 64 << 10;

/// An instance kept between requests by a shard that opted into instance reuse. It keeps its
/// slot while idle, so idle instances count against the shard's cap like running ones.
pub(super) struct Warm {
    pub(super) store: Store<ShardState>,
    pub(super) entry: Entry,
    /// Requests it has served.
    pub(super) served: u32,
    /// The shard's policy generation when its store was created.
    pub(super) generation: u64,
    pub(super) permit: SlotPermit,
}

/// A shard's idle instances and its policy generation.
#[derive(Default)]
pub(super) struct WarmPool {
    /// Idle instances, most recently used last; empty unless `instance_reuse > 1`.
    idle: Mutex<Vec<Warm>>,
    /// Bumped by every policy change; instances created under an older policy are not reused.
    generation: AtomicU64,
}

impl WarmPool {
    /// The current policy generation, for a store created now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// An idle instance created under the current policy, if the shard reuses instances.
    pub(super) fn take(&self, limits: &ShardLimits) -> Option<Warm> {
        if limits.instance_reuse <= 1 {
            return None;
        }
        let generation = self.generation();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(warm) = idle.pop() {
            if warm.generation == generation {
                return Some(warm);
            }
        }
        None
    }

    /// Keeps an instance that just served a request successfully for the next one, if the
    /// reuse rules allow it (README, "Instance reuse"); otherwise it is dropped here.
    pub(super) fn keep(&self, mut warm: Warm, limits: &ShardLimits) {
        let state = warm.store.data();
        let reusable = warm.served < limits.instance_reuse
            && warm.generation == self.generation()
            && !state.holds_resources()
            && state.output_len() < MAX_REUSED_OUTPUT;
        if !reusable {
            return;
        }
        warm.store.data_mut().renew_header_budget();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES.min(limits.instances as usize) {
            idle.push(warm);
        }
    }

    /// Starts a new policy generation (the shard's policy was just replaced): no instance
    /// created before it serves another request.
    pub(super) fn retire(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.clear();
    }

    /// Drops every idle instance, releasing their slots.
    pub(super) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(idle);
    }
}
