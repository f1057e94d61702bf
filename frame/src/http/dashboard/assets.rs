//! The dashboard's files, embedded in the binary (it works offline), and the Lucide icons that
//! manifests name, cut out of the vendored sprite (`frame/ui/vendor/lucide/`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

/// `(name under /static/, content type, contents)`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/app.css"),
    ),
    (
        "arkham-ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/arkham-ui.js"),
    ),
    (
        "lucide-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("../../../ui/vendor/lucide/LICENSE"),
    ),
];

/// The page every dashboard route answers; it loads the rest.
pub const SHELL: &str = include_str!("../../../ui/index.html");

const SPRITE: &str = include_str!("../../../ui/vendor/lucide/sprite.svg");

/// The icon shown for a name the sprite does not have.
pub const FALLBACK_ICON: &str = "puzzle";

/// A strong validator of `body`, for `If-None-Match`.
fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("\"{}\"", crate::runtime::cache::hex(&digest[..12]))
}

/// A static answer: revalidated on every use (`no-cache`), 304 when unchanged.
pub fn respond(request: &HeaderMap, content_type: &'static str, body: String) -> Response {
    let tag = etag(&body);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A file under `/static/`.
pub fn file(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Icons by their file name (`file-text`) and by the component name manifests use
/// (`FileText`), mapped to the symbol's inner markup.
struct Icons {
    by_name: HashMap<&'static str, &'static str>,
    by_component: HashMap<String, &'static str>,
}

fn icons() -> &'static Icons {
    static ICONS: OnceLock<Icons> = OnceLock::new();
    ICONS.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_component = HashMap::new();
        for chunk in SPRITE.split("<symbol id=\"").skip(1) {
            let Some((name, rest)) = chunk.split_once('"') else {
                continue;
            };
            let Some((_, inner)) = rest.split_once('>') else {
                continue;
            };
            let Some((inner, _)) = inner.split_once("</symbol>") else {
                continue;
            };
            by_name.insert(name, inner.trim());
            by_component.insert(component_name(name), name);
        }
        Icons {
            by_name,
            by_component,
        }
    })
}

/// Lucide's component name of an icon file name: `arrow-down-0-1` → `ArrowDown01`.
fn component_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The icon `name` (a file or component name, `.svg` optional) as a standalone SVG, and
/// whether it is the fallback.
pub fn icon(name: &str) -> (String, bool) {
    let name = name.strip_suffix(".svg").unwrap_or(name);
    let icons = icons();
    let found = icons.by_name.get_key_value(name).or_else(|| {
        icons
            .by_component
            .get(name)
            .and_then(|n| icons.by_name.get_key_value(n))
    });
    let (inner, fallback) = match found {
        Some((_, inner)) => (*inner, false),
        None => (
            icons.by_name.get(FALLBACK_ICON).copied().unwrap_or(""),
            true,
        ),
    };
    (
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"24\" height=\"24\" viewBox=\"0 0 24 24\" \
             fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" stroke-linecap=\"round\" \
             stroke-linejoin=\"round\">{inner}</svg>"
        ),
        fallback,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icons_are_found_by_either_name() {
        let (by_component, fallback) = icon("Package");
        assert!(!fallback);
        assert_eq!(icon("package.svg"), (by_component.clone(), false));
        assert!(by_component.contains("<path"));
        assert!(!icon("FileText").1);
        assert!(!icon("ArrowDown01").1, "digits split like Lucide's names");
        assert!(
            icons().by_name.len() > 1500,
            "the whole sprite is parsed: {}",
            icons().by_name.len()
        );
    }

    #[test]
    fn an_unknown_icon_is_the_fallback() {
        let (svg, fallback) = icon("<script>");
        assert!(fallback);
        assert_eq!(svg, icon(FALLBACK_ICON).0);
        assert!(!svg.contains("<script>"));
    }
}
