//! The dashboard: a page built from the installed shards' manifests (navigation and badges).

use crate::frame::{Frame, ShardStatus};
use crate::shards::manifest::CATEGORIES;
use axum::extract::State;
use axum::response::Html;
use std::fmt::Write as _;
use std::sync::Arc;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /`: the shards grouped by navigation category, with live badge counts.
pub async fn page(State(frame): State<Arc<Frame>>) -> Html<String> {
    let mut entries = Vec::new();
    let mut other = Vec::new();
    for (installed, status) in frame.shards() {
        match status {
            ShardStatus::Running(running) => match running.manifest().navigation.clone() {
                Some(nav) => entries.push((running.manifest().clone(), nav)),
                None => other.push(format!("{} {}", installed.name, installed.version)),
            },
            ShardStatus::Failed { error, .. } => {
                other.push(format!("{} (failed: {error})", installed.name))
            }
        }
    }
    entries.sort_by_key(|(m, nav)| {
        (
            CATEGORIES
                .iter()
                .position(|c| *c == nav.category)
                .unwrap_or(usize::MAX),
            nav.order,
            m.name.clone(),
        )
    });
    let mut body = String::new();
    let mut current = "";
    for (manifest, nav) in &entries {
        if nav.category != current {
            if !current.is_empty() {
                body.push_str("</ul></section>");
            }
            current = &nav.category;
            let _ = write!(body, "<section><h2>{}</h2><ul>", escape(current));
        }
        let badge = nav
            .badge_endpoint
            .as_deref()
            .map(|b| format!(" <span class=badge data-endpoint=\"{}\"></span>", escape(b)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<li><a href=\"{prefix}/\"><b>{label}</b></a>{badge} <small>{name} {version} — {desc}</small><ul>",
            prefix = escape(&manifest.api_prefix()),
            label = escape(&nav.label),
            name = escape(&manifest.name),
            version = manifest.version,
            desc = escape(&manifest.description),
        );
        for sub in &nav.sub_routes {
            let badge = sub
                .badge_endpoint
                .as_deref()
                .map(|b| format!(" <span class=badge data-endpoint=\"{}\"></span>", escape(b)))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<li>{}{badge} <small>{}</small></li>",
                escape(&sub.label),
                escape(&sub.route)
            );
        }
        body.push_str("</ul></li>");
    }
    if !current.is_empty() {
        body.push_str("</ul></section>");
    }
    if !other.is_empty() {
        body.push_str("<section><h2>Other shards</h2><ul>");
        for o in &other {
            let _ = write!(body, "<li>{}</li>", escape(o));
        }
        body.push_str("</ul></section>");
    }
    if entries.is_empty() && other.is_empty() {
        body.push_str(
            "<p>No shards installed. Add one with <code>arkham shard add PATH</code>.</p>",
        );
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>arkham</title>\
<style>body{{font:15px system-ui;margin:2em;max-width:60em}}.badge{{background:#333;color:#fff;border-radius:1em;padding:0 .5em;font-size:80%}}</style></head>\
<body><h1>arkham</h1>{body}\
<script>for(const b of document.querySelectorAll('.badge'))fetch(b.dataset.endpoint).then(r=>r.json()).then(j=>b.textContent=j.count??'').catch(()=>{{}})</script>\
</body></html>"
    ))
}
