"""pynotes: an arkham shard in Python (componentize-py, world arkham:shard/buffered-shard).

Build, add and call it (from the repository root, after `scripts/setup --test`):

    arkham shard build examples/python-notes
    arkham shard add examples/python-notes --yes
    curl -X POST localhost:8470/api/pynotes/ -d '{"title": "hi", "body": "hello"}'

Every request runs in a fresh instance, so all state lives in the database and storage.
"""

import json
from datetime import datetime, timezone
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.http_handler import Request, Response
from wit_world.exports.event_handler import Event
from wit_world.imports import database, events, logging, storage
from wit_world.imports.database import Value_Integer, Value_Text

SHARD = "pynotes"

# Portable to PostgreSQL: BIGINT for ids and timestamps, `?` placeholders, TEXT timestamps.
SCHEMA_VERSION = 1
SCHEMA = """
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
"""


def ensure_schema() -> None:
    # Cheap once current: the host runs no SQL when the version is already recorded.
    database.ensure_schema(SCHEMA_VERSION, SCHEMA)


def plain(value):
    """A database value as a plain Python value."""
    return getattr(value, "value", None)


def rows(result) -> list:
    return [dict(zip(result.columns, (plain(v) for v in row))) for row in result.rows]


def respond(status: int, body) -> Response:
    return Response(
        status=status,
        headers=[("content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )


def error(status: int, code: str, message: str) -> Response:
    return respond(status, {"error": {"code": code, "message": message}})


def describe(err: Err) -> str:
    """The message of a WIT error variant (its case name and text)."""
    case = err.value
    return f"{type(case).__name__}: {getattr(case, 'value', '')}"


def list_notes() -> Response:
    result = database.query(
        "SELECT id, title, blob_key, created_at FROM notes ORDER BY id", []
    )
    return respond(200, {"notes": rows(result)})


def create_note(body: bytes) -> Response:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return error(400, "invalid_json", "the body is not JSON")
    title = data.get("title") if isinstance(data, dict) else None
    text = data.get("body", "") if isinstance(data, dict) else ""
    if not isinstance(title, str) or not title or not isinstance(text, str):
        return error(400, "invalid_note", "send {\"title\": \"...\", \"body\": \"...\"}")
    # One transaction takes the write lock, so two requests never pick the same id.
    # An exception drops `tx` uncommitted, which rolls it back.
    tx = database.begin()
    picked = tx.query("SELECT coalesce(max(id), 0) + 1 FROM notes", [])
    note_id = plain(picked.rows[0][0])
    # The WASI wall clock: the frame links the WASI basics (and `wasi:sockets`, refusing every
    # call), so the standard library works as it does anywhere.
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    key = f"notes/{note_id}.txt"
    storage.put(key, text.encode(), "text/plain")
    tx.execute(
        "INSERT INTO notes (id, title, blob_key, created_at) VALUES (?, ?, ?, ?)",
        [Value_Integer(note_id), Value_Text(title), Value_Text(key), Value_Text(now)],
    )
    database.Transaction.commit(tx)
    # Held by the frame until this request succeeds, so a failed request announces nothing.
    events.publish(f"{SHARD}.note.created", json.dumps({"id": note_id, "title": title}))
    # stdout goes to the frame's log, tagged with the shard.
    print(f"note {note_id} created")
    return respond(201, {"id": note_id, "title": title, "blob_key": key, "created_at": now})


def get_note(note_id: int) -> Response:
    found = rows(
        database.query(
            "SELECT id, title, blob_key, created_at FROM notes WHERE id = ?",
            [Value_Integer(note_id)],
        )
    )
    if not found:
        return error(404, "not_found", f"no note {note_id}")
    note = found[0]
    blob = storage.get(note["blob_key"])
    note["body"] = blob.data.decode() if blob is not None else None
    return respond(200, note)


def heard() -> Response:
    result = database.query(
        "SELECT event_id, name, source, payload FROM heard ORDER BY event_id", []
    )
    return respond(200, {"events": rows(result)})


class HttpHandler(exports.HttpHandler):
    def handle(self, request: Request) -> Response:
        try:
            ensure_schema()
            path = urlsplit(request.path_with_query).path.rstrip("/") or "/"
            method = request.method
            if path == "/" and method == "GET":
                return list_notes()
            if path == "/" and method == "POST":
                return create_note(request.body)
            if path == "/events" and method == "GET":
                return heard()
            parts = path.strip("/").split("/")
            if len(parts) == 1 and parts[0].isdigit() and method == "GET":
                return get_note(int(parts[0]))
            return error(404, "not_found", f"no route {method} {path}")
        except Err as err:
            logging.log(logging.Level.ERROR, describe(err))
            return error(500, "service_error", describe(err))


class EventHandler(exports.EventHandler):
    def handle(self, event: Event) -> None:
        try:
            ensure_schema()
            # Delivery is at least once: the event id as primary key makes a redelivery a no-op.
            database.execute(
                "INSERT INTO heard (event_id, name, source, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                [
                    Value_Integer(event.id),
                    Value_Text(event.name),
                    Value_Text(event.source),
                    Value_Text(event.payload),
                ],
            )
        except Err as err:
            # Raising Err(str) makes the frame retry later with back-off.
            raise Err(describe(err))


