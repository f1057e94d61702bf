//! The NATS JetStream backend of the event bus.
//!
//! One stream `<PREFIX>_EVENTS` over `<prefix>.events.>`: an event `a.b.c` is the message
//! `<prefix>.events.a.b.c`, its payload the body, its source, hops and publication time in
//! headers, with a fresh `Nats-Msg-Id` per publication so JetStream drops a client's retry.
//! Retention is interest-based (a message goes once every consumer bound to it acked, as the
//! embedded log trims past every cursor) within `stream_max_age_s`/`stream_max_bytes`, with
//! `discard = new`: a full stream refuses publications instead of dropping undelivered events.
//!
//! Each subscribing shard has one durable pull consumer, one event in flight at a time
//! (`max_ack_pending = 1`), acked after its handler returns, nak'd with the back-off otherwise;
//! after `max_attempts` the event goes to `<PREFIX>_DEAD` under `<prefix>.dead.<subscriber>`.
//!
//! Per-shard fairness: JetStream counts messages per subject, not bytes. A task refreshes, every
//! [`RETAINED_REFRESH`], each shard's retained bytes as its message count (summed over its
//! subjects) times the mean size of its events as this frame published them (the stream's mean
//! for a shard this frame has not seen publish). The count is exact, the size an estimate.

use super::log::truncate_error;
use super::quota::{Retained, event_bytes};
use super::{Delivery, EventTarget, EventsConfig, Pending, StoredEvent};
use crate::services::nats::{NatsConfig, server_at_least};
use async_nats::HeaderMap;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often each shard's retained bytes are recounted from the stream.
pub const RETAINED_REFRESH: Duration = Duration::from_secs(1);
/// How long a consumer loop waits before trying again after NATS failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// How long JetStream waits for a subscriber's ack before redelivering. A running handler sends
/// progress every third of it, so this bounds only how long an event in flight on a frame that
/// died (or lost its connection) waits before another delivery.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Most dead letters one listing returns.
pub const MAX_DEAD_LETTERS: usize = 10_000;

const H_SOURCE: &str = "Arkham-Source";
const H_HOPS: &str = "Arkham-Hops";
const H_PUBLISHED: &str = "Arkham-Published-At";
const H_EVENT_ID: &str = "Arkham-Event-Id";
const H_EVENT_NAME: &str = "Arkham-Event-Name";
const H_ATTEMPTS: &str = "Arkham-Attempts";
const H_FAILED: &str = "Arkham-Failed-At";
const H_ERROR_BYTES: &str = "Arkham-Error-Bytes";

/// An error of the JetStream bus.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// The stream refused the publication because it is full (`stream_max_bytes`).
    #[error(
        "the event stream {stream} is full (events.stream_max_bytes); events are removed once every subscriber received them, so publish again later"
    )]
    Full {
        /// The stream.
        stream: String,
    },
    /// A JetStream request failed.
    #[error("NATS JetStream {what}: {reason}")]
    Nats {
        /// What the bus was doing.
        what: &'static str,
        /// The client's error.
        reason: String,
    },
    /// The bus was closed (the frame is shutting down).
    #[error("the event bus is closed (the frame is shutting down); the events were not published")]
    Closed,
}

fn nats<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> JetStreamError {
    move |e| JetStreamError::Nats {
        what,
        reason: e.to_string(),
    }
}

struct Inner {
    js: jetstream::Context,
    stream: String,
    dead_stream: String,
    /// `<prefix>.events`.
    subjects: String,
    /// `<prefix>.dead`.
    dead_subjects: String,
    /// Prefix of consumer names: `<PREFIX>_`.
    consumers: String,
    /// Whether the server takes several filter subjects per consumer (2.10 and later).
    multi_filter: bool,
    ack_wait: Duration,
    retained: Arc<Retained>,
    /// Per source: (events, bytes) this frame published, for the mean event size.
    sizes: Mutex<HashMap<String, (u64, u64)>>,
    closed: AtomicBool,
}

/// The event bus on NATS JetStream; cheap to clone.
#[derive(Clone)]
pub struct JetStreamBus(Arc<Inner>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether a publication error says the stream is at its limits (`discard = new`).
fn is_full(reason: &str) -> bool {
    reason.contains("maximum bytes") || reason.contains("resource limits")
}

/// The subject filter of an event pattern (`*` one part, a trailing `*` any rest) under `base`.
pub fn pattern_subject(base: &str, pattern: &str) -> String {
    let parts: Vec<&str> = pattern.split('.').collect();
    let last = parts.len().saturating_sub(1);
    let mapped: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if *p == "*" && i == last && parts.len() < 3 {
                ">"
            } else {
                p
            }
        })
        .collect();
    format!("{base}.{}", mapped.join("."))
}

impl JetStreamBus {
    /// Creates or updates the streams (idempotent: several frames share them) and starts the
    /// task that recounts retained bytes. `ack_wait` is how long the server waits for an ack or
    /// a progress message before redelivering ([`ACK_WAIT`] in the frame).
    pub async fn open(
        client: async_nats::Client,
        nats_config: &NatsConfig,
        config: &EventsConfig,
        ack_wait: Duration,
    ) -> Result<Self, JetStreamError> {
        let multi_filter = server_at_least(&client, 2, 10);
        let max_payload = client.server_info().max_payload;
        if max_payload < config.max_payload_bytes + 4096 {
            tracing::warn!(
                server_max_payload = max_payload,
                events_max_payload_bytes = config.max_payload_bytes,
                "the NATS server's max_payload is below events.max_payload_bytes plus headers: \
                 larger events fail to publish; raise max_payload on the server or lower \
                 events.max_payload_bytes"
            );
        }
        let js = jetstream::new(client);
        let (lower, upper) = (nats_config.subject_prefix(), nats_config.stream_prefix());
        let stream = format!("{upper}_EVENTS");
        let dead_stream = format!("{upper}_DEAD");
        let subjects = format!("{lower}.events");
        let dead_subjects = format!("{lower}.dead");
        let max_bytes = i64::try_from(config.stream_max_bytes).unwrap_or(i64::MAX);
        js.create_or_update_stream(stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{subjects}.>")],
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_age: Duration::from_secs(config.stream_max_age_s),
            max_bytes,
            ..Default::default()
        })
        .await
        .map_err(nats("creating the event stream"))?;
        js.create_or_update_stream(stream::Config {
            name: dead_stream.clone(),
            subjects: vec![format!("{dead_subjects}.>")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_bytes,
            ..Default::default()
        })
        .await
        .map_err(nats("creating the dead-letter stream"))?;
        let bus = Self(Arc::new(Inner {
            js,
            stream,
            dead_stream,
            subjects,
            dead_subjects,
            consumers: format!("{upper}_"),
            multi_filter,
            ack_wait,
            retained: Arc::default(),
            sizes: Mutex::default(),
            closed: AtomicBool::new(false),
        }));
        tokio::spawn(retained_loop(Arc::downgrade(&bus.0)));
        Ok(bus)
    }

    pub(crate) fn retained(&self) -> Arc<Retained> {
        self.0.retained.clone()
    }

    /// Publishes a call's events and waits for every acknowledgement: they are durable when this
    /// returns `Ok`.
    pub async fn append(&self, source: &str, events: &[Pending]) -> Result<(), JetStreamError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.0.closed.load(Ordering::SeqCst) {
            return Err(JetStreamError::Closed);
        }
        let published_at = now_ms().to_string();
        let mut sent = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                crate::runtime::cache::hex(&rand::random::<[u8; 16]>()).as_str(),
            );
            headers.insert(H_SOURCE, source);
            headers.insert(H_HOPS, event.hops.to_string().as_str());
            headers.insert(H_PUBLISHED, published_at.as_str());
            let subject = format!("{}.{}", self.0.subjects, event.name);
            let ack = self.send(&subject, &headers, &event.payload).await?;
            sent.push((subject, headers, ack));
        }
        let mut bytes = 0;
        for ((subject, headers, ack), event) in sent.into_iter().zip(events) {
            match ack.await {
                Ok(_) => {}
                Err(e) if is_full(&e.to_string()) => return Err(self.full()),
                // Lost on the way (a timeout, a reconnect): sent again with the same
                // Nats-Msg-Id, so JetStream keeps one copy if the first one did land.
                Err(_) => {
                    self.send(&subject, &headers, &event.payload)
                        .await?
                        .await
                        .map_err(|e| {
                            let reason = e.to_string();
                            if is_full(&reason) {
                                self.full()
                            } else {
                                JetStreamError::Nats {
                                    what: "publishing an event",
                                    reason,
                                }
                            }
                        })?;
                }
            }
        }
        for event in events {
            bytes += event_bytes(&event.name, &event.payload);
        }
        self.0.retained.add(source, bytes);
        let mut sizes = self.0.sizes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = sizes.entry(source.to_string()).or_default();
        entry.0 = entry.0.saturating_add(events.len() as u64);
        entry.1 = entry.1.saturating_add(bytes);
        Ok(())
    }

    async fn send(
        &self,
        subject: &str,
        headers: &HeaderMap,
        payload: &str,
    ) -> Result<jetstream::context::PublishAckFuture, JetStreamError> {
        self.0
            .js
            .publish_with_headers(
                subject.to_string(),
                headers.clone(),
                payload.to_string().into(),
            )
            .await
            .map_err(nats("publishing an event"))
    }

    fn full(&self) -> JetStreamError {
        JetStreamError::Full {
            stream: self.0.stream.clone(),
        }
    }

    fn consumer_name(&self, subscriber: &str) -> String {
        format!("{}{subscriber}", self.0.consumers)
    }

    /// The consumer of `target`, created at the head for a new subscriber, or updated when its
    /// patterns changed.
    async fn consumer(
        &self,
        target: &dyn EventTarget,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.stream)
            .await
            .map_err(nats("opening the event stream"))?;
        let subjects: Vec<String> = target
            .patterns()
            .iter()
            .map(|p| pattern_subject(&self.0.subjects, p))
            .collect();
        let (filter_subject, filter_subjects) = match subjects.len() {
            1 => (subjects[0].clone(), Vec::new()),
            n if n > 1 && self.0.multi_filter => (String::new(), subjects),
            // Several patterns on a server before 2.10, or none known: every event, filtered by
            // `wants` in the frame.
            _ => (format!("{}.>", self.0.subjects), Vec::new()),
        };
        let name = self.consumer_name(target.name());
        let mut config = pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.0.ack_wait,
            max_ack_pending: 1,
            max_deliver: -1,
            filter_subject,
            filter_subjects,
            ..Default::default()
        };
        let bridge = bridge_name(&name);
        match stream.consumer_info(&name).await {
            Ok(info) => {
                let old = &info.config;
                if old.filter_subject == config.filter_subject
                    && old.filter_subjects == config.filter_subjects
                {
                    // A bridge left by a move that stopped half-way holds messages back.
                    if stream.consumer_info(&bridge).await.is_ok() {
                        let _ = stream.delete_consumer(&bridge).await;
                    }
                    if old.ack_wait == config.ack_wait {
                        return stream
                            .get_consumer(&name)
                            .await
                            .map_err(nats("opening a consumer"));
                    }
                    config.deliver_policy = old.deliver_policy;
                    return stream
                        .update_consumer(config)
                        .await
                        .map_err(nats("updating a consumer"));
                }
                move_consumer(
                    &stream,
                    config,
                    info.ack_floor.stream_sequence.saturating_add(1),
                )
                .await
            }
            // A move that stopped between deleting the old consumer and making the new one:
            // the bridge kept the position.
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                match stream.consumer_info(&bridge).await {
                    Ok(info) => {
                        move_consumer(
                            &stream,
                            config,
                            info.ack_floor.stream_sequence.saturating_add(1),
                        )
                        .await
                    }
                    // A new subscriber: from the next event on.
                    Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => stream
                        .create_consumer(config)
                        .await
                        .map_err(nats("creating a consumer")),
                    Err(e) => Err(nats("reading a bridge consumer")(e)),
                }
            }
            // Not an answer (a server restarting, a timeout): making the consumer anew from the
            // next event would skip what it had not delivered yet, which interest retention then
            // drops. Asked again later.
            Err(e) => Err(nats("reading a consumer")(e)),
        }
    }

    /// Deletes the consumer of a removed shard (or one that stopped subscribing), so it holds
    /// nothing back.
    pub async fn remove_subscriber(&self, subscriber: &str) -> Result<(), JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.stream)
            .await
            .map_err(nats("opening the event stream"))?;
        let name = self.consumer_name(subscriber);
        for name in [bridge_name(&name), name] {
            if stream.consumer_info(&name).await.is_ok() {
                stream
                    .delete_consumer(&name)
                    .await
                    .map_err(nats("deleting a consumer"))?;
            }
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        subscriber: &str,
        event: &StoredEvent,
        attempts: u32,
        error: &str,
    ) -> Result<(), JetStreamError> {
        let error = truncate_error(error);
        let mut headers = HeaderMap::new();
        headers.insert(H_EVENT_ID, event.id.to_string().as_str());
        headers.insert(H_EVENT_NAME, event.name.as_str());
        headers.insert(H_SOURCE, event.source.as_str());
        headers.insert(H_HOPS, event.hops.to_string().as_str());
        headers.insert(H_PUBLISHED, event.published_at.to_string().as_str());
        headers.insert(H_ATTEMPTS, attempts.to_string().as_str());
        headers.insert(H_FAILED, now_ms().to_string().as_str());
        headers.insert(H_ERROR_BYTES, error.len().to_string().as_str());
        // The error first, then the payload: no escaping, and headers need no newlines.
        let body = [error.as_bytes(), event.payload.as_bytes()].concat();
        self.0
            .js
            .publish_with_headers(
                format!("{}.{subscriber}", self.0.dead_subjects),
                headers,
                body.into(),
            )
            .await
            .map_err(nats("recording a dead letter"))?
            .await
            .map_err(nats("recording a dead letter"))?;
        Ok(())
    }

    /// Walks `subscriber`'s dead letters, oldest first: (dead-stream sequence, event, error).
    async fn walk_dead(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(u64, StoredEvent, String)>, JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.dead_stream)
            .await
            .map_err(nats("opening the dead-letter stream"))?;
        let subject = format!("{}.{subscriber}", self.0.dead_subjects);
        let mut out = Vec::new();
        let mut next = 1;
        while out.len() < limit.min(MAX_DEAD_LETTERS) {
            let message = match stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(subject.clone())
                .send()
                .await
            {
                Ok(message) => message,
                Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                    break;
                }
                Err(e) => return Err(nats("reading dead letters")(e)),
            };
            next = message.sequence + 1;
            let h = |k: &str| {
                message
                    .headers
                    .get(k)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default()
            };
            let error_len = h(H_ERROR_BYTES)
                .parse::<usize>()
                .unwrap_or(0)
                .min(message.payload.len());
            let (error, payload) = message.payload.split_at(error_len);
            let event = StoredEvent {
                id: h(H_EVENT_ID).parse().unwrap_or(0),
                name: h(H_EVENT_NAME),
                source: h(H_SOURCE),
                payload: String::from_utf8_lossy(payload).into_owned(),
                published_at: h(H_PUBLISHED).parse().unwrap_or(0),
                hops: h(H_HOPS).parse().unwrap_or(0),
            };
            out.push((
                message.sequence,
                event,
                String::from_utf8_lossy(error).into_owned(),
            ));
        }
        Ok(out)
    }

    /// Events `subscriber` gave up on, as (event id, error), at most `limit`.
    pub async fn dead_letters(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, JetStreamError> {
        Ok(self
            .walk_dead(subscriber, limit)
            .await?
            .into_iter()
            .map(|(_, event, error)| (event.id, error))
            .collect())
    }

    /// How far `subscriber` is behind: the events its consumer has not had acknowledged
    /// (pending, plus the one in flight); `None` when it has no consumer.
    pub async fn lag(&self, subscriber: &str) -> Result<Option<u64>, JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.stream)
            .await
            .map_err(nats("opening the event stream"))?;
        match stream.consumer_info(&self.consumer_name(subscriber)).await {
            Ok(info) => Ok(Some(info.num_pending + info.num_ack_pending as u64)),
            Err(_) => Ok(None),
        }
    }

    /// The stream's events and bytes now.
    pub async fn size(&self) -> Result<(u64, u64), JetStreamError> {
        let (_, state) = self.stream_state().await?;
        Ok((state.messages, state.bytes))
    }

    /// The event stream and its state now.
    async fn stream_state(&self) -> Result<(stream::Stream, stream::State), JetStreamError> {
        let mut stream = self
            .0
            .js
            .get_stream(&self.0.stream)
            .await
            .map_err(nats("opening the event stream"))?;
        let state = stream
            .info()
            .await
            .map_err(nats("reading the event stream"))?
            .state
            .clone();
        Ok((stream, state))
    }

    /// The event name of a message on the stream's `subject` (empty if it is not one of ours).
    fn event_name(&self, subject: &str) -> String {
        subject
            .strip_prefix(&self.0.subjects)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or("")
            .to_string()
    }

    /// Events the stream removed since it began (acked by every consumer, under interest
    /// retention, or past its age and byte limits): those before its first sequence, all of
    /// them when it is empty.
    pub async fn trimmed(&self) -> Result<u64, JetStreamError> {
        let (_, state) = self.stream_state().await?;
        Ok(if state.messages == 0 {
            state.last_sequence
        } else {
            state.first_sequence.saturating_sub(1)
        })
    }

    /// The newest events of the stream (up to `limit`), newest first; sequences deleted by
    /// retention are skipped.
    pub async fn recent(&self, limit: usize) -> Result<Vec<StoredEvent>, JetStreamError> {
        let (stream, state) = self.stream_state().await?;
        let (first, last) = (state.first_sequence.max(1), state.last_sequence);
        let mut out = Vec::new();
        let mut sequence = last;
        while out.len() < limit && sequence >= first {
            match stream.raw_message_builder().sequence(sequence).send().await {
                Ok(message) => {
                    let h = |k: &str| {
                        message
                            .headers
                            .get(k)
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default()
                    };
                    out.push(StoredEvent {
                        id: message.sequence,
                        name: self.event_name(message.subject.as_str()),
                        source: h(H_SOURCE),
                        payload: String::from_utf8_lossy(&message.payload).into_owned(),
                        published_at: h(H_PUBLISHED).parse().unwrap_or(0),
                        hops: h(H_HOPS).parse().unwrap_or(0),
                    });
                }
                Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {}
                Err(e) => return Err(nats("reading the event stream")(e)),
            }
            sequence -= 1;
        }
        Ok(out)
    }

    /// The dead-lettered events of `subscriber` with why each failed, at most `limit`.
    pub async fn dead_letter_events(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(StoredEvent, String)>, JetStreamError> {
        Ok(self
            .walk_dead(subscriber, limit)
            .await?
            .into_iter()
            .map(|(_, event, error)| (event, error))
            .collect())
    }

    /// Deletes `subscriber`'s dead letter of event `id`; whether there was one.
    pub async fn remove_dead_letter(
        &self,
        subscriber: &str,
        id: u64,
    ) -> Result<bool, JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.dead_stream)
            .await
            .map_err(nats("opening the dead-letter stream"))?;
        let mut removed = false;
        for (sequence, event, _) in self.walk_dead(subscriber, MAX_DEAD_LETTERS).await? {
            if event.id == id {
                stream
                    .delete_message(sequence)
                    .await
                    .map_err(nats("removing a dead letter"))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    /// The dead-lettered events of `subscriber` themselves, at most `limit`.
    pub async fn dead_events(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, JetStreamError> {
        Ok(self
            .walk_dead(subscriber, limit)
            .await?
            .into_iter()
            .map(|(_, event, _)| event)
            .collect())
    }

    /// Deletes `subscriber`'s dead letters of events up to and including `up_to`; returns how
    /// many.
    pub async fn purge_dead_letters(
        &self,
        subscriber: &str,
        up_to: u64,
    ) -> Result<u64, JetStreamError> {
        let stream = self
            .0
            .js
            .get_stream(&self.0.dead_stream)
            .await
            .map_err(nats("opening the dead-letter stream"))?;
        let mut purged = 0;
        for (sequence, event, _) in self.walk_dead(subscriber, MAX_DEAD_LETTERS).await? {
            if event.id <= up_to {
                stream
                    .delete_message(sequence)
                    .await
                    .map_err(nats("purging dead letters"))?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Refuses later appends; published events are already durable in JetStream.
    pub async fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }

    /// Recounts each shard's retained bytes from the stream's per-subject message counts.
    async fn recount(&self) -> Result<(), JetStreamError> {
        let (stream, state) = self.stream_state().await?;
        let stream_mean = state.bytes.checked_div(state.messages).unwrap_or(0);
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut subjects = stream
            .info_with_subjects(format!("{}.>", self.0.subjects))
            .await
            .map_err(nats("counting the event stream's subjects"))?;
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.map_err(nats("counting the event stream's subjects"))?;
            let rest = subject
                .strip_prefix(&self.0.subjects)
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or("");
            let shard = rest.split('.').next().unwrap_or("");
            *counts.entry(shard.to_string()).or_default() += count as u64;
        }
        let sizes = self
            .0
            .sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let bytes = counts
            .into_iter()
            .map(|(shard, count)| {
                let mean = sizes
                    .get(&shard)
                    .and_then(|(n, b)| b.checked_div(*n))
                    .unwrap_or(stream_mean);
                (shard, count.saturating_mul(mean))
            })
            .collect();
        self.0.retained.replace(bytes);
        Ok(())
    }
}

/// The consumer that holds a subscriber's position while its consumer is re-made. Shard names
/// are lowercase, so no subscriber's consumer can be called this.
fn bridge_name(consumer: &str) -> String {
    format!("{consumer}-MOVING")
}

/// Re-makes a subscriber's consumer with a new filter, delivering from `start` (just past what
/// it acked). Filters are not updated in place: servers before 2.10 (Debian's 2.9) go on
/// matching the old filter after an update, so nothing is delivered again, and later ones have
/// had bugs there too. Under interest retention deleting the old consumer would drop what it
/// alone held, so a bridge with the new filter, made first and deleted last, keeps every
/// message the subscriber still wants. A move cut short is finished by the next
/// [`JetStreamBus::consumer`].
async fn move_consumer(
    stream: &jetstream::stream::Stream,
    config: pull::Config,
    start: u64,
) -> Result<jetstream::consumer::Consumer<pull::Config>, JetStreamError> {
    let name = config.durable_name.clone().unwrap_or_default();
    let bridge = bridge_name(&name);
    let at = |durable: &str| pull::Config {
        durable_name: Some(durable.to_string()),
        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start,
        },
        ..config.clone()
    };
    if stream.consumer_info(&bridge).await.is_err() {
        stream
            .create_consumer(at(&bridge))
            .await
            .map_err(nats("making a bridge consumer"))?;
    }
    if stream.consumer_info(&name).await.is_ok() {
        stream
            .delete_consumer(&name)
            .await
            .map_err(nats("deleting the old consumer"))?;
    }
    let consumer = stream
        .create_consumer(at(&name))
        .await
        .map_err(nats("re-making a consumer"))?;
    stream
        .delete_consumer(&bridge)
        .await
        .map_err(nats("deleting a bridge consumer"))?;
    Ok(consumer)
}

async fn retained_loop(bus: Weak<Inner>) {
    let mut warned = false;
    loop {
        tokio::time::sleep(RETAINED_REFRESH).await;
        let Some(inner) = bus.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        match JetStreamBus(inner).recount().await {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "retained event bytes not recounted; retrying");
            }
            Err(_) => {}
        }
    }
}

/// Waits until either receiver says stop.
async fn stopped(stop: &mut watch::Receiver<bool>, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// The retry delay before attempt `attempt + 1`: `retry_base_ms` doubling up to `retry_max_ms`.
fn backoff(config: &EventsConfig, attempt: u32) -> Duration {
    let base = config.retry_base_ms.max(1);
    let max = config.retry_max_ms.max(1);
    let doubled = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    Duration::from_millis(doubled.min(max))
}

/// The delivery loop of one subscriber: survives NATS restarts (retrying every
/// [`RECONNECT_DELAY`], logging once per outage).
pub(super) async fn run(
    bus: JetStreamBus,
    config: Arc<EventsConfig>,
    target: Arc<dyn EventTarget>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = target.name().to_string();
    let mut failing = false;
    let fail = |failing: &mut bool, e: &dyn std::fmt::Display| {
        if !*failing {
            *failing = true;
            tracing::error!(shard = %name, error = %e, "event delivery from NATS interrupted; retrying");
        }
    };
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            return;
        }
        let messages = match bus.consumer(&*target).await {
            Ok(consumer) => consumer.messages().await.map_err(nats("pulling events")),
            Err(e) => Err(e),
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                fail(&mut failing, &e);
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    _ = stopped(&mut stop, &mut shutdown) => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = stopped(&mut stop, &mut shutdown) => {
                    release(&mut messages).await;
                    return;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    fail(&mut failing, &e);
                    break;
                }
                None => break,
            };
            failing = false;
            handle(&bus, &config, &*target, message).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stopped(&mut stop, &mut shutdown) => return,
        }
    }
}

/// How long a stopping loop waits for a message the server already sent it.
const RELEASE_WAIT: Duration = Duration::from_millis(100);

/// Gives back a message delivered to a loop that is stopping, so the next loop gets it at once
/// instead of after `ack_wait` (one message at most is outstanding: `max_ack_pending = 1`).
async fn release(messages: &mut pull::Stream) {
    if let Ok(Some(Ok(message))) = tokio::time::timeout(RELEASE_WAIT, messages.next()).await {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// Delivers one message and settles it: ack, nak with back-off, or dead letter then ack.
async fn handle(
    bus: &JetStreamBus,
    config: &EventsConfig,
    target: &dyn EventTarget,
    message: jetstream::Message,
) {
    let Ok(info) = message.info() else {
        // Not a JetStream delivery: nothing to settle.
        return;
    };
    let (id, attempt) = (info.stream_sequence, info.delivered.max(1));
    let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    let name = bus.event_name(message.subject.as_str());
    let header = |k: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(k))
            .map(|v| v.as_str().to_string())
    };
    let payload = String::from_utf8(message.payload.to_vec());
    // Not published by a frame (a payload that is not text, a bad name): settled at once.
    let (true, Ok(payload)) = (target.wants(&name), payload) else {
        if let Err(e) = message.ack().await {
            tracing::warn!(shard = target.name(), error = %e, "an event not for this shard was not acked");
        }
        return;
    };
    let event = StoredEvent {
        id,
        name,
        source: header(H_SOURCE).unwrap_or_default(),
        payload,
        published_at: header(H_PUBLISHED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        hops: header(H_HOPS).and_then(|v| v.parse().ok()).unwrap_or(0),
    };
    // While the handler runs, the frame tells the server it is still working, so `ack_wait`
    // can stay short: an event in flight on a frame that died is redelivered after it.
    let progress_every = (bus.0.ack_wait / 3).max(Duration::from_millis(100));
    let delivery = target.deliver(event.clone());
    tokio::pin!(delivery);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + progress_every, progress_every);
    let delivered = loop {
        tokio::select! {
            delivered = &mut delivery => break delivered,
            _ = progress.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(shard = target.name(), id, error = %e, "progress not sent");
                }
            }
        }
    };
    let error = match delivered {
        Ok(()) => {
            target.settled(Delivery::Delivered);
            if let Err(e) = message.double_ack().await {
                tracing::warn!(shard = target.name(), id, error = %e, "ack not confirmed; the event may be delivered again");
            }
            return;
        }
        Err(error) => error,
    };
    let error = truncate_error(&error);
    tracing::warn!(shard = target.name(), event = %event.name, id, attempt, %error, "event delivery failed");
    let max_attempts = config.max_attempts.max(1);
    if attempt < max_attempts {
        target.settled(Delivery::Retried);
        let delay = backoff(config, attempt);
        if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(shard = target.name(), id, error = %e, "nak not sent; the event is redelivered after ack_wait");
        }
        return;
    }
    tracing::error!(shard = target.name(), event = %event.name, id, "giving up on the event after {max_attempts} attempts");
    if let Err(e) = bus.dead_letter(target.name(), &event, attempt, error).await {
        // Not acked: it is redelivered (after ack_wait) rather than lost.
        tracing::error!(error = %e, "dead letter not recorded; the event will be delivered again");
        return;
    }
    target.settled(Delivery::DeadLettered);
    if let Err(e) = message.double_ack().await {
        tracing::warn!(shard = target.name(), id, error = %e, "ack after the dead letter not confirmed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::events::Dispatcher;
    use futures::future::BoxFuture;
    use std::sync::atomic::AtomicU32;
    use test_shards::engines::Nats;

    /// A subscriber that records what it is delivered and fails as its `fails` says.
    struct Recording {
        name: &'static str,
        patterns: Vec<String>,
        fails: fn(&StoredEvent, u32) -> bool,
        calls: AtomicU32,
        got: Mutex<Vec<(u64, String)>>,
    }

    impl Recording {
        fn new(
            name: &'static str,
            patterns: &[&str],
            fails: fn(&StoredEvent, u32) -> bool,
        ) -> Arc<Self> {
            Arc::new(Self {
                name,
                patterns: patterns.iter().map(|p| p.to_string()).collect(),
                fails,
                calls: AtomicU32::new(0),
                got: Mutex::default(),
            })
        }

        fn names(&self) -> Vec<String> {
            self.got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, n)| n.clone())
                .collect()
        }
    }

    impl EventTarget for Recording {
        fn name(&self) -> &str {
            self.name
        }
        fn wants(&self, event_name: &str) -> bool {
            self.patterns
                .iter()
                .any(|p| crate::services::events::names::pattern_matches(p, event_name))
        }
        fn patterns(&self) -> Vec<String> {
            self.patterns.clone()
        }
        fn deliver(&self, event: StoredEvent) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst);
                if (self.fails)(&event, call) {
                    return Err("not now".into());
                }
                self.got.lock().unwrap().push((event.id, event.name));
                Ok(())
            })
        }
    }

    fn never(_: &StoredEvent, _: u32) -> bool {
        false
    }

    async fn open(nats: &Nats, config: &EventsConfig) -> JetStreamBus {
        let nats_config = NatsConfig {
            url: Some(nats.url()),
            prefix: "test".into(),
            ..Default::default()
        };
        let client = crate::services::nats::connect(&nats_config).await.unwrap();
        // Short, as in the frame: a message the server handed to a stopped consumer's pull
        // request (NATS 2.9 cannot tell it is gone) comes back after this.
        JetStreamBus::open(client, &nats_config, config, Duration::from_secs(2))
            .await
            .unwrap()
    }

    fn pending(names: &[&str]) -> Vec<Pending> {
        names
            .iter()
            .map(|n| Pending {
                name: n.to_string(),
                payload: format!("{{\"n\":\"{n}\"}}"),
                hops: 1,
            })
            .collect()
    }

    async fn until_async(mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..1000 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out");
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out");
    }

    /// Starts delivery and waits until the consumer exists (a new one starts at the head).
    async fn start(
        bus: &JetStreamBus,
        config: &EventsConfig,
        target: Arc<Recording>,
    ) -> Dispatcher {
        let dispatcher = Dispatcher::new(bus.clone(), Arc::new(config.clone()));
        dispatcher.start(target.clone()).await;
        let stream = bus.0.js.get_stream(&bus.0.stream).await.unwrap();
        let name = bus.consumer_name(target.name);
        for _ in 0..500 {
            if stream.consumer_info(&name).await.is_ok() {
                return dispatcher;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no consumer");
    }

    async fn messages(bus: &JetStreamBus) -> u64 {
        let mut stream = bus.0.js.get_stream(&bus.0.stream).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    #[test]
    fn patterns_become_subjects() {
        assert_eq!(
            pattern_subject("p.events", "documents.*"),
            "p.events.documents.>"
        );
        assert_eq!(pattern_subject("p.events", "*"), "p.events.>");
        assert_eq!(pattern_subject("p.events", "a.*.c"), "p.events.a.*.c");
        assert_eq!(pattern_subject("p.events", "a.b.*"), "p.events.a.b.*");
        assert_eq!(pattern_subject("p.events", "a.b.c"), "p.events.a.b.c");
    }

    #[tokio::test]
    async fn delivers_matching_events_in_order_and_acked_ones_go() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let target = Recording::new("reader", &["a.*"], never);
        let dispatcher = start(&bus, &config, target.clone()).await;
        bus.append(
            "a",
            &pending(&["a.x.one", "b.x.skip", "a.x.two", "a.y.three"]),
        )
        .await
        .unwrap();
        until(|| target.got.lock().unwrap().len() == 3).await;
        assert_eq!(target.names(), ["a.x.one", "a.x.two", "a.y.three"]);
        let ids: Vec<u64> = target
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        // The stream sequence; `b.x.skip` had no interested consumer.
        assert_eq!(ids, [1, 3, 4]);
        // Interest retention: what every consumer acked is gone.
        for _ in 0..200 {
            if messages(&bus).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(messages(&bus).await, 0);
        dispatcher.shutdown().await;
    }

    #[tokio::test]
    async fn several_patterns_and_a_consumer_restart_lose_nothing() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let first = Recording::new("multi", &["a.x.*", "c.*"], never);
        let dispatcher = start(&bus, &config, first.clone()).await;
        bus.append("a", &pending(&["a.x.one", "b.x.skip"]))
            .await
            .unwrap();
        until(|| first.got.lock().unwrap().len() == 1).await;
        dispatcher.shutdown().await;
        // Published while nobody delivers: kept for the durable consumer.
        bus.append("a", &pending(&["c.y.two", "a.z.skip", "a.x.three"]))
            .await
            .unwrap();
        let second = Recording::new("multi", &["a.x.*", "c.*"], never);
        let dispatcher = start(&bus, &config, second.clone()).await;
        until(|| second.got.lock().unwrap().len() == 2).await;
        assert_eq!(second.names(), ["c.y.two", "a.x.three"]);
        assert_eq!(first.names(), ["a.x.one"]);
        dispatcher.shutdown().await;
        // A removed subscriber's consumer goes, and with it what it held back.
        bus.remove_subscriber("multi").await.unwrap();
        bus.remove_subscriber("multi").await.unwrap();
        assert_eq!(messages(&bus).await, 0);
    }

    #[tokio::test]
    async fn a_move_cut_short_is_finished_without_loss() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let before = Recording::new("halfway", &["a.*"], never);
        start(&bus, &config, before.clone()).await.shutdown().await;
        bus.append("a", &pending(&["a.x.one"])).await.unwrap();
        // A frame died after making the bridge and deleting the old consumer.
        let stream = bus.0.js.get_stream(&bus.0.stream).await.unwrap();
        let name = bus.consumer_name("halfway");
        let old = stream.consumer_info(&name).await.unwrap().config.clone();
        let old = pull::Config {
            filter_subject: old.filter_subject,
            ack_policy: old.ack_policy,
            max_ack_pending: old.max_ack_pending,
            ..Default::default()
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(bridge_name(&name)),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: 1,
                },
                ..old
            })
            .await
            .unwrap();
        stream.delete_consumer(&name).await.unwrap();
        let after = Recording::new("halfway", &["a.*"], never);
        let dispatcher = start(&bus, &config, after.clone()).await;
        until(|| after.got.lock().unwrap().len() == 1).await;
        assert_eq!(after.names(), ["a.x.one"]);
        assert!(stream.consumer_info(&bridge_name(&name)).await.is_err());
        dispatcher.shutdown().await;
    }

    #[tokio::test]
    async fn changed_patterns_re_make_the_consumer_at_its_position() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let before = Recording::new("changing", &["a.*"], never);
        start(&bus, &config, before.clone()).await.shutdown().await;
        bus.append("a", &pending(&["a.x.one", "b.x.two"]))
            .await
            .unwrap();
        // Now it wants `b.*` too: the consumer is re-made past what it acked, so `a.x.one`,
        // published while nobody delivered, still arrives; `b.x.two` interested no consumer
        // when it was published, so interest retention did not keep it.
        let after = Recording::new("changing", &["a.*", "b.*"], never);
        let dispatcher = start(&bus, &config, after.clone()).await;
        until(|| after.got.lock().unwrap().len() == 1).await;
        // No bridge is left behind, and the consumer delivers what is published from now on.
        let stream = bus.0.js.get_stream(&bus.0.stream).await.unwrap();
        let name = bus.consumer_name("changing");
        assert!(stream.consumer_info(&bridge_name(&name)).await.is_err());
        bus.append("a", &pending(&["c.x.skip", "b.x.three", "a.x.four"]))
            .await
            .unwrap();
        until(|| after.got.lock().unwrap().len() == 3).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(after.names(), ["a.x.one", "b.x.three", "a.x.four"]);
        dispatcher.shutdown().await;
        // Narrowed to `b.*`: `a.*` events are no longer delivered (nor kept).
        let narrow = Recording::new("changing", &["b.*"], never);
        let dispatcher = start(&bus, &config, narrow.clone()).await;
        until_async(async || {
            stream.consumer_info(&name).await.is_ok_and(|info| {
                info.config.filter_subject == pattern_subject(&bus.0.subjects, "b.*")
            })
        })
        .await;
        bus.append("a", &pending(&["a.x.five", "b.x.six"]))
            .await
            .unwrap();
        until(|| narrow.got.lock().unwrap().len() == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(narrow.names(), ["b.x.six"]);
        dispatcher.shutdown().await;
        bus.remove_subscriber("changing").await.unwrap();
        assert_eq!(messages(&bus).await, 0);
    }

    #[tokio::test]
    async fn a_failing_handler_is_retried_then_dead_lettered() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig {
            max_attempts: 3,
            retry_base_ms: 1,
            retry_max_ms: 20,
            ..Default::default()
        };
        let bus = open(&nats, &config).await;
        let target = Recording::new("flaky", &["a.*"], |event, _| event.name == "a.x.bad");
        let dispatcher = start(&bus, &config, target.clone()).await;
        bus.append("a", &pending(&["a.x.bad", "a.x.good"]))
            .await
            .unwrap();
        until(|| target.got.lock().unwrap().len() == 1).await;
        assert_eq!(target.names(), ["a.x.good"]);
        assert_eq!(target.calls.load(Ordering::SeqCst), 4);
        let dead = bus.dead_letters("flaky", 100).await.unwrap();
        assert_eq!(dead, [(1, "not now".to_string())]);
        let events = bus.dead_events("flaky", 100).await.unwrap();
        assert_eq!(events[0].name, "a.x.bad");
        assert_eq!(events[0].source, "a");
        assert_eq!(events[0].hops, 1);
        assert_eq!(events[0].payload, "{\"n\":\"a.x.bad\"}");
        assert!(bus.dead_letters("other", 100).await.unwrap().is_empty());
        assert_eq!(bus.purge_dead_letters("flaky", 1).await.unwrap(), 1);
        assert!(bus.dead_letters("flaky", 100).await.unwrap().is_empty());
        dispatcher.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nats_restart_loses_nothing_acked_and_delivery_resumes() {
        let Some(mut nats) = Nats::start() else {
            return;
        };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let target = Recording::new("steady", &["a.*"], never);
        let dispatcher = start(&bus, &config, target.clone()).await;
        bus.append("a", &pending(&["a.x.one"])).await.unwrap();
        until(|| target.got.lock().unwrap().len() == 1).await;
        tokio::task::block_in_place(|| nats.restart());
        // Publishing retries until the client has reconnected.
        let mut published = false;
        for _ in 0..100 {
            if bus.append("a", &pending(&["a.x.two"])).await.is_ok() {
                published = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(published);
        until(|| target.got.lock().unwrap().len() >= 2).await;
        assert_eq!(target.names(), ["a.x.one", "a.x.two"]);
        dispatcher.shutdown().await;
    }

    #[tokio::test]
    async fn duplicates_of_one_publication_are_dropped() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig::default();
        let bus = open(&nats, &config).await;
        let target = Recording::new("dedup", &["a.*"], never);
        let dispatcher = start(&bus, &config, target.clone()).await;
        // A client retry resends the same Nats-Msg-Id: JetStream keeps one.
        for _ in 0..2 {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", "same-id");
            headers.insert(H_SOURCE, "a");
            bus.0
                .js
                .publish_with_headers("test.events.a.x.once", headers, "{}".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        bus.append("a", &pending(&["a.x.after"])).await.unwrap();
        until(|| target.got.lock().unwrap().len() == 2).await;
        assert_eq!(target.names(), ["a.x.once", "a.x.after"]);
        dispatcher.shutdown().await;
    }

    #[tokio::test]
    async fn a_full_stream_refuses_publications_and_shards_are_counted() {
        let Some(nats) = Nats::start() else { return };
        let config = EventsConfig {
            stream_max_bytes: 4096,
            ..Default::default()
        };
        let bus = open(&nats, &config).await;
        // A subscriber that never acks in time: everything stays.
        let target = Recording::new("stuck", &["a.*"], never);
        start(&bus, &config, target.clone()).await.shutdown().await;
        let mut refused = None;
        for i in 0..100 {
            let event = Pending {
                name: "a.x.big".into(),
                payload: "x".repeat(500),
                hops: 0,
            };
            if let Err(e) = bus.append("a", &[event]).await {
                refused = Some((i, e));
                break;
            }
        }
        let (i, error) = refused.expect("a full stream refuses");
        assert!(matches!(error, JetStreamError::Full { .. }), "{error}");
        assert!(i < 10, "{i}");
        // Retained bytes of `a`, recounted from the stream: its events, by its mean size.
        tokio::time::sleep(RETAINED_REFRESH * 2).await;
        let retained = bus.retained().get("a");
        assert_eq!(retained, i as u64 * (7 + 500), "{retained}");
        assert_eq!(bus.retained().get("b"), 0);
    }
}
