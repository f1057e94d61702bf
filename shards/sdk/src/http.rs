//! Requests, responses and the JSON error shape every shard answers with.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{db, events, storage, url};

/// An HTTP request method.
///
/// ```
/// use arkham_shard_sdk::Method;
///
/// assert_eq!(Method::from_name("PATCH"), Method::Patch);
/// assert_eq!(Method::from_name("PURGE"), Method::Other("PURGE".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other method, as sent.
    Other(String),
}

impl Method {
    /// The method named `name` (as sent on the wire, so case-sensitive: `"GET"`).
    ///
    /// ```
    /// use arkham_shard_sdk::Method;
    ///
    /// assert_eq!(Method::from_name("GET"), Method::Get);
    /// assert_eq!(Method::from_name("get"), Method::Other("get".into()));
    /// ```
    pub fn from_name(name: &str) -> Self {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method's name as it appears on the wire, e.g. `"GET"`.
    ///
    /// ```
    /// use arkham_shard_sdk::Method;
    ///
    /// assert_eq!(Method::Delete.as_str(), "DELETE");
    /// assert_eq!(Method::Delete.to_string(), "DELETE");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(name) => name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An incoming HTTP request, read whole.
///
/// ```
/// use arkham_shard_sdk::{Method, Request};
///
/// let mut request = Request::new(Method::Post, "/notes?draft=1");
/// request.headers.push(("content-type".into(), b"application/json".to_vec()));
/// request.body = br#"{"title": "hi"}"#.to_vec();
/// assert_eq!((request.path.as_str(), request.query_param("draft")), ("/notes", Some("1")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method.
    pub method: Method,
    /// The path relative to the shard's prefix, as sent (still percent-encoded, without the
    /// query): `"/"`, `"/abc/contents"`. The [`Router`](crate::Router) decodes captured segments.
    pub path: String,
    /// The query string's key/value pairs in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// The header fields in order; names are lowercase as the frame delivers them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole request body.
    pub body: Vec<u8>,
}

impl Request {
    /// Builds a request from a method and a path with an optional `?query`, with no headers and
    /// an empty body. Handy in tests.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// let request = Request::new(Method::Get, "?page=2");
    /// assert_eq!(request.path, "/");
    /// assert_eq!(request.query, [("page".to_string(), "2".to_string())]);
    /// ```
    pub fn new(method: Method, path_with_query: &str) -> Self {
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, url::parse_query(query)),
            None => (path_with_query, Vec::new()),
        };
        let path = if path.is_empty() { "/" } else { path };
        Self {
            method,
            path: path.to_owned(),
            query,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The first value of the query parameter `name`, if present.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// let request = Request::new(Method::Get, "/?q=a+b&q=c");
    /// assert_eq!(request.query_param("q"), Some("a b"));
    /// assert_eq!(request.query_param("limit"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of the header `name` (case-insensitive), if present and valid UTF-8.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// let mut request = Request::new(Method::Get, "/");
    /// request.headers.push(("x-request-id".into(), b"r1".to_vec()));
    /// assert_eq!(request.header("X-Request-Id"), Some("r1"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The `Content-Type` header, if any.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// let mut request = Request::new(Method::Post, "/");
    /// assert_eq!(request.content_type(), None);
    /// request.headers.push(("content-type".into(), b"text/csv".to_vec()));
    /// assert_eq!(request.content_type(), Some("text/csv"));
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// Parses the body as JSON into `T`. Fails with a 422 `validation_failed` error that says
    /// what was wrong, ready to be returned from a handler with `?`.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct NewNote { title: String }
    ///
    /// let mut request = Request::new(Method::Post, "/");
    /// request.body = br#"{"title": "hi"}"#.to_vec();
    /// assert_eq!(request.json::<NewNote>()?.title, "hi");
    /// request.body = b"{".to_vec();
    /// assert_eq!(request.json::<NewNote>().unwrap_err().status, 422);
    /// # Ok::<(), arkham_shard_sdk::ApiError>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::validation(
                "the request body is empty; expected a JSON document",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|err| {
            ApiError::validation(format!("the request body is not the expected JSON: {err}"))
        })
    }

    /// The body as UTF-8 text; a 400 error if it is not.
    ///
    /// ```
    /// use arkham_shard_sdk::{Method, Request};
    ///
    /// let mut request = Request::new(Method::Post, "/");
    /// request.body = b"plain words".to_vec();
    /// assert_eq!(request.text()?, "plain words");
    /// request.body = vec![0xff];
    /// assert_eq!(request.text().unwrap_err().status, 400);
    /// # Ok::<(), arkham_shard_sdk::ApiError>(())
    /// ```
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.body)
            .map_err(|err| ApiError::bad_request(format!("the request body is not UTF-8: {err}")))
    }
}

/// An HTTP response to send back.
///
/// ```
/// use arkham_shard_sdk::Response;
///
/// let response = Response::text(200, "ok").with_header("cache-control", "no-store");
/// assert_eq!((response.status, response.body.as_slice()), (200, &b"ok"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields to send. `Content-Length` is added when the response is written.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with no headers and no body.
    ///
    /// ```
    /// let deleted = arkham_shard_sdk::Response::empty(204);
    /// assert!(deleted.headers.is_empty() && deleted.body.is_empty());
    /// ```
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A body of `content_type`.
    ///
    /// ```
    /// let csv = arkham_shard_sdk::Response::bytes(200, "text/csv", b"a,b\n".to_vec());
    /// assert_eq!(csv.header("content-type"), Some("text/csv"));
    /// ```
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self::empty(status)
            .with_header("content-type", content_type)
            .with_body(body)
    }

    /// A `text/plain; charset=utf-8` body.
    ///
    /// ```
    /// let response = arkham_shard_sdk::Response::text(200, format!("{} notes", 3));
    /// assert_eq!(response.body, b"3 notes");
    /// ```
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::bytes(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// `value` serialised as JSON. Should serialisation fail (a map with non-string keys, say), the
    /// response is a 500 error instead.
    ///
    /// ```
    /// use arkham_shard_sdk::Response;
    ///
    /// let response = Response::json(201, &serde_json::json!({ "id": "n1" }));
    /// assert_eq!(response.header("content-type"), Some("application/json"));
    /// assert_eq!(response.body, br#"{"id":"n1"}"#);
    /// ```
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes(status, "application/json", body),
            Err(err) => ApiError::internal(format!("could not serialise the response: {err}"))
                .into_response(),
        }
    }

    /// The house error shape: `{"error":{"code":"...","message":"..."}}`.
    ///
    /// ```
    /// use arkham_shard_sdk::Response;
    ///
    /// let response = Response::error(409, "invalid_state", "the note is archived");
    /// assert_eq!(
    ///     response.body,
    ///     br#"{"error":{"code":"invalid_state","message":"the note is archived"}}"#
    /// );
    /// ```
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError::new(status, code, message).into_response()
    }

    /// Adds a header field (names are sent as given; keep them lowercase).
    ///
    /// ```
    /// use arkham_shard_sdk::Response;
    ///
    /// let moved = Response::empty(303).with_header("location", "/api/notes/n1");
    /// assert_eq!(moved.header("Location"), Some("/api/notes/n1"));
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    ///
    /// ```
    /// use arkham_shard_sdk::Response;
    ///
    /// let response = Response::text(200, "draft").with_body("final");
    /// assert_eq!(response.body, b"final");
    /// ```
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of the header `name` (case-insensitive), if present and valid UTF-8.
    ///
    /// ```
    /// let response = arkham_shard_sdk::Response::text(200, "ok");
    /// assert_eq!(response.header("Content-Type"), Some("text/plain; charset=utf-8"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// An error a handler returns; it becomes a JSON response
/// `{"error":{"code":"...","message":"...","fields":{...}}}` (`fields` only when there are any).
/// The SDK's service errors convert into it, so `?` works on them in a handler.
///
/// ```no_run
/// use arkham_shard_sdk::{ApiError, Params, Request, Response, db, params};
///
/// fn get_note(_request: &Request, params: &Params) -> Result<Response, ApiError> {
///     let id = params.require("id")?;
///     // A database error becomes a 5xx (or 409 for a constraint) with a `database_*` code.
///     let row = db::query_opt("SELECT title FROM notes WHERE id = ?", params![id])?
///         .ok_or_else(|| ApiError::not_found(format!("no note {id}")))?;
///     Ok(Response::text(200, row.get::<String>("title")?))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code.
    pub status: u16,
    /// A stable, machine-readable code in snake_case, e.g. `not_found`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Per-field problems of a rejected body: field name to what is wrong with it.
    pub fields: BTreeMap<String, String>,
}

impl ApiError {
    /// An error with any status and code.
    ///
    /// ```
    /// use arkham_shard_sdk::ApiError;
    ///
    /// let error = ApiError::new(429, "too_many_requests", "try again in a minute");
    /// assert_eq!(error.to_string(), "429 too_many_requests: try again in a minute");
    /// ```
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// 400 `bad_request`.
    ///
    /// ```
    /// let error = arkham_shard_sdk::ApiError::bad_request("`limit` is not a number");
    /// assert_eq!((error.status, error.code.as_str()), (400, "bad_request"));
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// 404 `not_found`.
    ///
    /// ```
    /// let error = arkham_shard_sdk::ApiError::not_found("no note n1");
    /// assert_eq!((error.status, error.code.as_str()), (404, "not_found"));
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 409 with a specific code, e.g. `invalid_state`.
    ///
    /// ```
    /// let error = arkham_shard_sdk::ApiError::conflict("invalid_state", "already final");
    /// assert_eq!((error.status, error.code.as_str()), (409, "invalid_state"));
    /// ```
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 422 `validation_failed`; add the offending fields with [`ApiError::with_field`].
    ///
    /// ```
    /// let error = arkham_shard_sdk::ApiError::validation("the note is not valid");
    /// assert_eq!((error.status, error.code.as_str()), (422, "validation_failed"));
    /// ```
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(422, "validation_failed", message)
    }

    /// 500 `internal`.
    ///
    /// ```
    /// let error = arkham_shard_sdk::ApiError::internal("the stored note is not JSON");
    /// assert_eq!((error.status, error.code.as_str()), (500, "internal"));
    /// ```
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// Records what is wrong with one field of the request.
    ///
    /// ```
    /// use arkham_shard_sdk::ApiError;
    ///
    /// let error = ApiError::validation("the note is not valid")
    ///     .with_field("title", "required")
    ///     .with_field("due", "not a date");
    /// assert_eq!(error.fields.len(), 2);
    /// ```
    pub fn with_field(mut self, field: impl Into<String>, problem: impl Into<String>) -> Self {
        self.fields.insert(field.into(), problem.into());
        self
    }

    /// The JSON response for this error.
    ///
    /// ```
    /// use arkham_shard_sdk::ApiError;
    ///
    /// let response = ApiError::validation("bad").with_field("title", "required").into_response();
    /// assert_eq!(response.status, 422);
    /// let body: serde_json::Value = serde_json::from_slice(&response.body)?;
    /// assert_eq!(
    ///     body,
    ///     serde_json::json!({"error": {"code": "validation_failed", "message": "bad",
    ///         "fields": {"title": "required"}}})
    /// );
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".to_owned(), self.code.into());
        error.insert("message".to_owned(), self.message.into());
        if !self.fields.is_empty() {
            let fields = self
                .fields
                .into_iter()
                .map(|(field, problem)| (field, serde_json::Value::String(problem)))
                .collect();
            error.insert("fields".to_owned(), serde_json::Value::Object(fields));
        }
        let body = serde_json::json!({ "error": error });
        Response::bytes(
            self.status,
            "application/json",
            body.to_string().into_bytes(),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        error.into_response()
    }
}

impl From<db::Error> for ApiError {
    fn from(error: db::Error) -> Self {
        let status = match error {
            db::Error::Constraint(_) => 409,
            db::Error::Busy(_) => 503,
            db::Error::LimitExceeded(_) => 507,
            _ => 500,
        };
        let code = format!("database_{}", error.code());
        Self::new(status, &code, format!("database: {}", error.message()))
    }
}

impl From<storage::Error> for ApiError {
    fn from(error: storage::Error) -> Self {
        let status = match error {
            storage::Error::InvalidKey(_) => 400,
            storage::Error::LimitExceeded(_) => 507,
            // The frame's operator (or the manifest) withholds storage: nothing the client can
            // change, and it may come back.
            storage::Error::Denied(_) => 503,
            storage::Error::Io(_) => 500,
        };
        let code = format!("storage_{}", error.code());
        Self::new(status, &code, format!("storage: {}", error.message()))
    }
}

impl From<events::Error> for ApiError {
    fn from(error: events::Error) -> Self {
        let code = format!("events_{}", error.code());
        Self::new(500, &code, format!("events: {}", error.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let response = ApiError::validation("bad")
            .with_field("name", "required")
            .into_response();
        assert_eq!(response.status, 422);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "validation_failed", "message": "bad",
                "fields": {"name": "required"}}})
        );
    }

    #[test]
    fn request_query() {
        let request = Request::new(Method::Get, "/x?status=draft&q=a%20b");
        assert_eq!(request.path, "/x");
        assert_eq!(request.query_param("status"), Some("draft"));
        assert_eq!(request.query_param("q"), Some("a b"));
        assert_eq!(request.query_param("none"), None);
    }
}
