// {{name}}: an arkham shard in JavaScript.
//
// Every request runs in a fresh instance: keep state in the database (or storage), not in
// globals. The frame serves this under /api/{{name}}/ and hands the handler paths relative to that.

import * as database from "arkham:shard/database@0.2.0";

// `ensureSchema` runs this once per version; append migrations and bump the version.
const SCHEMA_VERSION = 1n;
const SCHEMA = "CREATE TABLE IF NOT EXISTS visits (id BIGINT PRIMARY KEY, count BIGINT NOT NULL);";

const encoder = new TextEncoder();

function respond(status, body) {
  return {
    status,
    headers: [["content-type", encoder.encode("application/json")]],
    body: encoder.encode(JSON.stringify(body)),
  };
}

export const httpHandler = {
  handle(request) {
    const path = request.pathWithQuery.split("?")[0];
    if (request.method !== "GET" || path !== "/") {
      return respond(404, { error: { code: "not_found", message: `no route ${path}` } });
    }
    try {
      database.ensureSchema(SCHEMA_VERSION, SCHEMA);
      // `?` placeholders and this upsert work on SQLite and PostgreSQL alike.
      database.execute(
        "INSERT INTO visits (id, count) VALUES (1, 1) " +
          "ON CONFLICT (id) DO UPDATE SET count = visits.count + 1",
        [],
      );
      const result = database.query("SELECT count FROM visits WHERE id = 1", []);
      // 64-bit integers arrive as BigInt, which JSON cannot hold.
      const visits = Number(result.rows[0][0].val);
      return respond(200, { hello: "{{name}}", visits });
    } catch (err) {
      const message = err && err.payload ? `${err.payload.tag}: ${err.payload.val ?? ""}` : String(err);
      return respond(500, { error: { code: "database", message } });
    }
  },
};

export const eventHandler = {
  // Called only for events matching `subscribes` in shard.toml (none yet).
  handle(_event) {},
};
