// The bridge client for a shard's own page, shown by the arkham dashboard in a sandboxed frame.
//
// The page runs with an opaque origin and may not fetch (its Content Security Policy says
// `connect-src 'none'`); it reaches its shard's API through the dashboard, which keeps every
// call inside the shard's prefix (`/api/{shard}`) and sends no credentials. Load it with
// <script src="/static/arkham-ui.js"></script>; see "Dashboard" in the README.
(function () {
  "use strict";
  const parentWindow = window.parent !== window ? window.parent : null;
  const pending = new Map();
  const routeListeners = [];
  let nextId = 1;
  let currentRoute = null;

  // The route the dashboard opened the page at travels in the fragment, for the first paint.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("route")) currentRoute = hash.get("route");

  function post(message) {
    if (!parentWindow) throw new Error("arkham-ui.js: this page must be opened by the arkham dashboard");
    message.arkham = 1;
    // The dashboard checks that a message comes from this frame's window; the opaque origin
    // of a sandboxed page cannot be named as a target, hence "*" (the parent is the dashboard
    // unless someone frames this page, which `frame-ancestors 'self'` forbids).
    parentWindow.postMessage(message, "*");
  }

  window.addEventListener("message", (event) => {
    if (event.source !== parentWindow) return;
    const m = event.data;
    if (!m || m.arkham !== 1) return;
    if (m.type === "response" && pending.has(m.id)) {
      const { resolve, reject } = pending.get(m.id);
      pending.delete(m.id);
      if (m.status === 0) reject(new Error(m.error || "the request failed"));
      else resolve(answer(m));
    } else if (m.type === "route" && typeof m.route === "string") {
      currentRoute = m.route;
      for (const cb of routeListeners) cb(m.route);
    }
  });

  function answer(m) {
    return {
      status: m.status,
      ok: m.status >= 200 && m.status < 300,
      contentType: m.contentType || "",
      body: m.body,
      json() {
        return typeof m.body === "string" && m.body !== "" ? JSON.parse(m.body) : null;
      },
    };
  }

  function request(method, path, body, binary) {
    let contentType;
    if (body !== undefined && body !== null && typeof body === "object" && !(body instanceof ArrayBuffer)) {
      body = JSON.stringify(body);
      contentType = "application/json";
    } else if (typeof body === "string") {
      contentType = "application/json";
    } else if (body instanceof ArrayBuffer) {
      contentType = "application/octet-stream";
    }
    return new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      post({ type: "fetch", id, method, path, body: body ?? undefined, contentType, binary: !!binary });
    });
  }

  window.arkham = {
    api: (method, path, body) => request(method, path, body, false),
    apiBinary: (method, path, body) => request(method, path, body, true),
    onRoute(cb) {
      routeListeners.push(cb);
      if (currentRoute !== null) cb(currentRoute);
    },
    route: () => currentRoute,
    navigate: (route) => post({ type: "navigate", route }),
    download: (path, filename) => post({ type: "download", path, filename }),
    setTitle: (title) => post({ type: "title", title: String(title) }),
  };

  if (parentWindow) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", () => post({ type: "ready" }));
    } else {
      post({ type: "ready" });
    }
  }
})();
