"""{{name}}: an arkham shard in Python.

Every request runs in a fresh instance: keep state in the database (or storage), not in globals.
The frame serves this under /api/{{name}}/ and hands the handler paths relative to that.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.event_handler import Event
from wit_world.exports.http_handler import Request, Response
from wit_world.imports import database

# `ensure-schema` runs this once per version; append migrations and bump the version.
SCHEMA_VERSION = 1
SCHEMA = "CREATE TABLE IF NOT EXISTS visits (id BIGINT PRIMARY KEY, count BIGINT NOT NULL);"


def respond(status: int, body) -> Response:
    return Response(
        status=status,
        headers=[("content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )


class HttpHandler(exports.HttpHandler):
    def handle(self, request: Request) -> Response:
        path = request.path_with_query.split("?")[0]
        if request.method != "GET" or path != "/":
            return respond(404, {"error": {"code": "not_found", "message": f"no route {path}"}})
        try:
            database.ensure_schema(SCHEMA_VERSION, SCHEMA)
            # `?` placeholders and this upsert work on SQLite and PostgreSQL alike.
            database.execute(
                "INSERT INTO visits (id, count) VALUES (1, 1) "
                "ON CONFLICT (id) DO UPDATE SET count = visits.count + 1",
                [],
            )
            count = database.query("SELECT count FROM visits WHERE id = 1", []).rows[0][0].value
        except Err as err:
            return respond(500, {"error": {"code": "database", "message": str(err.value)}})
        return respond(200, {"hello": "{{name}}", "visits": count})


class EventHandler(exports.EventHandler):
    # Called only for events matching `subscribes` in shard.toml (none yet).
    def handle(self, event: Event) -> None:
        pass
