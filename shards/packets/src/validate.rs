//! Turns request bodies and query strings into checked inputs, collecting every field's problem
//! into one 422 `validation_failed` error.

use std::collections::BTreeMap;

use arkham_shard_sdk::{ApiError, Request, time};
use serde_json::{Map, Value};

use crate::model::{ContentType, ExportFormat, Permission, Status, Visibility};

pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;
pub const ACTOR_MAX: usize = 200;
pub const CONTENT_ID_MAX: usize = 200;
pub const TITLE_MAX: usize = 500;
const QUERY_MAX: usize = 200;
const SUMMARY_MAX: usize = 1_000;
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

/// Checks a `POST /{id}/share` body; `now_millis` is the wall clock an expiry must pass.
pub fn new_share(request: &Request, now_millis: u64) -> Result<NewShare, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let shared_with = check.required_text(&body, "shared_with", ACTOR_MAX);
    let permissions =
        check.optional_word(&body, "permissions", Permission::parse, Permission::NAMES);
    let expires_at = check.optional_text(&body, "expires_at", 64, true).flatten();
    // Stored as UTC with milliseconds, so that it compares with the clock as text and as time.
    let expires_at = match expires_at.as_deref().map(parse_rfc3339_millis) {
        None => None,
        Some(None) => {
            check.fail(
                "expires_at",
                "must be an RFC 3339 timestamp, e.g. 2026-12-31T23:59:59Z",
            );
            None
        }
        Some(Some(millis)) => match u64::try_from(millis) {
            Ok(millis) if millis > now_millis => Some(time::rfc3339_from_unix_millis(millis)),
            _ => {
                check.fail("expires_at", "must be in the future");
                None
            }
        },
    };
    check.finish()?;
    Ok(NewShare {
        shared_with: shared_with.unwrap_or_default(),
        permissions: permissions.unwrap_or(Permission::View),
        expires_at,
    })
}

/// Reads the export format from a `{"format": ...}` body or `?format=`; JSON when neither says.
pub fn export_format(request: &Request) -> Result<ExportFormat, ApiError> {
    let mut check = Check::default();
    let mut format = None;
    if !request.body.iter().all(u8::is_ascii_whitespace) {
        let body = Body::parse(request)?;
        format = check.optional_word(&body, "format", ExportFormat::parse, ExportFormat::NAMES);
    }
    if format.is_none()
        && let Some(text) = request.query_param("format")
    {
        format = ExportFormat::parse(text);
        if format.is_none() {
            check.fail("format", &one_of(ExportFormat::NAMES));
        }
    }
    check.finish()?;
    Ok(format.unwrap_or(ExportFormat::Json))
}

/// Longest comment body, in characters.
pub const COMMENT_MAX: usize = 4_000;

/// Checks a `POST /shared/{token}/comments` body: `body` (required), `author` (optional).
pub fn new_comment(request: &Request) -> Result<(String, Option<String>), ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let text = check.required_text(&body, "body", COMMENT_MAX);
    let author = check.optional_text(&body, "author", ACTOR_MAX, false);
    check.finish()?;
    Ok((text.unwrap_or_default(), author.flatten()))
}

/// Checks a `POST /{id}/versions` body: its `changes_summary`.
pub fn new_version(request: &Request) -> Result<String, ApiError> {
    let body = Body::parse(request)?;
    let mut check = Check::default();
    let summary = check.required_text(&body, "changes_summary", SUMMARY_MAX);
    check.finish()?;
    Ok(summary.unwrap_or_default())
}

/// Who imports and from where: `?created_by=` and `?source=` of `POST /import` (the body is the
/// bundle itself).
pub fn import_options(request: &Request) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut check = Check::default();
    let mut read = |name: &str| {
        let text = request.query_param(name)?.trim();
        if text.is_empty() || text.chars().count() > ACTOR_MAX {
            check.fail(name, &format!("must be 1 to {ACTOR_MAX} characters"));
            return None;
        }
        Some(text.to_owned())
    };
    let created_by = read("created_by");
    let source = read("source");
    check.finish()?;
    Ok((created_by, source))
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

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into milliseconds since the Unix epoch;
/// `None` unless every field is in range.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let separators = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = bytes.get(19..).unwrap_or_default();
    let mut millis = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        // Milliseconds: further digits are dropped (truncated, never rounded up).
        for (index, digit) in fraction.iter().take(3).enumerate() {
            if index < count {
                millis += i64::from(digit - b'0') * [100, 10, 1][index];
            }
        }
        rest = fraction.get(count..).unwrap_or_default();
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2026-03-21T11:05:00.123+02:00"),
            Some(1_774_083_900_123)
        );
        assert_eq!(
            parse_rfc3339_millis("2000-02-29T00:00:00.1239Z"),
            Some(951_782_400_123)
        );
        assert_eq!(parse_rfc3339_millis("2026-13-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-02-30T23:59:59Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-12-31"), None);
        assert_eq!(parse_rfc3339_millis("2026-12-31T23:59:59"), None);
        assert_eq!(parse_rfc3339_millis("2026-12-31T23:59:59.Z"), None);
    }
}
