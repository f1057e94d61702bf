//! A tiny router: method + path pattern with `{param}` and trailing `{rest...}` captures.

use std::cmp::Ordering;

use crate::http::{ApiError, Method, Request, Response};
use crate::url;

/// A route handler: the request and the captured path parameters in, a response or an error out.
/// Errors become their JSON response; 5xx errors are also logged. A plain `fn` or a closure
/// that captures nothing.
///
/// ```
/// use arkham_shard_sdk::{ApiError, Handler, Params, Request, Response};
///
/// fn hello(_request: &Request, params: &Params) -> Result<Response, ApiError> {
///     Ok(Response::text(200, format!("hello {}", params.require("name")?)))
/// }
///
/// let handlers: [(&str, Handler); 2] = [
///     ("/hello/{name}", hello),
///     ("/ping", |_, _| Ok(Response::text(200, "pong"))),
/// ];
/// ```
pub type Handler = fn(&Request, &Params) -> Result<Response, ApiError>;

/// Path parameters captured by a route, percent-decoded.
///
/// ```
/// use arkham_shard_sdk::{Method, Request, Response, Router};
///
/// let router = Router::new().get("/{id}/files/{path...}", |_, params| {
///     let id = params.require("id")?;
///     Ok(Response::text(200, format!("{id}: {}", params.get("path").unwrap_or_default())))
/// });
/// let response = router.handle(&Request::new(Method::Get, "/n%201/files/a/b.txt"));
/// assert_eq!(response.body, b"n 1: a/b.txt");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The value captured for `{name}` (or `{name...}`), if the route has it.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().get("/{id}", |_, params| {
    ///     Ok(Response::text(200, params.get("id").unwrap_or("?")))
    /// });
    /// assert_eq!(router.handle(&Request::new(Method::Get, "/n1")).body, b"n1");
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Like [`Params::get`], but a missing parameter (a typo in the route) is a 500 error.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().get("/{id}", |_, params| {
    ///     Ok(Response::text(200, params.require("id")?))
    /// });
    /// assert_eq!(router.handle(&Request::new(Method::Get, "/n1")).body, b"n1");
    /// ```
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::internal(format!("the route has no parameter `{name}`")))
    }

    /// All captured parameters, in pattern order.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().get("/{a}/{b}", |_, params| {
    ///     let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    ///     Ok(Response::text(200, pairs.join("&")))
    /// });
    /// assert_eq!(router.handle(&Request::new(Method::Get, "/x/y")).body, b"a=x&b=y");
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl Segment {
    /// Literal segments beat captures, and captures beat a trailing rest capture.
    fn specificity(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
            Segment::Rest(_) => 0,
        }
    }
}

struct Route {
    /// `None` matches every method.
    method: Option<Method>,
    pattern: Vec<Segment>,
    handler: Handler,
}

/// Dispatches requests to handlers by method and path.
///
/// Patterns are `/`-separated segments: literals, `{name}` (one non-empty segment) or, as the last
/// segment, `{name...}` (the rest of the path, one segment or more). When several patterns match
/// a path the most specific wins, segment by segment (literal over `{name}` over `{name...}`),
/// whatever the registration order: `/count` beats `/{id}`. A path that matches but not with the
/// request's method gives 405 with an `Allow` header; no match gives 404. `HEAD` falls back to the
/// `GET` route, without the body.
///
/// ```
/// # use arkham_shard_sdk::{Router, Response};
/// let router = Router::new()
///     .get("/{id}", |_, params| Ok(Response::text(200, params.require("id")?)))
///     .get("/count", |_, _| Ok(Response::text(200, "3")));
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router: every request gets 404.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Router};
    ///
    /// assert_eq!(Router::new().handle(&Request::new(Method::Get, "/")).status, 404);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` (or every method when `None`).
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new()
    ///     .route(Some(Method::Options), "/", |_, _| Ok(Response::empty(204)))
    ///     .route(None, "/echo", |request, _| Ok(Response::text(200, request.method.as_str())));
    /// assert_eq!(router.handle(&Request::new(Method::Options, "/")).status, 204);
    /// assert_eq!(router.handle(&Request::new(Method::Put, "/echo")).body, b"PUT");
    /// ```
    pub fn route(mut self, method: Option<Method>, pattern: &str, handler: Handler) -> Self {
        let pattern = url::split_path(pattern)
            .into_iter()
            .map(|segment| {
                match segment
                    .strip_prefix('{')
                    .and_then(|inner| inner.strip_suffix('}'))
                {
                    Some(inner) => match inner.strip_suffix("...") {
                        Some(name) => Segment::Rest(name.to_owned()),
                        None => Segment::Param(inner.to_owned()),
                    },
                    None => Segment::Literal(segment.to_owned()),
                }
            })
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            handler,
        });
        self
    }

    /// Adds a `GET` route (which also answers `HEAD`, without the body).
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().get("/health", |_, _| Ok(Response::text(200, "ok")));
    /// assert_eq!(router.handle(&Request::new(Method::Get, "/health")).body, b"ok");
    /// assert_eq!(router.handle(&Request::new(Method::Head, "/health")).body, b"");
    /// ```
    pub fn get(self, pattern: &str, handler: Handler) -> Self {
        self.route(Some(Method::Get), pattern, handler)
    }

    /// Adds a `POST` route.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().post("/", |request, _| {
    ///     Ok(Response::json(201, &serde_json::json!({ "got": request.text()? })))
    /// });
    /// assert_eq!(router.handle(&Request::new(Method::Post, "/")).status, 201);
    /// ```
    pub fn post(self, pattern: &str, handler: Handler) -> Self {
        self.route(Some(Method::Post), pattern, handler)
    }

    /// Adds a `PUT` route.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().put("/{id}", |_, _| Ok(Response::empty(204)));
    /// assert_eq!(router.handle(&Request::new(Method::Put, "/n1")).status, 204);
    /// ```
    pub fn put(self, pattern: &str, handler: Handler) -> Self {
        self.route(Some(Method::Put), pattern, handler)
    }

    /// Adds a `PATCH` route.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().patch("/{id}", |_, _| Ok(Response::empty(204)));
    /// assert_eq!(router.handle(&Request::new(Method::Patch, "/n1")).status, 204);
    /// ```
    pub fn patch(self, pattern: &str, handler: Handler) -> Self {
        self.route(Some(Method::Patch), pattern, handler)
    }

    /// Adds a `DELETE` route.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().delete("/{id}", |_, _| Ok(Response::empty(204)));
    /// assert_eq!(router.handle(&Request::new(Method::Delete, "/n1")).status, 204);
    /// assert_eq!(router.handle(&Request::new(Method::Get, "/n1")).status, 405);
    /// ```
    pub fn delete(self, pattern: &str, handler: Handler) -> Self {
        self.route(Some(Method::Delete), pattern, handler)
    }

    /// Adds a route for every method.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request, Response, Router};
    ///
    /// let router = Router::new().any("/gone", |_, _| Ok(Response::error(410, "gone", "moved")));
    /// assert_eq!(router.handle(&Request::new(Method::Post, "/gone")).status, 410);
    /// ```
    pub fn any(self, pattern: &str, handler: Handler) -> Self {
        self.route(None, pattern, handler)
    }

    /// Finds the route for `request`, runs it and turns its error, if any, into a response.
    ///
    /// ```
    /// use arkham_shard_sdk::{ApiError, Method, Request, Router};
    ///
    /// let router = Router::new().get("/{id}", |_, params| {
    ///     Err(ApiError::not_found(format!("no note {}", params.require("id")?)))
    /// });
    /// let response = router.handle(&Request::new(Method::Get, "/n1"));
    /// assert_eq!(response.status, 404);
    /// assert_eq!(
    ///     response.body,
    ///     br#"{"error":{"code":"not_found","message":"no note n1"}}"#
    /// );
    /// let response = router.handle(&Request::new(Method::Post, "/n1"));
    /// assert_eq!((response.status, response.header("allow")), (405, Some("GET")));
    /// ```
    pub fn handle(&self, request: &Request) -> Response {
        let segments = url::split_path(&request.path);
        let matches: Vec<(&Route, Params)> = self
            .routes
            .iter()
            .filter_map(|route| capture(&route.pattern, &segments).map(|params| (route, params)))
            .collect();
        let Some(best) = matches
            .iter()
            .map(|(route, _)| route)
            .max_by(|a, b| compare_specificity(&a.pattern, &b.pattern))
        else {
            return ApiError::not_found(format!("no route for {}", request.path)).into_response();
        };
        // Only routes with the most specific pattern count: `DELETE /count` must not fall through
        // to `DELETE /{id}`.
        let candidates: Vec<&(&Route, Params)> = matches
            .iter()
            .filter(|(route, _)| {
                compare_specificity(&route.pattern, &best.pattern) == Ordering::Equal
            })
            .collect();
        let is_head = request.method == Method::Head;
        let chosen = candidates
            .iter()
            .find(|(route, _)| route.method.as_ref() == Some(&request.method))
            .or_else(|| candidates.iter().find(|(route, _)| route.method.is_none()))
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(route, _)| is_head && route.method == Some(Method::Get))
            });
        let Some((route, params)) = chosen else {
            let mut allowed: Vec<&str> = candidates
                .iter()
                .filter_map(|(route, _)| route.method.as_ref().map(Method::as_str))
                .collect();
            allowed.dedup();
            let allow = allowed.join(", ");
            return ApiError::new(
                405,
                "method_not_allowed",
                format!(
                    "{} is not allowed on {}; allowed: {allow}",
                    request.method, request.path
                ),
            )
            .into_response()
            .with_header("allow", allow);
        };
        let mut response = match (route.handler)(request, params) {
            Ok(response) => response,
            Err(error) => {
                if error.status >= 500 {
                    crate::log::error(&format!(
                        "{} {} failed: {error}",
                        request.method, request.path
                    ));
                }
                error.into_response()
            }
        };
        if is_head {
            response.body.clear();
        }
        response
    }
}

/// Matches `segments` against `pattern`, returning the decoded captures.
fn capture(pattern: &[Segment], segments: &[&str]) -> Option<Params> {
    let mut pairs = Vec::new();
    let mut rest = segments;
    for (index, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                // Only valid as the last pattern segment; elsewhere it never matches.
                if index + 1 != pattern.len() || rest.is_empty() {
                    return None;
                }
                pairs.push((name.clone(), url::percent_decode(&rest.join("/"), false)));
                rest = &[];
                break;
            }
            Segment::Literal(literal) => {
                let (first, tail) = rest.split_first()?;
                if first != literal {
                    return None;
                }
                rest = tail;
            }
            Segment::Param(name) => {
                let (first, tail) = rest.split_first()?;
                if first.is_empty() {
                    return None;
                }
                pairs.push((name.clone(), url::percent_decode(first, false)));
                rest = tail;
            }
        }
    }
    rest.is_empty().then_some(Params { pairs })
}

fn compare_specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    a.iter()
        .map(Segment::specificity)
        .cmp(b.iter().map(Segment::specificity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(request: &Request, params: &Params) -> Result<Response, ApiError> {
        let captured: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Response::text(
            200,
            format!("{} {}", request.method, captured.join(",")),
        ))
    }

    fn router() -> Router {
        Router::new()
            .get("/", echo)
            .get("/{id}", echo)
            .put("/{id}", echo)
            .get("/count", echo)
            .get("/{id}/contents", echo)
            .delete("/{id}/contents/{cid}", echo)
            .get("/blob/{key...}", echo)
    }

    fn call(method: Method, path: &str) -> (u16, String) {
        let response = router().handle(&Request::new(method, path));
        (response.status, String::from_utf8(response.body).unwrap())
    }

    #[test]
    fn routes_by_specificity_and_method() {
        assert_eq!(call(Method::Get, "/"), (200, "GET ".to_owned()));
        assert_eq!(call(Method::Get, "/count"), (200, "GET ".to_owned()));
        assert_eq!(call(Method::Get, "/a%20b/"), (200, "GET id=a b".to_owned()));
        assert_eq!(call(Method::Put, "/x"), (200, "PUT id=x".to_owned()));
        assert_eq!(
            call(Method::Delete, "/x/contents/y"),
            (200, "DELETE id=x,cid=y".to_owned())
        );
        assert_eq!(
            call(Method::Get, "/blob/a/b%2Fc"),
            (200, "GET key=a/b/c".to_owned())
        );
        assert_eq!(call(Method::Head, "/x"), (200, String::new()));
    }

    #[test]
    fn not_found_and_not_allowed() {
        assert_eq!(call(Method::Get, "/x/y").0, 404);
        assert_eq!(call(Method::Get, "//").0, 404);
        assert_eq!(call(Method::Get, "/a/contents/b").0, 405);
        let response = router().handle(&Request::new(Method::Delete, "/count"));
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("GET"));
        let response = router().handle(&Request::new(Method::Post, "/x"));
        assert_eq!(response.header("allow"), Some("GET, PUT"));
    }
}
