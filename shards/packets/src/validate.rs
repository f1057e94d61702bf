//! Turns request bodies and query strings into checked inputs, collecting every field's problem
//! into one 422 `validation_failed` error.

use std::collections::BTreeMap;

use arkham_shard_sdk::{ApiError, Request};
use serde_json::{Map, Value};

use crate::model::{ContentType, Permission, Status, Visibility};

const NAME_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 10_000;
const ACTOR_MAX: usize = 200;
const CONTENT_ID_MAX: usize = 200;
const TITLE_MAX: usize = 500;
const QUERY_MAX: usize = 200;
pub const LIMIT_DEFAULT: i64 = 50;
pub const LIMIT_MAX: i64 = 500;

/// A checked `POST /` body.
#[derive(Debug)]
pub struct NewPacket {
    pub name: String,
    pub description: String,
    pub visibility: Visibility,
    pub created_by: String,
    pub metadata: Map<String, Value>,
}

/// A checked `PUT /{id}` body: only the fields present change.
#[derive(Debug, Default)]
pub struct PacketChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub metadata: Option<Map<String, Value>>,
}

/// A checked `POST /{id}/contents` body.
#[derive(Debug)]
pub struct NewContent {
    pub content_type: ContentType,
    pub content_id: String,
    pub content_title: Option<String>,
    pub order_num: Option<i64>,
    pub added_by: String,
}

/// A checked `POST /{id}/share` body.
#[derive(Debug)]
pub struct NewShare {
    pub shared_with: String,
    pub permissions: Permission,
    pub expires_at: Option<String>,
}

/// Checked listing filters and pagination.
#[derive(Debug)]
pub struct ListFilter {
    /// `None` lists every packet that is not archived.
    pub status: Option<Status>,
    pub visibility: Option<Visibility>,
    pub created_by: Option<String>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

pub fn new_packet(request: &Request) -> Result<NewPacket, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let name = check.required_text(&body, "name", NAME_MAX);
    let description = check.optional_text(&body, "description", DESCRIPTION_MAX, true);
    let visibility = check.optional_word(&body, "visibility", Visibility::parse, Visibility::NAMES);
    let created_by = check.optional_text(&body, "created_by", ACTOR_MAX, false);
    let metadata = check.optional_object(&body, "metadata");
    check.finish()?;
    Ok(NewPacket {
        name: name.unwrap_or_default(),
        description: description.flatten().unwrap_or_default(),
        visibility: visibility.unwrap_or(Visibility::Private),
        created_by: created_by.flatten().unwrap_or_else(|| "system".to_owned()),
        metadata: metadata.unwrap_or_default(),
    })
}

pub fn packet_changes(request: &Request) -> Result<PacketChanges, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let name = if body.0.contains_key("name") {
        check.required_text(&body, "name", NAME_MAX)
    } else {
        None
    };
    let description = check.optional_text(&body, "description", DESCRIPTION_MAX, true);
    let visibility = check.optional_word(&body, "visibility", Visibility::parse, Visibility::NAMES);
    let metadata = check.optional_object(&body, "metadata");
    check.finish()?;
    let changes = PacketChanges {
        name,
        description: description.map(Option::unwrap_or_default),
        visibility,
        metadata,
    };
    if changes.name.is_none()
        && changes.description.is_none()
        && changes.visibility.is_none()
        && changes.metadata.is_none()
    {
        return Err(ApiError::validation(
            "nothing to update: send at least one of name, description, visibility, metadata",
        ));
    }
    Ok(changes)
}

pub fn new_content(request: &Request) -> Result<NewContent, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let content_type = check.required_word(
        &body,
        "content_type",
        ContentType::parse,
        ContentType::NAMES,
    );
    let content_id = check.required_text(&body, "content_id", CONTENT_ID_MAX);
    let content_title = check.optional_text(&body, "content_title", TITLE_MAX, true);
    let order_num = check.optional_order(&body, "order_num");
    let added_by = check.optional_text(&body, "added_by", ACTOR_MAX, false);
    check.finish()?;
    match (content_type, content_id) {
        (Some(content_type), Some(content_id)) => Ok(NewContent {
            content_type,
            content_id,
            content_title: content_title.flatten(),
            order_num,
            added_by: added_by.flatten().unwrap_or_else(|| "system".to_owned()),
        }),
        // `finish` fails whenever a required field is missing.
        _ => Err(ApiError::validation("the content is incomplete")),
    }
}

pub fn new_share(request: &Request) -> Result<NewShare, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let shared_with = check.required_text(&body, "shared_with", ACTOR_MAX);
    let permissions =
        check.optional_word(&body, "permissions", Permission::parse, Permission::NAMES);
    let expires_at = check.optional_text(&body, "expires_at", 64, true).flatten();
    if let Some(expires_at) = &expires_at
        && !is_rfc3339(expires_at)
    {
        check.fail(
            "expires_at",
            "must be an RFC 3339 timestamp, e.g. 2026-12-31T23:59:59Z",
        );
    }
    check.finish()?;
    Ok(NewShare {
        shared_with: shared_with.unwrap_or_default(),
        permissions: permissions.unwrap_or(Permission::View),
        expires_at,
    })
}

/// Reads the listing query parameters; `fixed_status` (from `/status/{status}`) wins over
/// `?status=`.
pub fn list_filter(
    request: &Request,
    fixed_status: Option<Status>,
) -> Result<ListFilter, ApiError> {
    let mut check = Check::default();
    let status = match fixed_status {
        Some(status) => Some(status),
        None => request.query_param("status").and_then(|text| {
            let status = Status::parse(text);
            if status.is_none() {
                check.fail("status", &one_of(Status::NAMES));
            }
            status
        }),
    };
    let visibility = request.query_param("visibility").and_then(|text| {
        let visibility = Visibility::parse(text);
        if visibility.is_none() {
            check.fail("visibility", &one_of(Visibility::NAMES));
        }
        visibility
    });
    let created_by = request
        .query_param("created_by")
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    let q = request
        .query_param("q")
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    if q.as_ref().is_some_and(|q| q.chars().count() > QUERY_MAX) {
        check.fail("q", &format!("must be at most {QUERY_MAX} characters"));
    }
    let limit = check.query_int(request, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX);
    let offset = check.query_int(request, "offset", 0, 0, i64::MAX);
    check.finish()?;
    Ok(ListFilter {
        status,
        visibility,
        created_by,
        q,
        limit,
        offset,
    })
}

/// Reads an optional `?status=` for `/count`.
pub fn count_status(request: &Request) -> Result<Option<Status>, ApiError> {
    match request.query_param("status") {
        None | Some("") => Ok(None),
        Some(text) => Status::parse(text).map(Some).ok_or_else(|| {
            ApiError::validation("invalid query parameter")
                .with_field("status", one_of(Status::NAMES))
        }),
    }
}

/// A JSON object body.
struct Body(Map<String, Value>);

impl Body {
    fn parse(request: &Request) -> Result<Self, ApiError> {
        match request.json::<Value>()? {
            Value::Object(object) => Ok(Self(object)),
            _ => Err(ApiError::validation(
                "the request body must be a JSON object",
            )),
        }
    }
}

/// Collects field problems; `finish` turns them into one error.
#[derive(Default)]
struct Check {
    fields: BTreeMap<String, String>,
}

impl Check {
    fn fail(&mut self, field: &str, problem: &str) {
        self.fields.insert(field.to_owned(), problem.to_owned());
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
        let mut error = ApiError::validation(format!("invalid fields: {}", names.join(", ")));
        error.fields = self.fields;
        Err(error)
    }

    /// A non-blank string of at most `max` characters, trimmed; records `required` if absent.
    fn required_text(&mut self, body: &Body, field: &str, max: usize) -> Option<String> {
        match body.0.get(field) {
            None | Some(Value::Null) => {
                self.fail(field, "required");
                None
            }
            Some(value) => self.text(field, value, max, false),
        }
    }

    /// `None` if absent, `Some(None)` if null and `nullable`, else the checked string.
    fn optional_text(
        &mut self,
        body: &Body,
        field: &str,
        max: usize,
        nullable: bool,
    ) -> Option<Option<String>> {
        match body.0.get(field) {
            None => None,
            Some(Value::Null) if nullable => Some(None),
            Some(Value::Null) => {
                self.fail(field, "must not be null");
                None
            }
            // A nullable text may also be empty: it is free text, not a name.
            Some(value) => self.text(field, value, max, nullable).map(Some),
        }
    }

    fn text(
        &mut self,
        field: &str,
        value: &Value,
        max: usize,
        allow_empty: bool,
    ) -> Option<String> {
        let Value::String(text) = value else {
            self.fail(field, "must be a string");
            return None;
        };
        let text = text.trim();
        if text.is_empty() && !allow_empty {
            self.fail(field, "must not be empty");
            return None;
        }
        if text.chars().count() > max {
            self.fail(field, &format!("must be at most {max} characters"));
            return None;
        }
        Some(text.to_owned())
    }

    fn required_word<T>(
        &mut self,
        body: &Body,
        field: &str,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Option<T> {
        if matches!(body.0.get(field), None | Some(Value::Null)) {
            self.fail(field, "required");
            return None;
        }
        self.optional_word(body, field, parse, names)
    }

    fn optional_word<T>(
        &mut self,
        body: &Body,
        field: &str,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Option<T> {
        match body.0.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                let parsed = parse(text);
                if parsed.is_none() {
                    self.fail(field, &one_of(names));
                }
                parsed
            }
            Some(_) => {
                self.fail(field, &one_of(names));
                None
            }
        }
    }

    fn optional_object(&mut self, body: &Body, field: &str) -> Option<Map<String, Value>> {
        match body.0.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(object)) => Some(object.clone()),
            Some(_) => {
                self.fail(field, "must be a JSON object");
                None
            }
        }
    }

    fn optional_order(&mut self, body: &Body, field: &str) -> Option<i64> {
        match body.0.get(field) {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_i64() {
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Some(n),
                _ => {
                    self.fail(field, "must be a whole number from 0 to 2147483647");
                    None
                }
            },
        }
    }

    fn query_int(
        &mut self,
        request: &Request,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let Some(text) = request.query_param(name).filter(|text| !text.is_empty()) else {
            return default;
        };
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                let problem = if max == i64::MAX {
                    format!("must be a whole number of at least {min}")
                } else {
                    format!("must be a whole number from {min} to {max}")
                };
                self.fail(name, &problem);
                default
            }
        }
    }
}

fn one_of(names: &[&str]) -> String {
    format!("must be one of: {}", names.join(", "))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with plausible field ranges.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|part| part.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    let shape = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19);
    if !shape
        || !(1..=12).contains(&number(5..7))
        || !(1..=31).contains(&number(8..10))
        || number(11..13) > 23
        || number(14..16) > 59
        || number(17..19) > 60
    {
        return false;
    }
    let mut rest = bytes.get(19..).unwrap_or_default();
    if let Some((b'.', fraction)) = rest.split_first() {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = fraction.get(count..).unwrap_or_default();
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2026-12-31T23:59:59Z"));
        assert!(is_rfc3339("2026-12-31T23:59:59.123+02:00"));
        assert!(!is_rfc3339("2026-13-31T23:59:59Z"));
        assert!(!is_rfc3339("2026-12-31"));
        assert!(!is_rfc3339("2026-12-31T23:59:59"));
        assert!(!is_rfc3339("2026-12-31T23:59:59.Z"));
    }
}
