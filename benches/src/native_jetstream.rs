//! The native baseline of the events scenario on JetStream: an axum route that publishes like the
//! `publisher` fixture (each event with its PubAck awaited before the answer) and one durable
//! pull consumer per subscriber (explicit ack, `max_ack_pending` 1: in order, one unacked event
//! at a time, as the frame delivers), whose handler records like the `subscriber` fixture (the
//! receive time first, then one INSERT into a SQLite file with the frame's shard settings) and
//! then acks. What differs from the frame is the part a shard adds: a Wasm instance per request
//! and per delivery, and the database calls crossing the sandbox.
//!
//! Routes mirror the fixtures' (see [`crate::native_events`]); the bench reads the stream's head
//! from the NATS server itself, as it does for the frame.

use crate::native::{NATIVE_STREAM, NativeServer, native_stream};
use crate::native_events::{
    PublishQuery, Recorders, now_unix_micros, record, tick_payload, too_many,
};
use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use axum::extract::{FromRef, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The subject the native publisher publishes on (in [`NATIVE_STREAM`]).
const SUBJECT: &str = "native.publisher.tick.sent";

#[derive(Clone)]
struct Pipeline {
    jetstream: jetstream::Context,
    recorders: Recorders,
}

impl FromRef<Pipeline> for Recorders {
    fn from_ref(pipeline: &Pipeline) -> Self {
        pipeline.recorders.clone()
    }
}

/// Starts the pipeline on the NATS server at `nats_url` with `subscribers` subscribers
/// (`subscriber0`, ...), their databases in `dir`.
pub fn start(dir: &Path, nats_url: &str, subscribers: usize) -> Result<NativeServer> {
    let dir = dir.to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let nats_url = nats_url.to_string();
    NativeServer::start_async(move || async move {
        let jetstream = native_stream(&nats_url).await?;
        let stream = jetstream
            .get_stream(NATIVE_STREAM)
            .await
            .context("opening the native stream")?;
        let recorders = Recorders::open(&dir, subscribers).await?;
        for (name, db) in recorders.iter() {
            let consumer = stream
                .get_or_create_consumer(
                    name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: "native.publisher.>".into(),
                        ack_policy: consumer::AckPolicy::Explicit,
                        max_ack_pending: 1,
                        ..Default::default()
                    },
                )
                .await
                .with_context(|| format!("creating the consumer {name}"))?;
            let mut messages = consumer
                .messages()
                .await
                .with_context(|| format!("pulling for {name}"))?;
            let (name, db) = (name.clone(), db.clone());
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            eprintln!("[bench] native consumer {name}: {e}");
                            continue;
                        }
                    };
                    let delivered_us = now_unix_micros();
                    let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
                        eprintln!("[bench] native consumer {name}: a message without its info");
                        continue;
                    };
                    // Not acked on failure: redelivered, as the frame does for a failed handler.
                    if let Err(e) = record(&db, sequence, &message.payload, delivered_us).await {
                        eprintln!("[bench] native subscriber {name} failed to record: {e}");
                        continue;
                    }
                    if let Err(e) = message.ack().await {
                        eprintln!("[bench] native consumer {name}: ack failed: {e}");
                    }
                }
            });
        }
        let pipeline = Pipeline {
            jetstream,
            recorders,
        };
        Ok(Recorders::routes()
            .route("/api/publisher/publish", post(publish))
            .with_state(pipeline))
    })
}

/// Unique `Nats-Msg-Id`s within the process (the frame uses its event ids).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

async fn publish(State(p): State<Pipeline>, Query(query): Query<PublishQuery>) -> Response {
    let Some(count) = query.count() else {
        return too_many();
    };
    // All of the request's publications in flight at once, then every PubAck awaited: the
    // answer says they are stored.
    let mut acks = Vec::new();
    for seq in 0..count {
        let mut headers = async_nats::HeaderMap::new();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        headers.insert("Nats-Msg-Id", format!("native-{id}").as_str());
        match p
            .jetstream
            .publish_with_headers(SUBJECT, headers, tick_payload(seq).into())
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(e) => return failed(e),
        }
    }
    for ack in acks {
        if let Err(e) = ack.await {
            return failed(e);
        }
    }
    axum::Json(json!({ "published": count })).into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}
