// jsnotes: an arkham shard in JavaScript (jco + componentize-js, world arkham:shard/buffered-shard).
//
// Build, add and call it (from the repository root, after `scripts/setup --test`):
//
//     arkham shard build examples/js-notes
//     arkham shard add examples/js-notes --yes
//     curl -X POST localhost:8470/api/jsnotes/ -d '{"title": "hi", "body": "hello"}'
//
// Every request runs in a fresh instance, so all state lives in the database and storage.

import * as database from "arkham:shard/database@0.2.0";
import * as events from "arkham:shard/events@0.2.0";
import * as logging from "arkham:shard/logging@0.2.0";
import * as storage from "arkham:shard/storage@0.2.0";

const SHARD = "jsnotes";

// Portable to PostgreSQL: BIGINT ids, `?` placeholders, timestamps as TEXT.
const SCHEMA_VERSION = 1n;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS notes (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS heard (
    event_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL
);
`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const int = (n) => ({ tag: "integer", val: BigInt(n) });
const text = (s) => ({ tag: "text", val: s });

/** A database value as plain JSON: 64-bit integers become numbers (ids here stay small). */
function plain(value) {
  switch (value.tag) {
    case "null":
      return null;
    case "integer":
      return Number(value.val);
    case "blob":
      return Array.from(value.val);
    default:
      return value.val;
  }
}

function rows(result) {
  return result.rows.map((row) =>
    Object.fromEntries(result.columns.map((c, i) => [c, plain(row[i])])),
  );
}

function respond(status, body) {
  return {
    status,
    headers: [["content-type", encoder.encode("application/json")]],
    body: encoder.encode(JSON.stringify(body)),
  };
}

function error(status, code, message) {
  return respond(status, { error: { code, message } });
}

/** The message of a WIT error variant, thrown by jco's bindings as `ComponentError.payload`. */
function describe(err) {
  const payload = err && err.payload;
  if (payload && payload.tag) {
    return `${payload.tag}: ${payload.val ?? ""}`;
  }
  return String(err);
}

function listNotes() {
  const result = database.query(
    "SELECT id, title, blob_key, created_at FROM notes ORDER BY id",
    [],
  );
  return respond(200, { notes: rows(result) });
}

function createNote(body) {
  let data;
  try {
    data = JSON.parse(body.length ? decoder.decode(body) : "{}");
  } catch {
    return error(400, "invalid_json", "the body is not JSON");
  }
  const title = data && data.title;
  const content = (data && data.body) ?? "";
  if (typeof title !== "string" || !title || typeof content !== "string") {
    return error(400, "invalid_note", 'send {"title": "...", "body": "..."}');
  }
  // One transaction takes the write lock, so two requests never pick the same id. Leaving it
  // uncommitted (an exception) rolls it back when the instance ends.
  const tx = database.begin();
  const picked = tx.query(
    "SELECT coalesce(max(id), 0) + 1, CAST(CURRENT_TIMESTAMP AS TEXT) FROM notes",
    [],
  );
  const [id, now] = picked.rows[0].map(plain);
  const key = `notes/${id}.txt`;
  storage.put(key, encoder.encode(content), "text/plain");
  tx.execute(
    "INSERT INTO notes (id, title, blob_key, created_at) VALUES (?, ?, ?, ?)",
    [int(id), text(title), text(key), text(now)],
  );
  database.Transaction.commit(tx);
  // Held by the frame until this request succeeds, so a failed request announces nothing.
  events.publish(`${SHARD}.note.created`, JSON.stringify({ id, title }));
  return respond(201, { id, title, blob_key: key, created_at: now });
}

function getNote(id) {
  const found = rows(
    database.query(
      "SELECT id, title, blob_key, created_at FROM notes WHERE id = ?",
      [int(id)],
    ),
  );
  if (found.length === 0) {
    return error(404, "not_found", `no note ${id}`);
  }
  const note = found[0];
  const blob = storage.get(note.blob_key);
  note.body = blob ? decoder.decode(blob.data) : null;
  return respond(200, note);
}

function heard() {
  const result = database.query(
    "SELECT event_id, name, source, payload FROM heard ORDER BY event_id",
    [],
  );
  return respond(200, { events: rows(result) });
}

export const httpHandler = {
  handle(request) {
    try {
      database.ensureSchema(SCHEMA_VERSION, SCHEMA);
      const raw = request.pathWithQuery.split("?")[0];
      const path = raw.replace(/\/+$/, "") || "/";
      const method = request.method;
      if (path === "/" && method === "GET") return listNotes();
      if (path === "/" && method === "POST") return createNote(request.body);
      if (path === "/events" && method === "GET") return heard();
      const id = /^\/(\d{1,15})$/.exec(path);
      if (id && method === "GET") return getNote(Number(id[1]));
      return error(404, "not_found", `no route ${method} ${path}`);
    } catch (err) {
      logging.log("error", describe(err));
      return error(500, "service_error", describe(err));
    }
  },
};

export const eventHandler = {
  handle(event) {
    try {
      database.ensureSchema(SCHEMA_VERSION, SCHEMA);
      // Delivery is at least once: the event id as primary key makes a redelivery a no-op.
      database.execute(
        "INSERT INTO heard (event_id, name, source, payload) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (event_id) DO NOTHING",
        [int(event.id), text(event.name), text(event.source), text(event.payload)],
      );
    } catch (err) {
      // Throwing makes the frame retry later with back-off.
      throw describe(err);
    }
  },
};
