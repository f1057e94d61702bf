//! Why a call into a shard failed: [`CallError`], and what a failed wasmtime call means
//! ([`Failure`]), decided from the error's types (trap codes, the limiter's [`LimitHit`], the
//! pool's [`PoolConcurrencyLimitError`]) and never from its message text, which changes between
//! wasmtime releases.

use crate::metrics::ShardMetrics;
use crate::runtime::limiter::LimitHit;
use std::time::Duration;
use wasmtime::{PoolConcurrencyLimitError, Trap};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// Bytes of a trap's details kept for the log and dead letters.
const MAX_TRAP_DETAIL: usize = 8 << 10;

/// Why a call into a shard failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The shard has as many instances running as it may.
    #[error("shard `{0}` is at its limit of concurrent instances; retry shortly")]
    Busy(String),
    /// The call ran past its deadline and was stopped.
    #[error("shard `{shard}` did not finish within {limit_ms} ms and was stopped")]
    Timeout {
        /// The shard.
        shard: String,
        /// The deadline.
        limit_ms: u128,
    },
    /// The shard trapped (panic, unreachable, stack overflow, ...). Clients see the reference;
    /// the details (the trap and the guest's backtrace) are in the frame's log under it.
    #[error(
        "shard `{shard}` failed (reference {reference}); the frame's log has the details under \
         that reference"
    )]
    Trap {
        /// The shard.
        shard: String,
        /// A short random id, logged with the details.
        reference: String,
        /// What the trap said, with the guest's backtrace: for the log and dead letters only.
        detail: String,
    },
    /// The instance needed more memory than its limit.
    #[error("shard `{shard}` ran out of its {limit_bytes}-byte memory limit and was stopped")]
    MemoryExceeded {
        /// The shard.
        shard: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// Every instance slot of the frame is in use.
    #[error("the frame is at its limit of concurrent instances; retry shortly")]
    FrameBusy,
    /// The shard returned without setting a response.
    #[error("shard `{0}` returned without sending a response")]
    NoResponse(String),
    /// The shard's `http-handler` returned a response that cannot be sent.
    #[error(
        "shard `{shard}` returned an invalid response: {reason}; its `http-handler` must return a \
         status in 100..=599 and header names and values HTTP allows (fix the shard)"
    )]
    InvalidResponse {
        /// The shard.
        shard: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The shard's response is larger than its response limit: a whole body, or a streamed one
    /// whose declared length is (one that declares none is cut off where it passes the limit).
    #[error("shard `{shard}` sent a response larger than the limit of {limit_bytes} bytes")]
    ResponseTooLarge {
        /// The shard.
        shard: String,
        /// The limit (`max_response_bytes`).
        limit_bytes: u64,
    },
    /// The call succeeded but the events it published could not be made durable, so it is not
    /// acknowledged.
    #[error(
        "shard `{shard}` handled the request, but the events it published could not be logged \
         ({reason}); the request is not acknowledged: retry it"
    )]
    EventsNotLogged {
        /// The shard.
        shard: String,
        /// The event log's error.
        reason: String,
    },
    /// The shard answered with a `wasi:http` error code instead of a response.
    #[error("shard `{shard}` answered with an error: {code:?}")]
    Guest {
        /// The shard.
        shard: String,
        /// The error code it set.
        code: ErrorCode,
    },
}

/// What a failed wasmtime call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Its deadline passed: the epoch callback (or the host-wait timeout) raised
    /// [`Trap::Interrupt`].
    Timeout,
    /// The instance's limiter refused to grow a memory or table ([`LimitHit`]).
    MemoryExceeded,
    /// The engine's pool had no slot left ([`PoolConcurrencyLimitError`]).
    FrameBusy,
    /// Anything else: a trap of the guest's own (or a host error surfaced as one).
    Trap,
}

/// What `error` means, from the types in its chain. A context added on the way up does not hide
/// them: wasmtime's `downcast_ref` searches the whole chain.
pub(crate) fn failure(error: &wasmtime::Error) -> Failure {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        Failure::Timeout
    } else if error.downcast_ref::<LimitHit>().is_some() {
        Failure::MemoryExceeded
    } else if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        Failure::FrameBusy
    } else {
        Failure::Trap
    }
}

/// Counts a failure in the shard's metrics by its kind (a full pool is none of the shard's).
pub(super) fn count(metrics: &ShardMetrics, failure: Failure) {
    match failure {
        Failure::Timeout => metrics.timeout(),
        Failure::MemoryExceeded => metrics.memory_limit_hit(),
        Failure::Trap => metrics.trap(),
        Failure::FrameBusy => {}
    }
}

/// Counts a failed call in the shard's metrics, for failures after its answer went out.
pub(super) fn count_failure(metrics: &ShardMetrics, error: &wasmtime::Error) {
    count(metrics, failure(error));
}

/// The [`CallError`] of a call into `shard` that failed with `error` as `failure`, given its
/// deadline (`timeout`) and memory limit. A trap is logged here with a fresh reference, which the
/// client sees instead of the details.
pub(super) fn call_error(
    shard: &str,
    error: &wasmtime::Error,
    failure: Failure,
    timeout: Duration,
    memory_limit: u64,
) -> CallError {
    let name = shard.to_string();
    match failure {
        Failure::Timeout => CallError::Timeout {
            shard: name,
            limit_ms: timeout.as_millis(),
        },
        Failure::MemoryExceeded => CallError::MemoryExceeded {
            shard: name,
            limit_bytes: memory_limit,
        },
        Failure::FrameBusy => CallError::FrameBusy,
        Failure::Trap => {
            let reference = format!("{:08x}", rand::random::<u32>());
            let detail =
                crate::services::logging::truncate_to(&format!("{error:?}"), MAX_TRAP_DETAIL)
                    .to_string();
            tracing::warn!(shard, reference, detail, "the shard trapped");
            CallError::Trap {
                shard: name,
                reference,
                detail,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::{Component, Linker};
    use wasmtime::{
        Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    };

    fn classify(error: &wasmtime::Error) -> CallError {
        call_error(
            "s",
            error,
            failure(error),
            Duration::from_millis(250),
            1 << 20,
        )
    }

    #[test]
    fn an_interrupt_is_a_timeout_even_under_a_context() {
        let bare = wasmtime::Error::from(Trap::Interrupt);
        let wrapped = wasmtime::Error::from(Trap::Interrupt)
            .context("while calling the guest")
            .context("while serving GET /");
        for error in [bare, wrapped] {
            assert_eq!(failure(&error), Failure::Timeout, "{error:?}");
            assert!(
                matches!(classify(&error), CallError::Timeout { limit_ms: 250, .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_limit_hit_on_memory_or_tables_is_memory_exceeded() {
        let hits = [
            LimitHit::Memory {
                desired: 2 << 20,
                limit: 1 << 20,
            },
            LimitHit::Table {
                desired: 20_000,
                limit: 10_000,
            },
        ];
        for hit in hits {
            for error in [
                wasmtime::Error::from(hit),
                wasmtime::Error::from(hit).context("growing memory"),
            ] {
                assert_eq!(failure(&error), Failure::MemoryExceeded, "{error:?}");
                assert!(
                    matches!(
                        classify(&error),
                        CallError::MemoryExceeded {
                            limit_bytes: 1048576,
                            ..
                        }
                    ),
                    "{error:?}"
                );
            }
        }
    }

    #[test]
    fn other_traps_are_the_guests_own_with_a_reference() {
        let error = wasmtime::Error::from(Trap::UnreachableCodeReached).context("in the guest");
        assert_eq!(failure(&error), Failure::Trap);
        let CallError::Trap {
            shard,
            reference,
            detail,
        } = classify(&error)
        else {
            panic!("not a trap: {error:?}");
        };
        assert_eq!(shard, "s");
        assert_eq!(reference.len(), 8);
        assert!(
            reference.chars().all(|c| c.is_ascii_hexdigit()),
            "{reference}"
        );
        assert!(detail.contains("in the guest"), "{detail}");
        // A message that merely reads like a limit is still the guest's trap.
        let lookalike = wasmtime::format_err!("forcing trap when growing memory; interrupt");
        assert_eq!(failure(&lookalike), Failure::Trap);
    }

    #[test]
    fn a_full_pool_is_frame_busy() {
        // The pool's error cannot be built by hand: get one from a pool of one instance, with
        // the first instance alive in its store while the second is instantiated.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(1);
        // Small, so the pool reserves little address space.
        pool.total_core_instances(1);
        pool.total_memories(1);
        pool.total_tables(1);
        pool.max_memory_size(1 << 16);
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wat::parse_str("(component)").unwrap()).unwrap();
        let linker = Linker::<()>::new(&engine);
        let mut first = Store::new(&engine, ());
        let _held = linker.instantiate(&mut first, &component).unwrap();
        let mut second = Store::new(&engine, ());
        let error = linker.instantiate(&mut second, &component).unwrap_err();
        assert!(
            error.downcast_ref::<PoolConcurrencyLimitError>().is_some(),
            "{error:?}"
        );
        assert_eq!(failure(&error), Failure::FrameBusy);
        assert!(matches!(classify(&error), CallError::FrameBusy));
    }
}
