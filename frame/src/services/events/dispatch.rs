//! Delivery of logged events to subscribers: one task per subscribing shard, following its cursor.

use super::{EventBus, EventLog, EventsConfig, StoredEvent};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events read from the log per round trip.
const BATCH: u32 = 256;

/// A shard that receives events.
pub trait EventTarget: Send + Sync + 'static {
    /// The shard's name; also the name of its cursor.
    fn name(&self) -> &str;
    /// Whether an event of this name is for the shard.
    fn wants(&self, event_name: &str) -> bool;
    /// The event patterns it subscribes to, to narrow what an engine sends it (`wants` still
    /// decides); none: everything.
    fn patterns(&self) -> Vec<String> {
        Vec::new()
    }
    /// Delivers one event; `Err` (a handler error, trap or timeout) asks for a retry.
    fn deliver(&self, event: StoredEvent) -> BoxFuture<'_, Result<(), String>>;
    /// Told how each delivery attempt was settled (for the frame's metrics); nothing by default.
    fn settled(&self, _delivery: Delivery) {}
}

/// How one delivery attempt to a subscriber was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The handler took the event.
    Delivered,
    /// It failed, and the event will be delivered again after a back-off.
    Retried,
    /// It failed for the last time: the event is a dead letter for the subscriber now.
    DeadLettered,
}

/// A running delivery task and the switch that stops it.
type Task = (watch::Sender<bool>, JoinHandle<()>);

/// Runs one delivery task per subscriber.
pub struct Dispatcher {
    bus: EventBus,
    config: Arc<EventsConfig>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl Dispatcher {
    /// A dispatcher over `bus` (an [`EventLog`] or a [`JetStreamBus`](super::JetStreamBus)).
    pub fn new(bus: impl Into<EventBus>, config: Arc<EventsConfig>) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            bus: bus.into(),
            config,
            shutdown,
            tasks: Mutex::default(),
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or restarts, for a new version of the shard) delivery to `target`.
    pub async fn start(&self, target: Arc<dyn EventTarget>) {
        self.stop(target.name()).await;
        let (stop, stop_rx) = watch::channel(false);
        // A new subscriber starts at the end of the log: its cursor is made now, not when its
        // task first runs, so that events published once `start` returned reach it (the task
        // would otherwise start after them on a busy runtime). The task makes it again if this
        // failed.
        if let EventBus::Embedded(log) = &self.bus
            && let Err(e) = log.ensure_cursor(target.name()).await
        {
            tracing::warn!(shard = target.name(), error = %e, "its event cursor was not made yet; delivery will retry");
        }
        let task = match &self.bus {
            EventBus::Embedded(log) => tokio::spawn(run(
                log.clone(),
                self.config.clone(),
                target.clone(),
                stop_rx,
                self.shutdown.subscribe(),
            )),
            EventBus::Nats(bus) => tokio::spawn(super::jetstream::run(
                bus.clone(),
                self.config.clone(),
                target.clone(),
                stop_rx,
                self.shutdown.subscribe(),
            )),
        };
        self.tasks().insert(target.name().to_string(), (stop, task));
    }

    /// Stops delivery to the shard `name`, letting an in-flight delivery finish for at most
    /// [`STOP_GRACE`]; past it the delivery is cancelled (and redelivered later: its event stays
    /// after the cursor). Control-plane changes wait on this, so it is bounded whatever the
    /// shard's handler does.
    pub async fn stop(&self, name: &str) {
        let entry = self.tasks().remove(name);
        if let Some((stop, task)) = entry {
            let _ = stop.send(true);
            finish_or_abort(task, name).await;
        }
    }

    /// Stops every task after its in-flight delivery (bounded as in [`stop`](Self::stop));
    /// undelivered events stay in the log.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let all: Vec<_> = self.tasks().drain().collect();
        let waits = all
            .into_iter()
            .map(|(name, (_, task))| async move { finish_or_abort(task, &name).await });
        futures::future::join_all(waits).await;
    }
}

/// How long stopping a subscriber waits for its in-flight delivery before cancelling it.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

async fn finish_or_abort(mut task: JoinHandle<()>, name: &str) {
    if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
        tracing::warn!(
            shard = name,
            "an event delivery still running at stop was cancelled; it will be redelivered"
        );
        task.abort();
        let _ = task.await;
    }
}

/// Waits until either receiver says stop; returns immediately if one already did.
async fn stopped(stop: &mut watch::Receiver<bool>, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

async fn run(
    log: EventLog,
    config: Arc<EventsConfig>,
    target: Arc<dyn EventTarget>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = target.name().to_string();
    let mut head = log.subscribe_head();
    let mut position = match log.ensure_cursor(&name).await {
        Ok(position) => position,
        Err(e) => {
            tracing::error!(shard = %name, error = %e, "event delivery not started");
            return;
        }
    };
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            return;
        }
        head.mark_unchanged();
        let batch = match log.read_after(position, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(shard = %name, error = %e, "reading the event log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped(&mut stop, &mut shutdown) => return,
                }
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = head.changed() => continue,
                _ = stopped(&mut stop, &mut shutdown) => return,
            }
        }
        // The cursor is saved once per batch rather than once per event: one durable commit
        // instead of one per delivery. Delivery is at least once, so a crash redelivers at most
        // the batch; a stop, and a delivery that has to wait for a retry, save it first.
        let mut unsaved = Cursor {
            log: &log,
            subscriber: &name,
            position: None,
        };
        for event in batch {
            let id = event.id;
            if target.wants(&event.name) {
                let settled = deliver_with_retries(
                    &log,
                    &config,
                    &*target,
                    event,
                    &mut unsaved,
                    &mut stop,
                    &mut shutdown,
                )
                .await;
                if settled.is_none() {
                    // Stopped mid-retry: this event stays after the cursor, so it is delivered
                    // next time; the ones before it are saved.
                    unsaved.save().await;
                    return;
                }
            }
            position = id;
            unsaved.position = Some(id);
        }
        unsaved.save().await;
    }
}

/// A subscriber's position not yet saved to the log.
struct Cursor<'a> {
    log: &'a EventLog,
    subscriber: &'a str,
    position: Option<u64>,
}

impl Cursor<'_> {
    async fn save(&mut self) {
        let Some(position) = self.position.take() else {
            return;
        };
        if let Err(e) = self.log.advance(self.subscriber, position).await {
            tracing::error!(shard = %self.subscriber, error = %e, "cursor not saved; events may be delivered again");
        }
    }
}

/// Delivers `event`, retrying with back-off; `None` if stopped before it was settled.
async fn deliver_with_retries(
    log: &EventLog,
    config: &EventsConfig,
    target: &dyn EventTarget,
    event: StoredEvent,
    unsaved: &mut Cursor<'_>,
    stop: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<()> {
    let max_attempts = config.max_attempts.max(1);
    let mut delay = Duration::from_millis(config.retry_base_ms.max(1));
    for attempt in 1..=max_attempts {
        let error = match target.deliver(event.clone()).await {
            Ok(()) => {
                target.settled(Delivery::Delivered);
                return Some(());
            }
            Err(error) => error,
        };
        // The error comes from the guest: cut it before it is logged (every attempt) and stored.
        let error = super::log::truncate_error(&error);
        tracing::warn!(shard = target.name(), event = %event.name, id = event.id, attempt, %error, "event delivery failed");
        // What was delivered before this event must not wait for its retries.
        unsaved.save().await;
        if attempt == max_attempts {
            tracing::error!(shard = target.name(), event = %event.name, id = event.id, "giving up on the event after {max_attempts} attempts");
            if let Err(e) = log
                .dead_letter(target.name(), event.id, attempt, error)
                .await
            {
                tracing::error!(error = %e, "dead letter not recorded");
            }
            target.settled(Delivery::DeadLettered);
            return Some(());
        }
        target.settled(Delivery::Retried);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(stop, shutdown) => return None,
        }
        delay = (delay * 2).min(Duration::from_millis(config.retry_max_ms.max(1)));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::events::Pending;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A subscriber that records what it is delivered and fails as its `fails` says.
    struct Recording {
        name: &'static str,
        wants: fn(&str) -> bool,
        /// Whether the delivery numbered `call` (from 0, over all events) of `event` fails.
        fails: fn(&StoredEvent, u32) -> bool,
        calls: AtomicU32,
        got: Mutex<Vec<u64>>,
    }

    impl EventTarget for Recording {
        fn name(&self) -> &str {
            self.name
        }
        fn wants(&self, event_name: &str) -> bool {
            (self.wants)(event_name)
        }
        fn deliver(&self, event: StoredEvent) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst);
                if (self.fails)(&event, call) {
                    return Err("not now".into());
                }
                self.got.lock().unwrap().push(event.id);
                Ok(())
            })
        }
    }

    /// Starts delivering to `target`, waits for its cursor, then publishes `names`.
    async fn dispatch(
        target: Arc<Recording>,
        config: EventsConfig,
        names: &[&str],
    ) -> (tempfile::TempDir, EventLog, Dispatcher) {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(&dir.path().join("frame.db")).await.unwrap();
        let dispatcher = Dispatcher::new(log.clone(), Arc::new(config));
        dispatcher.start(target.clone()).await;
        // Let the task create its cursor at the (empty) head before publishing.
        while log.cursor(target.name).await.unwrap().is_none() {
            tokio::task::yield_now().await;
        }
        let events: Vec<Pending> = names
            .iter()
            .map(|n| Pending {
                name: n.to_string(),
                payload: "{}".into(),
                hops: 0,
            })
            .collect();
        log.append("a", &events).await.unwrap();
        (dir, log, dispatcher)
    }

    async fn until_cursor(log: &EventLog, subscriber: &str, position: u64) {
        for _ in 0..500 {
            if log.cursor(subscriber).await.unwrap() == Some(position) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn delivers_matching_events_in_order_with_retries() {
        let target = Arc::new(Recording {
            name: "flaky",
            wants: |name| name.starts_with("a."),
            fails: |_, call| call < 2,
            calls: AtomicU32::new(0),
            got: Mutex::default(),
        });
        let config = EventsConfig {
            retry_base_ms: 1,
            ..Default::default()
        };
        let (_dir, log, dispatcher) =
            dispatch(target.clone(), config, &["a.x.one", "b.x.skip", "a.x.two"]).await;
        until_cursor(&log, "flaky", 3).await;
        dispatcher.shutdown().await;
        assert_eq!(*target.got.lock().unwrap(), [1, 3]);
        assert_eq!(log.cursor("flaky").await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn the_cursor_is_saved_before_a_retry_waits_and_at_a_stop() {
        let target = Arc::new(Recording {
            name: "picky",
            wants: |_| true,
            fails: |event, _| event.name == "a.x.bad",
            calls: AtomicU32::new(0),
            got: Mutex::default(),
        });
        // Retries far apart: the dispatcher sits in the back-off after the first failure.
        let config = EventsConfig {
            retry_base_ms: 60_000,
            ..Default::default()
        };
        let names = ["a.x.one", "a.x.two", "a.x.bad", "a.x.four"];
        let (_dir, log, dispatcher) = dispatch(target.clone(), config, &names).await;
        // Events 1 and 2 are delivered in the same batch as 3, which now waits a minute: their
        // position is saved anyway.
        until_cursor(&log, "picky", 2).await;
        assert_eq!(log.cursor("picky").await.unwrap(), Some(2));
        dispatcher.shutdown().await;
        assert_eq!(*target.got.lock().unwrap(), [1, 2]);
        // Stopped mid-retry: event 3 stays after the cursor, to be delivered next time.
        assert_eq!(log.cursor("picky").await.unwrap(), Some(2));
    }
}
