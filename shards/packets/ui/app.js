// The packets shard's page. It runs in the frame's sandboxed iframe (opaque origin, no fetch) and
// talks to /api/packets only through the frame's bridge, `window.arkham` (/static/arkham-ui.js).
// Every piece of data is rendered with textContent / createElement, never as HTML.
(function () {
  "use strict";

  var PREFIX = "/api/packets";
  var ROOT = "/packets";
  var TABS = ["all", "draft", "finalized", "shared"];
  var TAB_LABELS = { all: "All packets", draft: "Drafts", finalized: "Finalized", shared: "Shared" };
  var PAGE = 100;

  var bridge = window.arkham;
  var state = {
    route: null, // the route on screen
    view: null, // {kind: "list", status, q} or {kind: "detail", id}
    seq: 0, // bumped per render; answers of an older render are dropped
    listItems: [],
    listTotal: 0,
    packet: null,
    lastShare: null, // {packetId, token}: the link made last, shown until another packet opens
    armedArchive: false,
  };

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function $all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  // el("td", {className: "x", dataset: {id: "1"}, title: "t"}, "text", child, ...)
  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === undefined || value === null) return;
        if (key === "dataset") {
          Object.keys(value).forEach(function (k) {
            node.dataset[k] = String(value[k]);
          });
        } else if (key === "className") {
          node.className = value;
        } else if (key === "text") {
          node.textContent = String(value);
        } else if (key === "onclick") {
          node.addEventListener("click", value);
        } else {
          node.setAttribute(key, String(value));
        }
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  // ---- messages -------------------------------------------------------------------------------

  function showError(error) {
    var box = $("#error");
    box.textContent = error && error.message ? error.message : String(error);
    show(box, true);
    hideNotice();
  }

  function clearError() {
    var box = $("#error");
    box.textContent = "";
    show(box, false);
  }

  var noticeTimer = null;
  function notice(text) {
    var box = $("#notice");
    box.textContent = text;
    show(box, true);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(hideNotice, 4000);
  }

  function hideNotice() {
    show($("#notice"), false);
  }

  // ---- the API, through the bridge ------------------------------------------------------------

  function ApiFailure(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function bodyText(body) {
    if (typeof body === "string") return body;
    if (body instanceof ArrayBuffer) return new TextDecoder().decode(body);
    return body === undefined || body === null ? "" : String(body);
  }

  // Resolves with the parsed JSON of a 2xx answer; rejects with an ApiFailure whose message
  // says what went wrong (the API's own message, with the fields it names).
  function api(method, path, body) {
    if (!bridge) return Promise.reject(new ApiFailure(0, "no_bridge", "the frame's bridge is not loaded"));
    return Promise.resolve(bridge.api(method, path, body)).then(function (answer) {
      var text = bodyText(answer.body);
      var data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch (e) {
        data = null;
      }
      if (!answer.status) {
        throw new ApiFailure(0, "unreachable", method + " " + path + ": " + (answer.error || "the frame could not reach the API"));
      }
      if (answer.status >= 400) {
        var error = data && data.error ? data.error : {};
        var message = error.message || text || "HTTP " + answer.status;
        if (error.fields && typeof error.fields === "object") {
          var parts = Object.keys(error.fields).map(function (field) {
            return field + ": " + error.fields[field];
          });
          if (parts.length) message += " (" + parts.join("; ") + ")";
        }
        throw new ApiFailure(answer.status, error.code || "http_" + answer.status, message);
      }
      return data;
    });
  }

  function enc(segment) {
    return encodeURIComponent(segment);
  }

  // ---- formatting -----------------------------------------------------------------------------

  function when(text) {
    if (!text) return "—";
    var date = new Date(text);
    if (isNaN(date.getTime())) return String(text);
    var pad = function (n) {
      return n < 10 ? "0" + n : String(n);
    };
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes())
    );
  }

  function timeCell(text) {
    return el("td", { className: "time", title: text || undefined }, when(text));
  }

  function bytes(n) {
    if (typeof n !== "number") return "—";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  function pill(status, extraClass) {
    return el("span", { className: "pill status-" + status + (extraClass ? " " + extraClass : "") }, status);
  }

  function slug(text) {
    var s = String(text || "")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40);
    return s || "packet";
  }

  function randomHex(n) {
    var buffer = new Uint8Array(n);
    crypto.getRandomValues(buffer);
    return Array.prototype.map
      .call(buffer, function (b) {
        return (b < 16 ? "0" : "") + b.toString(16);
      })
      .join("");
  }

  function shareUrls(token) {
    var path = PREFIX + "/shared/" + token;
    var full = path;
    try {
      // The document's own URL is readable even with an opaque origin: the link's full form.
      full = new URL(path, window.location.href).href;
    } catch (e) {
      full = path;
    }
    return { path: path, full: full };
  }

  // ---- routes ---------------------------------------------------------------------------------

  function parseRoute(route) {
    var path = String(route || ROOT);
    var search = "";
    var q = path.indexOf("?");
    if (q >= 0) {
      search = path.slice(q + 1);
      path = path.slice(0, q);
    }
    path = path.replace(/\/+$/, "") || ROOT;
    var query = {};
    search.split("&").forEach(function (pair) {
      if (!pair) return;
      var eq = pair.indexOf("=");
      var key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, " "));
      query[key] = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, " "));
    });
    var rest = path.indexOf(ROOT + "/") === 0 ? path.slice(ROOT.length + 1) : "";
    if (!rest || rest === "all") return { kind: "list", status: "all", q: query.q || "" };
    if (TABS.indexOf(rest) >= 0) return { kind: "list", status: rest, q: query.q || "" };
    var id = rest.split("/")[0];
    try {
      id = decodeURIComponent(id);
    } catch (e) {
      // keep it as sent
    }
    return { kind: "detail", id: id };
  }

  function listRoute(status, q) {
    var route = status === "all" ? ROOT : ROOT + "/" + status;
    return q ? route + "?q=" + encodeURIComponent(q) : route;
  }

  function detailRoute(id) {
    return ROOT + "/" + encodeURIComponent(id);
  }

  // The bridge's messages to the frame (navigate, title, download) throw when no dashboard
  // holds the page; that is reported, not fatal.
  function tell(what) {
    if (!bridge) return;
    try {
      what(bridge);
    } catch (error) {
      showError(error);
    }
  }

  // Shows `route` now and tells the frame, which puts it in the address bar (and answers with
  // the same route, which is then already on screen).
  function go(route) {
    render(route, true);
    tell(function (b) {
      b.navigate(route);
    });
  }

  function link(text, route, className) {
    return el("a", {
      className: className,
      href: "#route=" + route,
      onclick: function (event) {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        go(route);
      },
    }, text);
  }

  function render(route, force) {
    if (!force && route === state.route) return;
    var previous = state.view;
    state.route = route;
    state.view = parseRoute(route);
    state.seq += 1;
    clearError();
    show($("#loading"), false);
    if (state.view.kind === "list") {
      show($("#detail-view"), false);
      resetDetail();
      var same = previous && previous.kind === "list" && previous.status === state.view.status && previous.q === state.view.q;
      if (!same) {
        // Another tab or filter: no row of the old one lingers while the new one loads.
        clear($("#packet-list tbody"));
        show($("#packet-list .empty"), false);
        clear($("#list-footer"));
      }
      show($("#list-view"), true);
      renderList(state.view, state.seq);
    } else {
      show($("#list-view"), false);
      clear($("#packet-list tbody"));
      show($("#detail-view"), true);
      if (!state.packet || state.packet.id !== state.view.id) resetDetail();
      if (!state.lastShare || state.lastShare.packetId !== state.view.id) state.lastShare = null;
      state.armedArchive = false;
      renderDetail(state.view.id, state.seq);
    }
  }

  // Empties the detail, so that no row of another packet lingers while the next one loads.
  function resetDetail() {
    state.packet = null;
    var root = $("#packet-detail");
    delete root.dataset.id;
    delete root.dataset.status;
    $(".detail-name", root).textContent = "";
    $(".detail-description", root).textContent = "";
    clear($(".facts", root));
    ["#contents", "#shares", "#comments", "#versions", "#exports"].forEach(function (selector) {
      clear($(selector + " tbody"));
    });
    clear($("#share-link"));
    show($("#share-link"), false);
    // Nothing but the way back until the packet has loaded.
    $all("section.card, form, .detail-actions, .facts", root).forEach(function (node) {
      show(node, false);
    });
  }

  function current(seq) {
    return seq === state.seq;
  }

  // ---- the list -------------------------------------------------------------------------------

  function renderList(view, seq) {
    var title = view.status === "all" ? "Packets" : "Packets — " + TAB_LABELS[view.status];
    tell(function (b) {
      b.setTitle(title);
    });
    document.title = title;
    $all("a.tab").forEach(function (tab) {
      var status = tab.dataset.status;
      tab.classList.toggle("active", status === view.status);
      tab.setAttribute("href", "#route=" + listRoute(status, ""));
      tab.setAttribute("aria-current", status === view.status ? "page" : "false");
    });
    var search = $("#search");
    if (document.activeElement !== search) search.value = view.q;
    state.listItems = [];
    state.listTotal = 0;
    loadPage(view, seq, 0);
    loadCounts(seq);
  }

  function listPath(view, offset) {
    var base = view.status === "all" ? "/" : "/status/" + enc(view.status);
    var query = "?limit=" + PAGE + "&offset=" + offset;
    if (view.q) query += "&q=" + encodeURIComponent(view.q);
    return base + query;
  }

  function loadPage(view, seq, offset) {
    var wrap = $("#packet-list");
    wrap.classList.add("busy");
    return api("GET", listPath(view, offset))
      .then(function (page) {
        if (!current(seq)) return;
        state.listItems = state.listItems.concat(page.items || []);
        state.listTotal = page.total || 0;
        drawList(view, seq);
      })
      .catch(function (error) {
        if (current(seq)) showError(error);
      })
      .then(function () {
        wrap.classList.remove("busy");
      });
  }

  function drawList(view, seq) {
    var wrap = $("#packet-list");
    var body = $("tbody", wrap);
    clear(body);
    state.listItems.forEach(function (packet) {
      var route = detailRoute(packet.id);
      var nameCell = el(
        "td",
        { className: "name-cell" },
        link(packet.name, route, "packet-name"),
        packet.description ? el("div", { className: "sub" }, packet.description) : null
      );
      var row = el(
        "tr",
        { className: "packet-row", dataset: { id: packet.id, status: packet.status } },
        nameCell,
        el("td", null, el("span", { className: "packet-status pill status-" + packet.status }, packet.status)),
        el("td", { className: "num" }, packet.contents_count),
        el("td", { className: "num" }, "v" + packet.version),
        el("td", null, packet.visibility),
        timeCell(packet.updated_at)
      );
      row.addEventListener("click", function (event) {
        if (event.target.closest("a, button")) return;
        go(route);
      });
      body.appendChild(row);
    });
    var empty = $(".empty", wrap);
    if (!state.listItems.length) {
      empty.textContent = view.q
        ? "No packets match “" + view.q + "”."
        : view.status === "all"
          ? "No packets yet. Create the first one above."
          : "No " + TAB_LABELS[view.status].toLowerCase() + " packets.";
    }
    show(empty, !state.listItems.length);
    var footer = $("#list-footer");
    clear(footer);
    if (state.listItems.length) {
      footer.appendChild(document.createTextNode("Showing " + state.listItems.length + " of " + state.listTotal + " "));
      if (state.listItems.length < state.listTotal) {
        footer.appendChild(
          el("button", {
            type: "button",
            className: "small",
            onclick: function () {
              loadPage(view, seq, state.listItems.length);
            },
          }, "Load more")
        );
      }
    }
  }

  function loadCounts(seq) {
    api("GET", "/stats/overview")
      .then(function (stats) {
        if (!current(seq)) return;
        var by = (stats && stats.by_status) || {};
        var counts = {
          draft: by.draft || 0,
          finalized: by.finalized || 0,
          shared: by.shared || 0,
        };
        counts.all = counts.draft + counts.finalized + counts.shared;
        $all("a.tab").forEach(function (tab) {
          $(".tab-count", tab).textContent = String(counts[tab.dataset.status] || 0);
        });
      })
      .catch(function () {
        // The counts are a nicety; the list itself reports errors.
      });
  }

  // ---- the detail -----------------------------------------------------------------------------

  function renderDetail(id, seq) {
    var root = $("#packet-detail");
    root.dataset.id = id;
    root.classList.add("busy");
    var base = "/" + enc(id);
    return Promise.all([
      api("GET", base),
      api("GET", base + "/contents"),
      api("GET", base + "/shares"),
      api("GET", base + "/versions"),
    ])
      .then(function (answers) {
        if (!current(seq)) return;
        drawDetail(answers[0], answers[1].items || [], answers[2].items || [], answers[3].items || []);
        loadExports(id, seq);
        loadComments(answers[0], seq);
      })
      .catch(function (error) {
        if (!current(seq)) return;
        if (error.status === 404) {
          drawMissing(id);
        }
        showError(error);
      })
      .then(function () {
        root.classList.remove("busy");
      });
  }

  function drawMissing(id) {
    var root = $("#packet-detail");
    root.dataset.status = "missing";
    $(".detail-name", root).textContent = "No such packet";
    $(".detail-description", root).textContent = "There is no packet with id " + id + ".";
    clear($(".facts", root));
    $all("section.card, form, .detail-actions, .facts", root).forEach(function (node) {
      show(node, false);
    });
    tell(function (b) {
      b.setTitle("Packets — not found");
    });
  }

  function drawDetail(packet, contents, shares, versions) {
    state.packet = packet;
    var root = $("#packet-detail");
    var isDraft = packet.status === "draft";
    var shareable = packet.status === "finalized" || packet.status === "shared";
    root.dataset.id = packet.id;
    root.dataset.status = packet.status;
    $all("section.card, .detail-actions, .facts", root).forEach(function (node) {
      show(node, true);
    });
    tell(function (b) {
      b.setTitle(packet.name);
    });
    document.title = packet.name + " — Packets";

    var name = $(".detail-name", root);
    clear(name);
    name.appendChild(document.createTextNode(packet.name + " "));
    name.appendChild(pill(packet.status));
    var description = $(".detail-description", root);
    description.textContent = packet.description || "No description.";
    description.classList.toggle("muted", !packet.description);

    var facts = $(".facts", root);
    clear(facts);
    var fact = function (label, value, className, title) {
      var wide = className === "mono" && String(value).length > 20;
      facts.appendChild(
        el("div", { className: wide ? "fact wide" : "fact" }, el("dt", null, label), el("dd", { className: className, title: title }, value))
      );
    };
    fact("Version", "v" + packet.version);
    fact("Items", packet.contents_count);
    fact("Visibility", packet.visibility);
    fact("Created by", packet.created_by);
    fact("Created", when(packet.created_at), null, packet.created_at);
    fact("Updated", when(packet.updated_at), null, packet.updated_at);
    fact("Checksum", packet.checksum ? packet.checksum.slice(0, 16) + "…" : "set when finalized", "mono", packet.checksum || undefined);
    if (packet.checksum) fact("Listing size", bytes(packet.size_bytes));
    if (packet.import_source) fact("Imported from", packet.import_source, "mono");
    fact("Id", packet.id, "mono");

    show($("#finalize"), isDraft);
    var archive = $("#archive");
    show(archive, packet.status !== "archived");
    archive.textContent = "Archive";
    state.armedArchive = false;

    var edit = $("#edit-packet");
    show(edit, isDraft);
    if (isDraft) {
      edit.elements.name.value = packet.name;
      edit.elements.description.value = packet.description || "";
      edit.elements.visibility.value = packet.visibility;
    }

    drawContents(packet, contents);
    show($("#add-content"), isDraft);

    show($("#share"), shareable);
    $("#share-hint").textContent = shareable
      ? "A link opens the packet read-only until it expires or is revoked."
      : packet.status === "draft"
        ? "Finalize the packet to share it."
        : "Archived packets cannot be shared.";
    drawShareLink(packet);
    drawShares(packet, shares);
    drawVersions(packet, versions);
    show($("#version-form"), packet.status !== "archived");
  }

  function drawContents(packet, contents) {
    var wrap = $("#contents");
    var body = $("tbody", wrap);
    clear(body);
    var isDraft = packet.status === "draft";
    contents.forEach(function (item, index) {
      var remove = isDraft
        ? el("button", {
            type: "button",
            className: "small danger-text remove-content",
            title: "Remove this item from the packet",
            onclick: function (event) {
              action(event.currentTarget, function () {
                return api("DELETE", "/" + enc(packet.id) + "/contents/" + enc(item.id)).then(function () {
                  notice("Item removed.");
                });
              });
            },
          }, "Remove")
        : null;
      body.appendChild(
        el(
          "tr",
          { className: "content-row", dataset: { id: item.id, contentType: item.content_type } },
          el("td", { className: "num", title: "order_num " + item.order_num }, index + 1),
          el("td", null, el("span", { className: "tag" }, String(item.content_type).replace(/_/g, " "))),
          el("td", { className: "content-title" }, item.content_title || "—"),
          el("td", { className: "mono content-id" }, item.content_id),
          timeCell(item.added_at),
          el("td", { className: "row-actions" }, remove)
        )
      );
    });
    show($(".empty", wrap), !contents.length);
    $("#contents-count").textContent = contents.length ? String(contents.length) : "";
  }

  function drawShareLink(packet) {
    var box = $("#share-link");
    clear(box);
    var last = state.lastShare;
    if (!last || last.packetId !== packet.id) {
      show(box, false);
      return;
    }
    var urls = shareUrls(last.token);
    var full = el("code", { className: "share-url" }, urls.full);
    box.appendChild(el("div", { className: "share-link-head" }, "New link — anyone holding it can open the packet read-only:"));
    box.appendChild(
      el(
        "div",
        { className: "share-link-row" },
        full,
        el("button", {
          type: "button",
          className: "small",
          onclick: function () {
            copy(urls.full, full);
          },
        }, "Copy")
      )
    );
    box.appendChild(
      el(
        "div",
        { className: "share-link-row muted" },
        "Path on this frame: ",
        el("a", { href: urls.path, target: "_blank", rel: "noopener noreferrer", className: "mono" }, urls.path)
      )
    );
    show(box, true);
  }

  function copy(text, node) {
    var done = function () {
      notice("Link copied.");
    };
    // The sandbox may deny the clipboard API; then the text is selected and copied the old way.
    var fallback = function () {
      var range = document.createRange();
      range.selectNodeContents(node);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
      if (ok) done();
      else notice("The link is selected: copy it with Ctrl+C.");
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  function drawShares(packet, shares) {
    var wrap = $("#shares");
    var body = $("tbody", wrap);
    clear(body);
    shares.forEach(function (share) {
      var urls = shareUrls(share.access_token);
      var stateName = share.state || (share.expired ? "expired" : "active");
      body.appendChild(
        el(
          "tr",
          { className: "share-row", dataset: { id: share.id, state: stateName } },
          el("td", null, share.shared_with),
          el("td", null, share.permissions),
          el("td", null, el("span", { className: "pill state-" + stateName }, stateName)),
          timeCell(share.shared_at),
          share.expires_at ? timeCell(share.expires_at) : el("td", { className: "muted" }, "never"),
          el("td", null, el("a", { href: urls.path, target: "_blank", rel: "noopener noreferrer", title: urls.full }, "open")),
          el(
            "td",
            { className: "row-actions" },
            el("button", {
              type: "button",
              className: "small danger-text revoke",
              title: "Revoke: the link stops working at once",
              onclick: function (event) {
                action(event.currentTarget, function () {
                  return api("DELETE", "/" + enc(packet.id) + "/shares/" + enc(share.id)).then(function () {
                    if (state.lastShare && state.lastShare.token === share.access_token) state.lastShare = null;
                    notice("Share revoked: its link no longer opens the packet.");
                  });
                });
              },
            }, "Revoke")
          )
        )
      );
    });
    // A draft has no shares to list; its hint already says why.
    var shareable = packet.status === "finalized" || packet.status === "shared";
    show($(".empty", wrap), !shares.length && shareable);
  }

  function drawVersions(packet, versions) {
    var wrap = $("#versions");
    var body = $("tbody", wrap);
    clear(body);
    versions
      .slice()
      .sort(function (a, b) {
        return b.version_number - a.version_number;
      })
      .forEach(function (version) {
        var snapshot = version.snapshot_path
          ? el("button", {
              type: "button",
              className: "small",
              title: "Download the packet and its contents as they were",
              onclick: function () {
                tell(function (b) {
                  b.download(
                    "/" + enc(packet.id) + "/versions/" + version.version_number,
                    slug(packet.name) + "-v" + version.version_number + ".json"
                  );
                });
              },
            }, "Download")
          : el("span", { className: "muted", title: "storage was unavailable when it was made" }, "none");
        body.appendChild(
          el(
            "tr",
            { className: "version-row", dataset: { version: version.version_number } },
            el("td", { className: "num" }, "v" + version.version_number),
            timeCell(version.created_at),
            el("td", null, version.changes_summary),
            el("td", null, snapshot)
          )
        );
      });
    show($(".empty", wrap), !versions.length);
  }

  // Comments come only through share links, so a draft (never shared) has none to show.
  function loadComments(packet, seq) {
    var section = $("#comments-section");
    var wrap = $("#comments");
    var body = $("tbody", wrap);
    clear(body);
    $("#comments-count").textContent = "";
    if (packet.status === "draft") {
      show(section, false);
      return;
    }
    api("GET", "/" + enc(packet.id) + "/comments")
      .then(function (answer) {
        if (!current(seq)) return;
        var items = (answer && answer.items) || [];
        items.forEach(function (comment) {
          body.appendChild(
            el(
              "tr",
              { className: "comment-row", dataset: { id: comment.id } },
              el("td", null, comment.author),
              el("td", { className: "comment-body" }, comment.body),
              timeCell(comment.created_at)
            )
          );
        });
        $("#comments-count").textContent = items.length ? String(items.length) : "";
        show($(".empty", wrap), !items.length);
      })
      .catch(function (error) {
        if (current(seq)) showError(error);
      });
  }

  function loadExports(id, seq) {
    var wrap = $("#exports");
    var body = $("tbody", wrap);
    var empty = $(".empty", wrap);
    api("GET", "/" + enc(id) + "/exports")
      .then(function (answer) {
        if (!current(seq)) return;
        var items = (answer && answer.items) || [];
        clear(body);
        items
          .slice()
          .sort(function (a, b) {
            return String(b.modified_at).localeCompare(String(a.modified_at));
          })
          .forEach(function (item) {
            var file = String(item.file_path).split("/").pop();
            body.appendChild(
              el(
                "tr",
                { className: "export-row" },
                el("td", { className: "mono" }, file),
                el("td", null, item.content_type),
                el("td", { className: "num" }, bytes(item.size_bytes)),
                timeCell(item.modified_at),
                el(
                  "td",
                  { className: "row-actions" },
                  el("button", {
                    type: "button",
                    className: "small",
                    onclick: function () {
                      downloadExport(item.download_path, file);
                    },
                  }, "Download"),
                  " ",
                  el("button", {
                    type: "button",
                    className: "small danger-text delete-export",
                    title: "Delete this bundle (bundles count against the storage quota)",
                    onclick: function (event) {
                      action(event.currentTarget, function () {
                        return api("DELETE", shardPath(item.download_path)).then(function () {
                          notice("Export deleted.");
                          loadExports(id, state.seq);
                        });
                      }, true);
                    },
                  }, "Delete")
                )
              )
            );
          });
        empty.textContent = "No exports yet.";
        show(empty, !items.length);
      })
      .catch(function (error) {
        if (!current(seq)) return;
        clear(body);
        empty.textContent = "Exports are unavailable: " + error.message;
        show(empty, true);
      });
  }

  // The API names its files by their full path; the bridge wants them relative to the prefix.
  function shardPath(fullPath) {
    var path = String(fullPath);
    return path.indexOf(PREFIX + "/") === 0 ? path.slice(PREFIX.length) : path;
  }

  function downloadExport(downloadPath, filename) {
    var path = shardPath(downloadPath);
    tell(function (b) {
      b.download(path, filename);
    });
  }

  // ---- actions --------------------------------------------------------------------------------

  // Runs `work` with `button` disabled, shows its error, and reloads the view after success.
  function action(button, work, keepView) {
    if (button) button.disabled = true;
    clearError();
    return Promise.resolve()
      .then(work)
      .then(function (result) {
        if (!keepView) render(state.route, true);
        return result;
      })
      .catch(function (error) {
        showError(error);
      })
      .then(function () {
        if (button) button.disabled = false;
      });
  }

  function formValue(form, name) {
    var field = form.elements[name];
    return field ? String(field.value).trim() : "";
  }

  function submitButton(form) {
    return form.querySelector("button[type=submit]");
  }

  function onSubmit(selector, handler) {
    var form = $(selector);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      handler(form, submitButton(form));
    });
  }

  function wire() {
    onSubmit("#create-packet", function (form, button) {
      var name = formValue(form, "name");
      if (!name) {
        showError("A packet needs a name.");
        return;
      }
      var body = { name: name, description: formValue(form, "description") };
      var visibility = formValue(form, "visibility");
      if (visibility) body.visibility = visibility;
      action(button, function () {
        return api("POST", "/", body).then(function (packet) {
          form.reset();
          notice("Draft created.");
          go(detailRoute(packet.id));
        });
      }, true);
    });

    onSubmit("#edit-packet", function (form, button) {
      var packet = state.packet;
      if (!packet) return;
      var name = formValue(form, "name");
      if (!name) {
        showError("A packet needs a name.");
        return;
      }
      var body = {
        name: name,
        description: form.elements.description.value,
        visibility: formValue(form, "visibility"),
      };
      action(button, function () {
        return api("PUT", "/" + enc(packet.id), body).then(function () {
          notice("Changes saved.");
        });
      });
    });

    onSubmit("#add-content", function (form, button) {
      var packet = state.packet;
      if (!packet) return;
      var title = formValue(form, "content_title");
      var contentId = formValue(form, "content_id");
      var contentType = formValue(form, "content_type");
      if (!title && !contentId) {
        showError("Give the item a title or a content id.");
        return;
      }
      // The API needs an id for the item; without one, the page makes a readable one.
      if (!contentId) contentId = slug(title).slice(0, 32) + "-" + randomHex(4);
      var body = { content_type: contentType, content_id: contentId };
      if (title) body.content_title = title;
      action(button, function () {
        return api("POST", "/" + enc(packet.id) + "/contents", body).then(function () {
          form.elements.content_title.value = "";
          form.elements.content_id.value = "";
          notice("Item added.");
          form.elements.content_title.focus();
        });
      });
    });

    $("#finalize").addEventListener("click", function (event) {
      var packet = state.packet;
      if (!packet) return;
      action(event.currentTarget, function () {
        return api("POST", "/" + enc(packet.id) + "/finalize").then(function (done) {
          notice("Finalized as v" + done.version + ". The packet is now frozen.");
        });
      });
    });

    $("#archive").addEventListener("click", function (event) {
      var packet = state.packet;
      if (!packet) return;
      var button = event.currentTarget;
      // Archiving cannot be undone: a second click confirms (the sandbox allows no dialogs).
      if (!state.armedArchive) {
        state.armedArchive = true;
        button.textContent = "Click again to archive";
        setTimeout(function () {
          if (state.armedArchive) {
            state.armedArchive = false;
            button.textContent = "Archive";
          }
        }, 4000);
        return;
      }
      state.armedArchive = false;
      action(button, function () {
        return api("POST", "/" + enc(packet.id) + "/archive").then(function () {
          notice("Packet archived.");
        });
      });
    });

    onSubmit("#share", function (form, button) {
      var packet = state.packet;
      if (!packet) return;
      var body = {
        shared_with: formValue(form, "shared_with") || "anyone with the link",
        permissions: formValue(form, "permissions") || "view",
      };
      var days = formValue(form, "expires_in_days");
      if (days) {
        var n = Number(days);
        if (!Number.isInteger(n) || n < 1 || n > 3650) {
          showError("Expires in (days) must be a whole number from 1 to 3650, or empty for never.");
          return;
        }
        body.expires_at = new Date(Date.now() + n * 86400000).toISOString();
      }
      action(button, function () {
        return api("POST", "/" + enc(packet.id) + "/share", body).then(function (share) {
          state.lastShare = { packetId: packet.id, token: share.access_token };
          form.reset();
          notice("Share link created.");
        });
      });
    });

    onSubmit("#version-form", function (form, button) {
      var packet = state.packet;
      if (!packet) return;
      var summary = formValue(form, "changes_summary") || "Version made from the dashboard";
      action(button, function () {
        return api("POST", "/" + enc(packet.id) + "/versions", { changes_summary: summary }).then(function (version) {
          form.reset();
          notice("Version v" + version.version_number + " recorded.");
        });
      });
    });

    ["json", "zip"].forEach(function (format) {
      $("#export-" + format).addEventListener("click", function (event) {
        var packet = state.packet;
        if (!packet) return;
        action(event.currentTarget, function () {
          return api("POST", "/" + enc(packet.id) + "/export", { format: format }).then(function (exported) {
            downloadExport(exported.download_path, slug(packet.name) + "-v" + packet.version + "." + format);
            notice("Exported " + format + " (" + bytes(exported.size_bytes) + "); the download has started.");
            loadExports(packet.id, state.seq);
          });
        }, true);
      });
    });

    var importFile = $("#import-file");
    $("#import").addEventListener("click", function () {
      importFile.value = "";
      importFile.click();
    });
    importFile.addEventListener("change", function () {
      var file = importFile.files && importFile.files[0];
      if (!file) return;
      var button = $("#import");
      action(button, function () {
        return file.arrayBuffer().then(function (buffer) {
          return api("POST", "/import", buffer).then(function (imported) {
            notice("Imported “" + imported.packet.name + "” (" + imported.contents_count + " items, " + imported.versions_count + " versions).");
            go(detailRoute(imported.packet.id));
          });
        });
      }, true);
    });

    $("#back").addEventListener("click", function (event) {
      event.preventDefault();
      var packet = state.packet;
      var status = packet && TABS.indexOf(packet.status) > 0 ? packet.status : "all";
      go(listRoute(status, ""));
    });

    $all("a.tab").forEach(function (tab) {
      tab.addEventListener("click", function (event) {
        event.preventDefault();
        go(listRoute(tab.dataset.status, ""));
      });
    });

    var searchTimer = null;
    $("#search").addEventListener("input", function (event) {
      var q = event.currentTarget.value.trim();
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        var view = state.view;
        if (!view || view.kind !== "list" || q === view.q) return;
        go(listRoute(view.status, q));
      }, 250);
    });
  }

  // ---- start ----------------------------------------------------------------------------------

  function routeFromHash() {
    var match = /(?:^#|&)route=([^&]*)/.exec(window.location.hash || "");
    if (!match) return null;
    try {
      return decodeURIComponent(match[1]);
    } catch (e) {
      return null;
    }
  }

  function start() {
    wire();
    if (!bridge) {
      show($("#loading"), false);
      showError(
        "The frame's bridge (/static/arkham-ui.js) is not loaded, so this page cannot reach the " +
          "packets API. Open it from the dashboard, at /packets."
      );
      return;
    }
    // The frame names the route in the iframe's URL and again in a `route` message; whichever
    // comes first is shown, the other finds it already on screen.
    var initial = routeFromHash();
    if (initial) render(initial);
    bridge.onRoute(function (route) {
      render(route);
    });
    setTimeout(function () {
      if (state.route === null) render(ROOT);
    }, 1500);
  }

  start();
})();
