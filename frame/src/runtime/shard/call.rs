//! The call into a guest: [`LoadedShard::run`] drives one HTTP call to its answer while the
//! guest runs to completion ([`RunToCompletion`]), and the deadline every call ends at
//! ([`set_deadline`]).

use super::LoadedShard;
use super::error::{CallError, count_failure};
use super::http::{Entry, Invocation};
use super::reuse::Warm;
use crate::bindings::http_handler;
use crate::metrics::ShardMetrics;
use crate::runtime::slots::SlotPermit;
use crate::runtime::store::ShardState;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::{Store, Trap, UpdateDeadline};

/// What an `http-handler` call answers: its response once its events are durable.
pub(super) type BufferedAnswer = Result<http_handler::Response, CallError>;

/// What a call starts with besides its arguments.
pub(super) struct Call {
    /// A kept instance and the requests it served, if reused.
    pub(super) warm: Option<(Entry, u32)>,
    pub(super) generation: u64,
    pub(super) permit: SlotPermit,
    pub(super) deadline: Instant,
}

impl LoadedShard {
    /// Runs `invocation` (one HTTP call into the instance in `store`) to completion and returns
    /// the answer sent on `receiver` as soon as it is sent, even if the guest is still running
    /// (streaming a body, say).
    ///
    /// Events: an `http-handler` call answers (on `buffered`) only after the events it published
    /// are durable. A `wasi:http` guest answers through its response outparam, possibly before it
    /// returns: the events it published until then are made durable before its response is
    /// released, and the rest when it returns successfully. The whole call, host waits included,
    /// ends at its deadline.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        mut store: Store<ShardState>,
        call: Call,
        mut receiver: tokio::sync::oneshot::Receiver<T>,
        buffered: Option<tokio::sync::oneshot::Sender<BufferedAnswer>>,
        invocation: Invocation,
    ) -> Result<T, CallError> {
        let timeout = self.limits.request_timeout;
        let this = self.clone();
        let pending = store.data().events.pending();
        let Call {
            warm,
            generation,
            permit,
            deadline,
        } = call;
        let (entry, served) = match warm {
            Some((entry, served)) => (Some(entry), served),
            None => (None, 0),
        };
        let events = pending.clone();
        let call = async move {
            let invoked = match tokio::time::timeout_at(
                deadline,
                this.http.invoke(&this.pre, &mut store, entry, invocation),
            )
            .await
            {
                Ok(invoked) => invoked,
                // The guest waits in a host call (a pollable, a lock) past its deadline, where
                // epochs do not reach it: dropping the call cancels the wait and releases what
                // the call held.
                Err(_) => Err(Trap::Interrupt.into()),
            };
            store.data_mut().flush_output();
            let (entry, response) = invoked?;
            let logged = this.append_events(&events.take()).await;
            match (response, buffered) {
                (Some(response), Some(sender)) => {
                    let answer = logged.map(|()| response).map_err(|e| {
                        tracing::error!(shard = &*this.name, error = %e, "events published by the request were not logged; answering 503");
                        CallError::EventsNotLogged {
                            shard: this.name.to_string(),
                            reason: e,
                        }
                    });
                    let failed = answer.is_err();
                    let _ = sender.send(answer);
                    if failed {
                        return Ok(());
                    }
                }
                _ => {
                    if let Err(e) = logged {
                        tracing::error!(shard = &*this.name, error = %e, "events the shard published after its response were not logged");
                        return Ok(());
                    }
                }
            }
            this.warm.keep(
                Warm {
                    store,
                    entry,
                    served: served + 1,
                    generation,
                    permit,
                },
                &this.limits,
            );
            Ok(())
        };

        // The guest runs on this task until it either returns or answers and waits (streaming a
        // body, awaiting the database, ...); only then does it move to a task of its own. A
        // small response thus costs no task spawn and no cross-thread wake-up.
        let mut call = RunToCompletion::new(call, self.name.clone(), self.services.metrics.clone());
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.poll_call(cx) {
                return Poll::Ready(Step::Returned(result));
            }
            Pin::new(&mut receiver).poll(cx).map(Step::Answered)
        })
        .await;
        match step {
            Step::Returned(result) => receiver.try_recv().map_err(|_| match result {
                Ok(()) => CallError::NoResponse(self.name.to_string()),
                Err(e) => self.classify(e, timeout),
            }),
            Step::Answered(Ok(answer)) => {
                // Only a `wasi:http` guest answers before returning; the call is paused here
                // while what it published so far is made durable.
                let early = pending.take();
                if let Err(e) = self.append_events(&early).await {
                    tracing::error!(shard = &*self.name, error = %e, "events published by the request were not logged; answering 503");
                    return Err(CallError::EventsNotLogged {
                        shard: self.name.to_string(),
                        reason: e,
                    });
                }
                Ok(answer)
            }
            // The guest dropped its response outparam without setting it.
            Step::Answered(Err(_)) => Err(match call.finish().await {
                Ok(()) => CallError::NoResponse(self.name.to_string()),
                Err(e) => self.classify(e, timeout),
            }),
        }
    }
}

/// Arms the store's deadline for one call: checked every epoch tick, past `timeout` the guest
/// traps; before it, the guest yields, so one busy shard cannot hold an executor thread.
pub fn set_deadline(store: &mut Store<ShardState>, timeout: Duration) {
    set_deadline_at(store, Instant::now() + timeout);
}

/// [`set_deadline`], to an instant.
pub(super) fn set_deadline_at(store: &mut Store<ShardState>, deadline: Instant) {
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}

/// What happened first in an HTTP call: the guest returned, or it answered (sent or dropped its
/// response) while still running.
enum Step<T> {
    Returned(wasmtime::Result<()>),
    Answered(Result<T, tokio::sync::oneshot::error::RecvError>),
}

type CallFuture = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A call into a guest that always runs to completion: the shard's writes and the logging of
/// its events must not stop halfway because the response went out first or the client went
/// away. Polled in place while someone waits for it; dropped unfinished, it continues on a task
/// of its own.
struct RunToCompletion {
    call: Option<CallFuture>,
    shard: Arc<str>,
    /// Where a failure after the response counts, as one before it does.
    metrics: ShardMetrics,
}

impl RunToCompletion {
    fn new(
        call: impl Future<Output = wasmtime::Result<()>> + Send + 'static,
        shard: Arc<str>,
        metrics: ShardMetrics,
    ) -> Self {
        Self {
            call: Some(Box::pin(call)),
            shard,
            metrics,
        }
    }

    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<wasmtime::Result<()>> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(result)
    }

    async fn finish(mut self) -> wasmtime::Result<()> {
        std::future::poll_fn(|cx| self.poll_call(cx)).await
    }
}

impl Drop for RunToCompletion {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        let shard = self.shard.clone();
        let metrics = self.metrics.clone();
        let rest = async move {
            if let Err(e) = call.await {
                count_failure(&metrics, &e);
                tracing::warn!(shard = &*shard, error = %format!("{e:#}"), "the shard failed after sending its response");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(rest)),
            // Only outside a runtime (never while serving): the call cannot continue.
            Err(_) => tracing::error!(
                shard = &*self.shard,
                "a call into the shard was abandoned unfinished"
            ),
        }
    }
}
