// The arkham dashboard: navigation from the shards' manifests, shard pages, operator pages.
//
// Rule of this file: whatever a manifest, a shard or the frame's data says is put in the page
// as text (`textContent`, attribute values), never parsed as HTML.
(function () {
  "use strict";

  const CATEGORIES = ["System", "Data", "Search", "Analysis", "Visualize", "Export"];
  const SERVICES = ["database", "events", "storage"];
  const BADGE_EVERY_MS = 3000;
  const SHARDS_EVERY_MS = 5000;
  const SHARD_SANDBOX = "allow-scripts allow-forms allow-downloads allow-popups";
  const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]);

  const state = {
    shards: [], // from GET /api/frame/shards
    shardsJson: "",
    session: { signed_in: false },
    view: null, // { kind, shard?, frame? }
  };

  // ---- DOM helpers -------------------------------------------------------------------------

  /** `h("a", {href: "/x", class: "y"}, "text", child)`: an element; strings become text. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "on") {
        for (const [event, fn] of Object.entries(v)) el.addEventListener(event, fn);
      } else if (k === "dataset") {
        for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function icon(name) {
    const span = h("span", { class: "icon", "aria-hidden": "true", dataset: { icon: name || "" } });
    const url = `url("/static/icons/${encodeURIComponent(name || "puzzle")}.svg")`;
    span.style.setProperty("-webkit-mask-image", url);
    span.style.setProperty("mask-image", url);
    return span;
  }

  function $(selector) {
    return document.querySelector(selector);
  }

  function setPage(title, ...content) {
    $("#page-title").textContent = title;
    document.title = title === "arkham" ? "arkham" : `${title} · arkham`;
    $("#page-actions").replaceChildren();
    $("#content").classList.remove("framed");
    $("#content").replaceChildren(...content.flat().filter(Boolean));
  }

  function fmtBytes(n) {
    if (typeof n !== "number") return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
  }

  function fmtTime(ms) {
    if (typeof ms !== "number" || ms <= 0) return "—";
    return new Date(ms).toLocaleString();
  }

  function fmtInstalled(at) {
    if (typeof at === "number") return fmtTime(at > 1e12 ? at : at * 1000);
    return at ? String(at) : "—";
  }

  function errorBox(message) {
    return h("p", { class: "error", role: "alert" }, message);
  }

  // ---- Data --------------------------------------------------------------------------------

  async function getJson(url) {
    const response = await fetch(url, { credentials: "omit", headers: { accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  /** A call of the admin API with the session cookie (and its CSRF token for changes). */
  async function admin(method, path, body) {
    const headers = { accept: "application/json" };
    if (method !== "GET" && state.session.csrf) headers["x-arkham-csrf"] = state.session.csrf;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`/api/frame/admin${path}`, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try {
      json = await response.json();
    } catch (_) {
      json = null;
    }
    if (response.status === 401) {
      state.session = { signed_in: false };
      renderOperatorNav();
    }
    if (!response.ok) {
      const message = json && json.error ? json.error.message : `the frame answered ${response.status}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return json;
  }

  async function loadShards() {
    const json = await getJson("/api/frame/shards");
    const text = JSON.stringify(json.shards);
    const changed = text !== state.shardsJson;
    state.shards = json.shards;
    state.shardsJson = text;
    return changed;
  }

  async function loadSession() {
    try {
      const response = await fetch("/api/frame/session", { credentials: "same-origin" });
      state.session = response.ok ? await response.json() : { signed_in: false };
    } catch (_) {
      state.session = { signed_in: false };
    }
  }

  // A pending shard serves too: the frame loads it on its first call.
  function serves(s) {
    return s.status === "running" || s.status === "pending";
  }

  function running() {
    return state.shards.filter((s) => serves(s) && s.manifest);
  }

  function nav(shard) {
    return shard.manifest && shard.manifest.navigation;
  }

  /** Whether `path` is `route` or below it. */
  function within(path, route) {
    const r = route.replace(/\/+$/, "");
    const p = path.replace(/\/+$/, "");
    return p === r || p.startsWith(r + "/");
  }

  /** The shard whose route (or a sub-route) is the longest prefix of `path`. */
  function shardFor(path) {
    let best = null;
    let bestLength = -1;
    for (const shard of running()) {
      const n = nav(shard);
      if (!n) continue;
      for (const route of [n.route, ...(n.sub_routes || []).map((s) => s.route)]) {
        if (within(path, route) && route.length > bestLength) {
          best = shard;
          bestLength = route.length;
        }
      }
    }
    return best;
  }

  // ---- Navigation --------------------------------------------------------------------------

  function link(href, attrs, ...children) {
    return h("a", Object.assign({ href, "data-spa": true }, attrs), ...children);
  }

  function badge(endpoint) {
    return endpoint ? h("span", { class: "badge", dataset: { endpoint } }) : null;
  }

  function renderNav() {
    const byCategory = new Map(CATEGORIES.map((c) => [c, []]));
    const others = [];
    for (const shard of state.shards) {
      const n = serves(shard) ? nav(shard) : null;
      if (n && byCategory.has(n.category)) byCategory.get(n.category).push(shard);
      else others.push(shard);
    }
    const sections = [];
    for (const [category, shards] of byCategory) {
      if (shards.length === 0) continue;
      shards.sort((a, b) => nav(a).order - nav(b).order || a.name.localeCompare(b.name));
      sections.push(
        h(
          "section",
          { class: "nav-category", dataset: { category } },
          h("h2", {}, category),
          shards.map((shard) => {
            const n = nav(shard);
            return h(
              "div",
              { class: "nav-shard" },
              link(
                n.route,
                { class: "nav-item", dataset: { shard: shard.name }, title: shard.manifest.description || "" },
                icon(n.icon),
                h("span", { class: "nav-label" }, n.label),
                badge(n.badge_endpoint)
              ),
              (n.sub_routes || []).length
                ? h(
                    "div",
                    { class: "nav-subs" },
                    n.sub_routes.map((sub) =>
                      link(
                        sub.route,
                        { class: "nav-sub", dataset: { shard: shard.name, sub: sub.id } },
                        sub.icon ? icon(sub.icon) : null,
                        h("span", { class: "nav-label" }, sub.label),
                        badge(sub.badge_endpoint)
                      )
                    )
                  )
                : null
            );
          })
        )
      );
    }
    if (others.length) {
      sections.push(
        h(
          "section",
          { class: "nav-category", dataset: { category: "Other" } },
          h("h2", {}, "Other shards"),
          others.map((shard) =>
            link(
              `/shards/${encodeURIComponent(shard.name)}`,
              { class: "nav-item", dataset: { shard: shard.name } },
              icon(shard.status === "failed" ? "TriangleAlert" : "Puzzle"),
              h("span", { class: "nav-label" }, shard.name),
              shard.status === "failed" ? h("span", { class: "pill failed" }, "failed") : null
            )
          )
        )
      );
    }
    if (!sections.length) sections.push(h("p", { class: "muted nav-empty" }, "No shards installed."));
    $("#nav").replaceChildren(...sections);
    refreshBadges();
    markActive();
  }

  function renderOperatorNav() {
    const items = [
      link("/admin", { class: "nav-admin", dataset: { page: "overview" } }, icon("Gauge"), h("span", { class: "nav-label" }, "Frame")),
      link("/admin/shards", { class: "nav-admin", dataset: { page: "shards" } }, icon("Blocks"), h("span", { class: "nav-label" }, "Installed shards")),
      link("/admin/events", { class: "nav-admin", dataset: { page: "events" } }, icon("Activity"), h("span", { class: "nav-label" }, "Events")),
    ];
    const footer = state.session.signed_in
      ? h("button", { id: "signout", type: "button", class: "link", on: { click: signOut } }, "Sign out")
      : link("/admin", { class: "muted signin-link" }, "Operator sign-in");
    $("#nav-operator").replaceChildren(h("h2", {}, "Operator"), ...items, footer);
    markActive();
  }

  function markActive() {
    const path = location.pathname.replace(/\/+$/, "") || "/";
    for (const a of document.querySelectorAll("#sidebar a[href]")) {
      const href = a.getAttribute("href").replace(/\/+$/, "") || "/";
      a.classList.toggle("active", href === path);
      a.classList.toggle("current", href !== "/" && within(path, href));
    }
  }

  let badgeTimer = null;
  async function refreshBadges() {
    const badges = document.querySelectorAll(".badge[data-endpoint]");
    await Promise.all(
      Array.from(badges, async (b) => {
        try {
          const json = await getJson(b.dataset.endpoint);
          const count = json && json.count;
          b.textContent = Number.isFinite(count) ? String(count) : "";
          b.classList.toggle("empty", !Number.isFinite(count));
        } catch (_) {
          b.textContent = "";
          b.classList.add("empty");
        }
      })
    );
  }

  // ---- Routing -----------------------------------------------------------------------------

  function go(path, replace) {
    if (path === location.pathname + location.search) return route();
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    return route();
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest && event.target.closest("a[data-spa]");
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    go(a.getAttribute("href"));
  });
  window.addEventListener("popstate", () => route());

  async function route() {
    const path = location.pathname;
    markActive();
    if (path === "/" || path === "") return home();
    if (within(path, "/admin")) return operator(path);
    const m = path.match(/^\/shards\/([^/]+)\/?$/);
    if (m) {
      const shard = state.shards.find((s) => s.name === decodeURIComponent(m[1]));
      return shard ? genericPage(shard) : notFound();
    }
    const shard = shardFor(path);
    if (!shard) return notFound();
    if (nav(shard).ui) return shardFrame(shard, path + location.search);
    return genericPage(shard);
  }

  function notFound() {
    state.view = { kind: "not-found" };
    setPage(
      "Not found",
      h(
        "div",
        { id: "not-found" },
        h("p", {}, `Nothing is at ${location.pathname}. A shard may have been removed, or the link is wrong.`),
        h("p", {}, link("/", {}, "Back to the dashboard"))
      )
    );
  }

  function home() {
    state.view = { kind: "home" };
    const cards = [];
    for (const shard of state.shards) {
      const n = serves(shard) ? nav(shard) : null;
      cards.push(
        h(
          "article",
          { class: "card", dataset: { shard: shard.name } },
          h(
            "h3",
            {},
            icon(n ? n.icon : "Puzzle"),
            link(n ? n.route : `/shards/${encodeURIComponent(shard.name)}`, {}, n ? n.label : shard.name)
          ),
          h("p", { class: "muted" }, shard.manifest ? shard.manifest.description : shard.error || ""),
          h(
            "p",
            { class: "meta" },
            h("span", { class: `pill ${shard.status}` }, shard.status),
            ` ${shard.name} ${shard.version}`,
            n ? ` · ${n.category}` : ""
          )
        )
      );
    }
    setPage(
      "arkham",
      h("p", { class: "lead" }, "The shards installed in this frame. Each one's API is under /api/{name}/."),
      cards.length
        ? h("div", { class: "cards" }, cards)
        : h("p", { class: "muted" }, "No shards installed. Add one with `arkham shard add packets@0.1`.")
    );
  }

  // ---- A shard's own page ------------------------------------------------------------------

  function shardFrame(shard, fullRoute) {
    const n = nav(shard);
    const view = state.view;
    if (view && view.kind === "frame" && view.shard === shard.name && view.frame.isConnected) {
      view.route = fullRoute;
      view.frame.contentWindow.postMessage({ arkham: 1, type: "route", route: fullRoute }, "*");
      return;
    }
    const src = `/api/${encodeURIComponent(shard.name)}${n.ui}#route=${encodeURIComponent(fullRoute)}`;
    const frame = h("iframe", {
      id: "shard-frame",
      sandbox: SHARD_SANDBOX,
      src,
      title: n.label,
      referrerpolicy: "no-referrer",
      dataset: { shard: shard.name },
    });
    state.view = { kind: "frame", shard: shard.name, frame, route: fullRoute };
    setPage(n.label, frame);
    $("#content").classList.add("framed");
  }

  /** Whether `path` (relative to a shard's prefix) stays inside `/api/{name}`; the URL. */
  function shardUrl(name, path) {
    if (typeof path !== "string" || !path.startsWith("/") || path.includes("\\")) return null;
    const prefix = `/api/${name}`;
    let url;
    try {
      url = new URL(prefix + path, location.origin);
    } catch (_) {
      return null;
    }
    if (url.origin !== location.origin) return null;
    if (url.pathname !== prefix && !url.pathname.startsWith(prefix + "/")) return null;
    return url;
  }

  window.addEventListener("message", async (event) => {
    const view = state.view;
    if (!view || view.kind !== "frame" || !view.frame.isConnected) return;
    const source = view.frame.contentWindow;
    if (event.source !== source) return;
    const m = event.data;
    if (!m || typeof m !== "object" || m.arkham !== 1) return;
    const shard = state.shards.find((s) => s.name === view.shard);
    if (!shard || !nav(shard)) return;
    const reply = (message) => source.postMessage(Object.assign({ arkham: 1 }, message), "*");
    switch (m.type) {
      case "ready":
        reply({ type: "route", route: view.route });
        break;
      case "navigate": {
        const target = typeof m.route === "string" ? m.route : "";
        const pathOnly = target.split(/[?#]/)[0];
        if (!target.startsWith("/") || !within(pathOnly, nav(shard).route) || target.length > 2048) return;
        if (target !== location.pathname + location.search) history.pushState(null, "", target);
        view.route = target;
        markActive();
        reply({ type: "route", route: target });
        break;
      }
      case "title":
        if (typeof m.title === "string") $("#page-title").textContent = m.title.slice(0, 200);
        break;
      case "download": {
        const url = shardUrl(shard.name, m.path);
        if (!url) return;
        const a = h("a", { href: url.pathname + url.search, download: typeof m.filename === "string" ? m.filename : "" });
        document.body.append(a);
        a.click();
        a.remove();
        break;
      }
      case "fetch": {
        const id = m.id;
        const method = String(m.method || "GET").toUpperCase();
        const url = shardUrl(shard.name, m.path);
        if (!url || !METHODS.has(method)) {
          reply({ type: "response", id, status: 0, error: "refused: the path must stay under the shard's own API" });
          return;
        }
        const headers = { accept: "application/json, */*" };
        if (typeof m.contentType === "string" && m.contentType.length < 200) headers["content-type"] = m.contentType;
        const body = typeof m.body === "string" || m.body instanceof ArrayBuffer ? m.body : undefined;
        try {
          const response = await fetch(url.pathname + url.search, {
            method,
            headers,
            body: method === "GET" || method === "HEAD" ? undefined : body,
            credentials: "omit",
            redirect: "manual",
            cache: "no-store",
          });
          if (response.type === "opaqueredirect") {
            reply({ type: "response", id, status: 0, error: "the shard answered with a redirect, which the bridge does not follow" });
            return;
          }
          const contentType = response.headers.get("content-type") || "";
          const data = m.binary ? await response.arrayBuffer() : await response.text();
          if (data instanceof ArrayBuffer) {
            source.postMessage({ arkham: 1, type: "response", id, status: response.status, contentType, body: data }, "*", [data]);
          } else {
            reply({ type: "response", id, status: response.status, contentType, body: data });
          }
        } catch (e) {
          reply({ type: "response", id, status: 0, error: String(e && e.message ? e.message : e) });
        }
        if (method !== "GET" && method !== "HEAD") refreshBadges();
        break;
      }
    }
  });

  // ---- The generic page of a shard without its own -----------------------------------------

  function field(name, label, ...value) {
    return h("div", { class: "field", dataset: { field: name } }, h("dt", {}, label), h("dd", {}, ...value));
  }

  async function genericPage(shard) {
    state.view = { kind: "generic", shard: shard.name };
    const m = shard.manifest || {};
    const n = nav(shard);
    const services = m.services ? [...(m.services.required || []), ...(m.services.optional || [])] : [];
    const body = h(
      "div",
      { id: "shard-generic", dataset: { shard: shard.name } },
      h(
        "dl",
        { class: "fields" },
        field("description", "Description", m.description || "—"),
        field("version", "Version", shard.version),
        field("status", "Status", h("span", { class: `pill ${shard.status}` }, shard.status), shard.error ? ` ${shard.error}` : ""),
        field("api_prefix", "API", h("code", {}, `${shard.api_prefix}/`)),
        field("services", "Services", services.length ? services.join(", ") : "none"),
        field("capabilities", "Capabilities", (m.capabilities || []).join(", ") || "—"),
        field("digest", "Digest", h("code", {}, shard.digest)),
        field("source", "Installed from", shard.source || "—")
      ),
      h("h2", {}, "Grants"),
      h("div", { id: "generic-grants" }, h("p", { class: "muted" }, "…")),
      h("h2", {}, "Recent events"),
      h("div", { id: "generic-events" }, h("p", { class: "muted" }, "…"))
    );
    setPage(n ? n.label : shard.name, body);
    if (!state.session.signed_in) {
      const note = () => h("p", { class: "muted" }, "Grants and events are for operators: ", link("/admin", {}, "sign in"), ".");
      $("#generic-grants").replaceChildren(note());
      $("#generic-events").replaceChildren(note());
      return;
    }
    try {
      const [overview, recent] = await Promise.all([
        admin("GET", "/shards"),
        admin("GET", `/events/recent?limit=20&shard=${encodeURIComponent(shard.name)}`),
      ]);
      if (!$("#shard-generic") || $("#shard-generic").dataset.shard !== shard.name) return;
      const entry = overview.shards.find((s) => s.name === shard.name);
      $("#generic-grants").replaceChildren(entry && entry.granted ? grantSummary(entry.granted) : h("p", { class: "muted" }, "Not running."));
      $("#generic-events").replaceChildren(eventsTable(recent.events, "generic-recent"));
    } catch (e) {
      $("#generic-grants").replaceChildren(errorBox(e.message));
    }
  }

  function grantSummary(granted) {
    return h(
      "dl",
      { class: "fields" },
      field("granted-services", "Services", (granted.services || []).join(", ") || "none"),
      field("granted-publishes", "Publishes", (granted.publishes || []).join(", ") || "none"),
      field("granted-subscribes", "Receives", (granted.subscribes || []).join(", ") || "none")
    );
  }

  function eventsTable(events, id) {
    if (!events.length) return h("p", { class: "muted", id }, "No events.");
    return h(
      "table",
      { id, class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Published"), h("th", {}, "Event"), h("th", {}, "Source"), h("th", {}, "Payload"))),
      h(
        "tbody",
        {},
        events.map((e) =>
          h(
            "tr",
            { class: "event-row", dataset: { id: e.id } },
            h("td", {}, String(e.id)),
            h("td", {}, fmtTime(e.published_at)),
            h("td", {}, h("code", {}, e.name)),
            h("td", {}, e.source),
            h("td", { class: "payload", title: `${e.payload_bytes} bytes` }, e.payload.length > 160 ? e.payload.slice(0, 160) + "…" : e.payload)
          )
        )
      )
    );
  }

  // ---- Operator pages ----------------------------------------------------------------------

  async function operator(path) {
    state.view = { kind: "admin", path };
    if (!state.session.signed_in) return signInPage();
    const page = path.replace(/\/+$/, "");
    try {
      if (page === "/admin") return await adminOverview();
      if (page === "/admin/shards") return await adminShards();
      if (page === "/admin/events") return await adminEvents();
      return notFound();
    } catch (e) {
      if (e.status === 401) return signInPage();
      setPage("Operator", errorBox(e.message));
    }
  }

  function signInPage() {
    const error = h("p", { id: "signin-error", class: "error", role: "alert", hidden: true });
    const input = h("input", { id: "signin-token", type: "password", name: "token", autocomplete: "current-password", required: true, placeholder: "admin token" });
    const form = h(
      "form",
      {
        id: "signin",
        class: "panel",
        on: {
          submit: async (event) => {
            event.preventDefault();
            error.hidden = true;
            const response = await fetch("/api/frame/session", {
              method: "POST",
              credentials: "same-origin",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ token: input.value.trim() }),
            });
            const json = await response.json().catch(() => null);
            if (!response.ok) {
              error.textContent = json && json.error ? json.error.message : `sign-in failed (${response.status})`;
              error.hidden = false;
              return;
            }
            input.value = "";
            state.session = json;
            renderOperatorNav();
            route();
          },
        },
      },
      h("label", { for: "signin-token" }, "Admin token"),
      input,
      h("p", { class: "muted" }, "The token is in the file admin-token in the frame's data dir (", h("code", {}, "cat DATA_DIR/admin-token"), "). Signing in gives this browser a session cookie for 12 hours; the token is not stored."),
      h("button", { id: "signin-submit", type: "submit", class: "primary" }, "Sign in"),
      error
    );
    setPage("Operator sign-in", form);
    input.focus();
  }

  async function signOut() {
    try {
      await fetch("/api/frame/session", {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "x-arkham-csrf": state.session.csrf || "" },
      });
    } finally {
      state.session = { signed_in: false };
      renderOperatorNav();
      route();
    }
  }

  async function adminOverview() {
    const [health, overview, status, config] = await Promise.all([
      getJson("/api/frame/health"),
      admin("GET", "/shards"),
      admin("GET", "/events/status"),
      admin("GET", "/config"),
    ]);
    const backend = (section) => (config[section] && config[section].backend) || "—";
    const failed = overview.shards.filter((s) => s.status === "failed");
    setPage(
      "Frame",
      h(
        "div",
        { id: "frame-health", class: "cards" },
        h("article", { class: "card" }, h("h3", {}, "Health"), h("p", {}, h("span", { class: `pill ${health.status}`, id: "health-status" }, health.status)), h("p", { class: "muted" }, `frame ${health.version}`)),
        h("article", { class: "card" }, h("h3", {}, "Shards"), h("p", { class: "big" }, String(health.shards.installed)), h("p", { class: "muted" }, `${health.shards.failed} failed`)),
        h("article", { class: "card" }, h("h3", {}, "Event log"), h("p", { class: "big" }, String(status.log.events)), h("p", { class: "muted" }, `${status.log.backend} · ${fmtBytes(status.log.bytes)}`)),
        h(
          "article",
          { class: "card", id: "backends" },
          h("h3", {}, "Services"),
          h("p", {}, `database: ${backend("database")}`),
          h("p", {}, `events: ${backend("events")}`),
          h("p", {}, `storage: ${backend("storage")}`)
        )
      ),
      failed.length
        ? [h("h2", {}, "Failed shards"), h("ul", { class: "failures" }, failed.map((s) => h("li", {}, h("b", {}, s.name), ` ${s.version}: `, s.error || "")))]
        : null
    );
  }

  /** `name{shard="x",…} value` lines of the Prometheus text, as shard → {metric+labels: value}. */
  async function shardMetrics() {
    const response = await fetch("/api/frame/admin/metrics", { credentials: "same-origin" });
    if (!response.ok) return new Map();
    const byShard = new Map();
    for (const line of (await response.text()).split("\n")) {
      const m = line.match(/^(arkham_shard_[a-z_]+)\{([^}]*)\} (\S+)$/);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      if (!labels.shard) continue;
      const key = labels.class ? `${m[1]}{${labels.class}}` : m[1];
      if (!byShard.has(labels.shard)) byShard.set(labels.shard, {});
      byShard.get(labels.shard)[key] = Number(m[3]);
    }
    return byShard;
  }

  function traffic(m) {
    if (!m) return h("span", { class: "muted" }, "—");
    const n = (k) => m[k] || 0;
    const ok = n("arkham_shard_requests_total{2xx}");
    const client = n("arkham_shard_requests_total{4xx}");
    const server = n("arkham_shard_requests_total{5xx}");
    return h(
      "div",
      { class: "small-text traffic" },
      `${ok} 2xx · ${client} 4xx · ${server} 5xx`,
      h("br"),
      `${n("arkham_shard_traps_total")} traps · ${n("arkham_shard_timeouts_total")} timeouts · ${n("arkham_shard_requests_rate_limited_total")} rate-limited`,
      h("br"),
      `events: ${n("arkham_shard_events_published_total")} published · ${n("arkham_shard_events_delivered_total")} delivered · ${n("arkham_shard_events_behind")} behind`
    );
  }

  async function adminShards() {
    const [overview, metrics] = await Promise.all([admin("GET", "/shards"), shardMetrics().catch(() => new Map())]);
    const rows = overview.shards.map((s) => {
      const granted = new Set(s.granted ? s.granted.services : []);
      const requested = s.requested ? s.requested.services : [];
      const controls = SERVICES.filter((svc) => requested.includes(svc)).map((svc) => {
        const on = granted.has(svc);
        return h(
          "div",
          { class: "grant" },
          h("span", { class: `pill ${on ? "granted" : "revoked"}` }, svc),
          h(
            "button",
            {
              type: "button",
              class: "grant-toggle small",
              dataset: { shard: s.name, service: svc, granted: on },
              on: { click: () => toggleGrant(s, svc, !on) },
            },
            on ? "Revoke" : "Restore"
          )
        );
      });
      const l = s.limits;
      return h(
        "tr",
        { class: "shard-row", dataset: { shard: s.name, status: s.status } },
        h("td", {}, link(`/shards/${encodeURIComponent(s.name)}`, {}, s.name), h("div", { class: "muted" }, s.version)),
        h(
          "td",
          {},
          h("span", { class: `pill ${s.status}` }, s.status),
          s.error ? h("div", { class: "error small-text" }, s.error) : null,
          s.refused ? h("div", { class: "error small-text refused" }, `refused ${s.refused.version}: ${s.refused.error}`) : null,
          s.history && s.history.length
            ? h(
                "button",
                {
                  type: "button",
                  class: "rollback small",
                  dataset: { shard: s.name },
                  on: { click: () => rollback(s.name) },
                },
                s.history[0].version === s.version
                  ? `Roll back to ${s.version} (${s.history[0].digest.replace(/^sha256:/, "").slice(0, 8)})`
                  : `Roll back to ${s.history[0].version}`
              )
            : null
        ),
        h("td", {}, h("code", { title: s.digest }, s.digest.replace(/^sha256:/, "").slice(0, 12)), h("div", { class: "muted small-text" }, s.source || "")),
        h("td", {}, controls.length ? controls : h("span", { class: "muted" }, "no services")),
        h("td", {}, traffic(metrics.get(s.name))),
        h(
          "td",
          { class: "limits small-text" },
          `${fmtBytes(l.memory_bytes)} · ${l.instances} instances · ${l.request_timeout_ms} ms/request`,
          h("br"),
          `${l.requests_per_second ? `${l.requests_per_second} req/s (burst ${l.request_burst})` : "no rate limit"} · body ≤ ${fmtBytes(l.max_request_bytes)}`,
          s.limits_override ? h("div", { class: "muted" }, "overridden in [limits.shards]") : null
        )
      );
    });
    setPage(
      "Installed shards",
      h(
        "table",
        { class: "table", id: "shards-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Shard"), h("th", {}, "Status"), h("th", {}, "Digest"), h("th", {}, "Grants"), h("th", {}, "Since start"), h("th", {}, "Limits in force"))),
        h("tbody", {}, rows)
      ),
      h("p", { id: "admin-error", class: "error", role: "alert", hidden: true })
    );
  }

  function showAdminError(e) {
    const box = $("#admin-error");
    if (box) {
      box.textContent = e.message;
      box.hidden = false;
    }
  }

  async function rollback(name) {
    try {
      await admin("POST", `/shards/${encodeURIComponent(name)}/rollback`);
      await loadShards();
      renderNav();
      await adminShards();
    } catch (e) {
      showAdminError(e);
    }
  }

  async function toggleGrant(shard, service, grant) {
    const current = shard.granted || { services: [], publishes: [], subscribes: [] };
    const services = new Set(current.services);
    if (grant) services.add(service);
    else services.delete(service);
    try {
      await admin("PUT", `/shards/${encodeURIComponent(shard.name)}/grants`, {
        services: [...services],
        publishes: current.publishes || [],
        subscribes: current.subscribes || [],
      });
      await adminShards();
    } catch (e) {
      showAdminError(e);
    }
  }

  async function adminEvents() {
    const [status, recent, dead] = await Promise.all([admin("GET", "/events/status"), admin("GET", "/events/recent?limit=50"), admin("GET", "/events/dead")]);
    const lag = status.subscribers.length
      ? h(
          "table",
          { class: "table", id: "lag" },
          h("thead", {}, h("tr", {}, h("th", {}, "Subscriber"), h("th", {}, "Behind"), h("th", {}, "Oldest undelivered"), h("th", {}, "Dead letters"))),
          h(
            "tbody",
            {},
            status.subscribers.map((s) =>
              h(
                "tr",
                { class: "lag-row", dataset: { shard: s.subscriber } },
                h("td", {}, s.subscriber),
                h("td", {}, String(s.behind)),
                h("td", {}, s.oldest_undelivered_age_ms == null ? "—" : `${Math.round(s.oldest_undelivered_age_ms / 1000)} s ago`),
                h("td", {}, String(s.dead_letters))
              )
            )
          )
        )
      : h("p", { class: "muted", id: "lag" }, "No shard subscribes to events. The log keeps an event until every subscriber has it.");
    const bySubscriber = new Map();
    for (const d of dead.dead) {
      if (!bySubscriber.has(d.subscriber)) bySubscriber.set(d.subscriber, []);
      bySubscriber.get(d.subscriber).push(d);
    }
    const deadTable = dead.dead.length
      ? h(
          "table",
          { class: "table", id: "dead-letters" },
          h("thead", {}, h("tr", {}, h("th", {}, "Subscriber"), h("th", {}, "#"), h("th", {}, "Event"), h("th", {}, "Why"), h("th", {}, ""))),
          h(
            "tbody",
            {},
            dead.dead.map((d) =>
              h(
                "tr",
                { class: "dead-row", dataset: { shard: d.subscriber, id: d.id } },
                h("td", {}, d.subscriber),
                h("td", {}, String(d.id)),
                h("td", {}, h("code", {}, d.name)),
                h("td", { class: "error small-text" }, d.error),
                h(
                  "td",
                  {},
                  h(
                    "button",
                    { type: "button", class: "replay small", dataset: { shard: d.subscriber, id: d.id }, on: { click: () => replay(d.subscriber, d.id) } },
                    "Replay"
                  )
                )
              )
            )
          )
        )
      : h("p", { class: "muted", id: "dead-letters" }, "No dead letters.");
    const retention = status.log.retention || {};
    setPage(
      "Events",
      h(
        "p",
        { class: "lead", id: "log-status" },
        `${status.log.events} events (${fmtBytes(status.log.bytes)}) in the ${status.log.backend} log`,
        retention.max_retained_bytes_per_shard ? ` · keeps ${fmtBytes(retention.max_retained_bytes_per_shard)} per shard` : ""
      ),
      h("h2", {}, "Subscribers"),
      lag,
      h("h2", {}, "Dead letters"),
      h("p", { id: "replay-result", class: "muted", hidden: true }),
      deadTable,
      h("h2", {}, "Recent events"),
      eventsTable(recent.events, "recent-events")
    );
  }

  async function replay(shard, id) {
    try {
      const result = await admin("POST", `/events/dead/${encodeURIComponent(shard)}/replay?id=${encodeURIComponent(id)}`);
      await adminEvents();
      const box = $("#replay-result");
      const r = result.results[0];
      box.textContent = r && r.replayed ? `Event ${id} delivered to ${shard}.` : `Event ${id} failed again: ${r ? r.error : "not attempted"}`;
      box.hidden = false;
    } catch (e) {
      const box = $("#replay-result");
      box.textContent = e.message;
      box.hidden = false;
    }
  }

  // ---- Start -------------------------------------------------------------------------------

  async function start() {
    // Icons written in the page itself get their image here.
    for (const span of document.querySelectorAll(".icon[data-icon]")) span.replaceWith(icon(span.dataset.icon));
    await Promise.all([loadShards().catch(() => false), loadSession()]);
    renderNav();
    renderOperatorNav();
    await route();
    setInterval(refreshBadges, BADGE_EVERY_MS);
    setInterval(async () => {
      try {
        if (await loadShards()) {
          renderNav();
          // A shard installed, removed or swapped: show what is there now, unless a shard's
          // page is open and still served.
          const view = state.view;
          if (!(view && view.kind === "frame" && running().some((s) => s.name === view.shard))) route();
        }
      } catch (_) {
        // The frame is restarting; the next round tries again.
      }
    }, SHARDS_EVERY_MS);
  }

  start();
})();
