//! Admission to the engine's instance slots, shared fairly between shards.
//!
//! The pooling allocator has a fixed number of slots for component instances, memories and
//! tables. Left to first come, first served, one shard's burst of slow requests takes every slot
//! and every other shard gets `frame_busy`. Each call is admitted here first:
//!
//! - a call costs its component's *weight*: one slot, or more when the component has more
//!   memories or tables than one slot's share of the pool (so many-memory components are
//!   counted as what they use, and admitted calls can never exhaust any of the pool's kinds);
//! - each shard may hold at most its cap (`limits.instances_per_shard`) at once;
//! - each shard has a reservation (`limits.instances_reserved_per_shard`) that only it uses, so
//!   it is served even while others hold everything else. Reservations take at most half the
//!   pool; a shard loaded past that gets none and shares the rest.

use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Memories per slot: the engine's pool holds this many memories per component instance.
pub const MEMORIES_PER_SLOT: u32 = 2;
/// Tables per slot, likewise.
pub const TABLES_PER_SLOT: u32 = 4;

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The shard holds as many slots as its cap allows.
    #[error("the shard is at its limit of concurrent instances")]
    ShardFull,
    /// The shared part of the pool is in use and the shard's reservation too.
    #[error("the frame is at its limit of concurrent instances")]
    FrameFull,
}

/// The frame's slots; cheap to clone.
#[derive(Clone)]
pub struct InstanceSlots {
    pool: Arc<Pool>,
}

struct Pool {
    capacity: usize,
    state: Mutex<PoolState>,
    released: Notify,
}

#[derive(Default)]
struct PoolState {
    /// Slots reserved by registered shards.
    reserved: usize,
    /// Slots in use outside reservations.
    shared_used: usize,
}

impl InstanceSlots {
    /// A pool of `capacity` slots.
    pub fn new(capacity: u32) -> Self {
        Self {
            pool: Arc::new(Pool {
                capacity: capacity.max(1) as usize,
                state: Mutex::default(),
                released: Notify::new(),
            }),
        }
    }

    /// The slots of one loaded shard whose calls each cost `weight` slots, with at most
    /// `cap_instances` calls at once and `reserve_instances` of them reserved if the pool has
    /// room for the reservation.
    pub fn register(&self, weight: u32, cap_instances: u32, reserve_instances: u32) -> ShardSlots {
        let weight = weight.max(1) as usize;
        let cap = weight.saturating_mul(cap_instances.max(1) as usize);
        let wanted = weight.saturating_mul(reserve_instances as usize).min(cap);
        let mut state = self.pool.lock();
        let reserved = if state.reserved + wanted <= self.pool.capacity / 2 {
            state.reserved += wanted;
            wanted
        } else {
            0
        };
        drop(state);
        ShardSlots {
            inner: Arc::new(ShardInner {
                pool: self.pool.clone(),
                weight,
                cap,
                reserved,
                used: Mutex::default(),
            }),
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Only counters are updated under the lock; recover them after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One shard's admission; dropping it returns its reservation.
#[derive(Clone)]
pub struct ShardSlots {
    inner: Arc<ShardInner>,
}

struct ShardInner {
    pool: Arc<Pool>,
    weight: usize,
    cap: usize,
    reserved: usize,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    reserved: usize,
    shared: usize,
}

impl ShardInner {
    fn used(&self) -> MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ShardInner {
    fn drop(&mut self) {
        // Every permit holds the inner value, so nothing is in use any more.
        let mut state = self.pool.lock();
        state.reserved = state.reserved.saturating_sub(self.reserved);
        drop(state);
        self.pool.released.notify_waiters();
    }
}

impl ShardSlots {
    /// Admits one call now, or says why not.
    pub fn try_acquire(&self) -> Result<SlotPermit, SlotError> {
        let w = self.inner.weight;
        let mut used = self.inner.used();
        if used.reserved + used.shared + w > self.inner.cap {
            return Err(SlotError::ShardFull);
        }
        if used.reserved + w <= self.inner.reserved {
            used.reserved += w;
            return Ok(self.permit(false));
        }
        let mut state = self.inner.pool.lock();
        let shared_capacity = self.inner.pool.capacity.saturating_sub(state.reserved);
        if state.shared_used + w > shared_capacity {
            return Err(SlotError::FrameFull);
        }
        state.shared_used += w;
        used.shared += w;
        Ok(self.permit(true))
    }

    /// Admits one call, waiting for a slot until `deadline`.
    pub async fn acquire_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<SlotPermit, SlotError> {
        loop {
            let released = self.inner.pool.released.notified();
            tokio::pin!(released);
            // Registered before trying, so a release between the try and the wait is seen.
            released.as_mut().enable();
            match self.try_acquire() {
                Ok(permit) => return Ok(permit),
                Err(e) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Waits until none of the shard's calls holds a slot.
    pub async fn idle(&self) {
        loop {
            let released = self.inner.pool.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.in_use() == 0 {
                return;
            }
            released.await;
        }
    }

    /// Slots the shard holds now.
    pub fn in_use(&self) -> usize {
        let used = self.inner.used();
        used.reserved + used.shared
    }

    fn permit(&self, shared: bool) -> SlotPermit {
        SlotPermit {
            inner: self.inner.clone(),
            shared,
        }
    }
}

/// One admitted call's slots, returned when dropped.
pub struct SlotPermit {
    inner: Arc<ShardInner>,
    shared: bool,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let w = self.inner.weight;
        let mut used = self.inner.used();
        if self.shared {
            used.shared = used.shared.saturating_sub(w);
            let mut state = self.inner.pool.lock();
            state.shared_used = state.shared_used.saturating_sub(w);
        } else {
            used.reserved = used.reserved.saturating_sub(w);
        }
        drop(used);
        self.inner.pool.released.notify_waiters();
    }
}

/// The weight of a component with `memories` memories and `tables` tables: the slots its
/// instance takes of the pool.
pub fn weight(memories: u32, tables: u32) -> u32 {
    memories
        .div_ceil(MEMORIES_PER_SLOT)
        .max(tables.div_ceil(TABLES_PER_SLOT))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_shard_cannot_take_another_shards_reservation() {
        let pool = InstanceSlots::new(10);
        let hog = pool.register(1, 100, 2);
        let quiet = pool.register(1, 100, 2);
        // 10 slots: 2 + 2 reserved, 6 shared. The hog gets its 2 and the 6 shared.
        let held: Vec<_> = (0..8).map(|_| hog.try_acquire().unwrap()).collect();
        assert_eq!(hog.try_acquire().err(), Some(SlotError::FrameFull));
        let a = quiet.try_acquire().unwrap();
        let b = quiet.try_acquire().unwrap();
        assert_eq!(quiet.try_acquire().err(), Some(SlotError::FrameFull));
        drop((a, b));
        drop(held);
        assert_eq!(hog.in_use(), 0);
        assert_eq!(quiet.in_use(), 0);
    }

    #[test]
    fn caps_weights_and_reservations_are_bounded() {
        let pool = InstanceSlots::new(100);
        let capped = pool.register(1, 3, 1);
        let held: Vec<_> = (0..3).map(|_| capped.try_acquire().unwrap()).collect();
        assert_eq!(capped.try_acquire().err(), Some(SlotError::ShardFull));
        drop(held);
        // A weight-10 shard: 10 slots per call, and its reservation counts in slots.
        let heavy = pool.register(weight(20, 1), 100, 1);
        let calls: Vec<_> = (0..9).map(|_| heavy.try_acquire().unwrap()).collect();
        // 100 slots minus 1 + 10 reserved: 89 shared; 9 heavy calls took its 10 reserved and 80.
        assert_eq!(heavy.try_acquire().err(), Some(SlotError::FrameFull));
        drop(calls);
        // Reservations never take more than half of the pool.
        let shards: Vec<_> = (0..100).map(|_| pool.register(1, 10, 10)).collect();
        let reserved: usize = shards.iter().map(|s| s.inner.reserved).sum();
        assert!(reserved + 11 <= 50, "{reserved}");
        drop(shards);
        assert_eq!(pool.pool.lock().reserved, 11);
    }

    #[tokio::test]
    async fn waiting_callers_get_released_slots_and_time_out() {
        let pool = InstanceSlots::new(1);
        let shard = pool.register(1, 1, 0);
        let held = shard.try_acquire().unwrap();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(
            shard.acquire_until(soon).await.err(),
            Some(SlotError::ShardFull)
        );
        let waiter = {
            let shard = shard.clone();
            tokio::spawn(async move {
                let later = tokio::time::Instant::now() + Duration::from_secs(10);
                shard.acquire_until(later).await.map(drop)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        shard.idle().await;
    }
}
