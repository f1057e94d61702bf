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
//! - each shard has a reservation that only it uses, so it is served even while others hold
//!   everything else: `limits.instances_reserved_per_shard`, or less when the loaded shards'
//!   reservations would take more than half of the pool (then each gets an equal share of
//!   that half, whatever the order they were loaded in). A call is admitted only if the slots
//!   left free still cover what the other shards' reservations are owed.

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
    /// The free slots are owed to other shards' reservations, or there are none.
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
    /// Slots held by admitted calls.
    in_use: usize,
    /// Slots the shards' reservations are still owed: the sum of `reserved - used` over shards
    /// below their reservation.
    owed: usize,
    /// Every registered shard's account, by index; `None` once it is dropped.
    accounts: Vec<Option<Account>>,
}

struct Account {
    weight: usize,
    cap: usize,
    /// The reservation it asked for, in slots.
    wanted: usize,
    /// The reservation it has, in slots (a multiple of its weight).
    reserved: usize,
    used: usize,
}

impl Account {
    fn owed(&self) -> usize {
        self.reserved.saturating_sub(self.used)
    }
}

impl PoolState {
    /// Shares half the pool between the reservations of the shards registered now.
    fn rebalance(&mut self, capacity: usize) {
        let live = self.accounts.iter().flatten().count().max(1);
        let share = capacity / 2 / live;
        let mut owed = 0;
        for account in self.accounts.iter_mut().flatten() {
            let reserved = account.wanted.min(share);
            account.reserved = reserved - reserved % account.weight;
            owed += account.owed();
        }
        self.owed = owed;
    }
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

    /// Slots in the pool.
    pub fn capacity(&self) -> usize {
        self.pool.capacity
    }

    /// Slots held now, by every shard.
    pub fn in_use(&self) -> usize {
        self.pool.lock().in_use
    }

    /// The slots of one loaded shard whose calls each cost `weight` slots, with at most
    /// `cap_instances` calls at once and up to `reserve_instances` of them reserved.
    pub fn register(&self, weight: u32, cap_instances: u32, reserve_instances: u32) -> ShardSlots {
        let weight = weight.max(1) as usize;
        let cap = weight.saturating_mul(cap_instances.max(1) as usize);
        let wanted = weight.saturating_mul(reserve_instances as usize).min(cap);
        let account = Account {
            weight,
            cap,
            wanted,
            reserved: 0,
            used: 0,
        };
        let mut state = self.pool.lock();
        // Reloads and updates register again: reuse the entries of shards that are gone.
        let index = match state.accounts.iter().position(Option::is_none) {
            Some(free) => {
                state.accounts[free] = Some(account);
                free
            }
            None => {
                state.accounts.push(Some(account));
                state.accounts.len() - 1
            }
        };
        state.rebalance(self.pool.capacity);
        drop(state);
        ShardSlots {
            inner: Arc::new(ShardInner {
                pool: self.pool.clone(),
                index,
                weight,
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

/// One shard's admission; dropping its last clone (and permit) gives its reservation back.
#[derive(Clone)]
pub struct ShardSlots {
    inner: Arc<ShardInner>,
}

struct ShardInner {
    pool: Arc<Pool>,
    index: usize,
    weight: usize,
}

impl Drop for ShardInner {
    fn drop(&mut self) {
        // Every permit holds this value, so nothing of the shard is in use any more.
        let mut state = self.pool.lock();
        if let Some(slot) = state.accounts.get_mut(self.index) {
            *slot = None;
        }
        state.rebalance(self.pool.capacity);
        drop(state);
        self.pool.released.notify_waiters();
    }
}

impl ShardSlots {
    /// Admits one call now, or says why not.
    pub fn try_acquire(&self) -> Result<SlotPermit, SlotError> {
        let w = self.inner.weight;
        let capacity = self.inner.pool.capacity;
        let mut state = self.inner.pool.lock();
        let (in_use, owed) = (state.in_use, state.owed);
        let Some(account) = state
            .accounts
            .get_mut(self.inner.index)
            .and_then(Option::as_mut)
        else {
            return Err(SlotError::FrameFull);
        };
        if account.used + w > account.cap {
            return Err(SlotError::ShardFull);
        }
        // What of this call its own reservation covers; the rest must leave the others' due.
        let own = account.owed().min(w);
        if in_use + w > capacity.saturating_sub(owed - own) {
            return Err(SlotError::FrameFull);
        }
        account.used += w;
        state.in_use += w;
        state.owed -= own;
        Ok(SlotPermit {
            inner: self.inner.clone(),
        })
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
        let state = self.inner.pool.lock();
        state
            .accounts
            .get(self.inner.index)
            .and_then(Option::as_ref)
            .map_or(0, |a| a.used)
    }

    /// Slots reserved for the shard now.
    pub fn reserved(&self) -> usize {
        let state = self.inner.pool.lock();
        state
            .accounts
            .get(self.inner.index)
            .and_then(Option::as_ref)
            .map_or(0, |a| a.reserved)
    }
}

/// One admitted call's slots, returned when dropped.
pub struct SlotPermit {
    inner: Arc<ShardInner>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let w = self.inner.weight;
        let mut state = self.inner.pool.lock();
        state.in_use = state.in_use.saturating_sub(w);
        if let Some(account) = state
            .accounts
            .get_mut(self.inner.index)
            .and_then(Option::as_mut)
        {
            let before = account.owed();
            account.used = account.used.saturating_sub(w);
            let due = account.owed() - before;
            state.owed += due;
        }
        drop(state);
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
        // 10 slots, 2 + 2 reserved: the hog gets its 2 and the 6 nobody is owed.
        let held: Vec<_> = (0..8).map(|_| hog.try_acquire().unwrap()).collect();
        assert_eq!(hog.try_acquire().err(), Some(SlotError::FrameFull));
        let a = quiet.try_acquire().unwrap();
        let b = quiet.try_acquire().unwrap();
        assert_eq!(quiet.try_acquire().err(), Some(SlotError::FrameFull));
        drop((a, b));
        drop(held);
        assert_eq!(hog.in_use(), 0);
        assert_eq!(quiet.in_use(), 0);
        // Released slots are owed again: the quiet shard gets its 2 back first.
        let held: Vec<_> = (0..8).map(|_| hog.try_acquire().unwrap()).collect();
        assert_eq!(quiet.try_acquire().map(drop), Ok(()));
        drop(held);
    }

    #[test]
    fn caps_weights_and_reservations_are_bounded_and_fair() {
        let pool = InstanceSlots::new(100);
        let capped = pool.register(1, 3, 1);
        let held: Vec<_> = (0..3).map(|_| capped.try_acquire().unwrap()).collect();
        assert_eq!(capped.try_acquire().err(), Some(SlotError::ShardFull));
        drop(held);
        // A weight-10 shard: 10 slots per call, and its reservation counts in slots.
        let heavy = pool.register(weight(20, 1), 100, 1);
        assert_eq!(heavy.reserved(), 10);
        let calls: Vec<_> = (0..9).map(|_| heavy.try_acquire().unwrap()).collect();
        // 100 slots, the capped shard owed 1: 9 heavy calls hold 90, a tenth would leave 0.
        assert_eq!(heavy.try_acquire().err(), Some(SlotError::FrameFull));
        assert_eq!(capped.try_acquire().map(drop), Ok(()));
        drop(calls);
        // Reservations never take more than half of the pool: with 52 shards asking for 10
        // each, each gets 50 / 52 = 0 (the weight-10 shard too), whatever the loading order.
        let shards: Vec<_> = (0..50).map(|_| pool.register(1, 10, 10)).collect();
        let reserved: usize = shards.iter().map(ShardSlots::reserved).sum();
        assert_eq!(reserved + capped.reserved() + heavy.reserved(), 0);
        drop(shards);
        // With 2 shards again, each has what it asked for.
        assert_eq!((capped.reserved(), heavy.reserved()), (1, 10));
        let five: Vec<_> = (0..5).map(|_| pool.register(1, 10, 10)).collect();
        // 7 shards share 50: 7 each, the weight-10 one gets none (less than one call).
        assert_eq!(five[0].reserved(), 7);
        assert_eq!((capped.reserved(), heavy.reserved()), (1, 0));
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
