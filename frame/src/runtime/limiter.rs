//! The resource limiter of every shard store: memory and table elements are capped for the
//! instance as a whole, across all its linear memories and tables, not per memory.
//!
//! A component may instantiate many core modules, each with a memory of its own. wasmtime's
//! `StoreLimits` caps each memory separately, so such a component could take `memory_bytes` per
//! memory; this limiter sums them. Refusals are traps carrying [`LimitHit`], which the call's
//! error classification recognises by type.

use wasmtime::ResourceLimiter;

/// A limit of an instance that a call ran into; carried as the trap's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// Its memories together would pass the instance's memory limit.
    #[error("the instance's memories would grow to {desired} bytes, past its limit of {limit}")]
    Memory {
        /// Bytes all memories would hold.
        desired: usize,
        /// The limit.
        limit: usize,
    },
    /// Its tables together would pass the instance's table limit.
    #[error("the instance's tables would grow to {desired} elements, past its limit of {limit}")]
    Table {
        /// Elements all tables would hold.
        desired: usize,
        /// The limit.
        limit: usize,
    },
}

/// Per-store accounting of memory and table growth.
#[derive(Debug, Clone)]
pub struct ShardLimiter {
    memory_limit: usize,
    table_limit: usize,
    memories: usize,
    tables: usize,
    instances: usize,
    memory_used: usize,
    table_used: usize,
}

impl ShardLimiter {
    /// A limiter allowing `memory_bytes` over all memories and `table_elements` over all tables,
    /// and at most `instances` core instances, `memories` memories and `tables` tables.
    pub fn new(
        memory_bytes: u64,
        table_elements: u64,
        instances: u32,
        memories: u32,
        tables: u32,
    ) -> Self {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            memory_limit: size(memory_bytes),
            table_limit: size(table_elements),
            memories: memories as usize,
            tables: tables as usize,
            instances: instances as usize,
            memory_used: 0,
            table_used: 0,
        }
    }

    /// Bytes all the store's memories hold.
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }
}

/// Counts one memory's or table's growth from `current` to `desired` into `used`, unless the
/// total would pass `limit`; then nothing is counted and the total it would reach is returned.
fn grow(used: &mut usize, current: usize, desired: usize, limit: usize) -> Result<bool, usize> {
    let total = used.saturating_add(desired.saturating_sub(current));
    if total > limit {
        return Err(total);
    }
    *used = total;
    Ok(true)
}

impl ResourceLimiter for ShardLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory arrives with current = 0, so initial sizes are counted too.
        let limit = self.memory_limit;
        grow(&mut self.memory_used, current, desired, limit)
            .map_err(|desired| LimitHit::Memory { desired, limit }.into())
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The engine refused past what was counted (its slot is smaller): trap as well.
        Err(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.table_limit;
        grow(&mut self.table_used, current, desired, limit)
            .map_err(|desired| LimitHit::Table { desired, limit }.into())
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_capped_across_memories() {
        let mut limiter = ShardLimiter::new(100, 10, 4, 4, 4);
        // Two memories of 40 bytes each fit; a third does not, and nothing is counted for it.
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        let err = limiter.memory_growing(0, 40, None).unwrap_err();
        assert_eq!(
            err.downcast_ref::<LimitHit>(),
            Some(&LimitHit::Memory {
                desired: 120,
                limit: 100
            })
        );
        assert_eq!(limiter.memory_used(), 80);
        // Growing one of them by the rest fits exactly.
        assert!(limiter.memory_growing(40, 60, None).unwrap());
        assert!(limiter.memory_growing(60, 61, None).is_err());
        assert!(limiter.table_growing(0, 10, None).unwrap());
        assert!(limiter.table_growing(0, 1, None).is_err());
    }
}
