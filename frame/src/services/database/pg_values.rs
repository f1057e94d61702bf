//! PostgreSQL values and errors: the five WIT value types bound as parameters and read from
//! result columns, and SQLSTATEs mapped to the WIT's error variants.

use super::pg_sql;
use crate::bindings::database::{Error, Value};
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

/// A NULL parameter of no declared type, so PostgreSQL infers it from where it is used (an
/// `int8` NULL would not go into a `bytea` column).
pub(super) struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// `sql` with `$n` placeholders, keyed by its parameter types: sqlx caches a prepared statement
/// by its text alone, and the same text bound with other types must not reuse it.
pub(super) fn prepare_sql(sql: &str, params: &[Value]) -> Result<String, Error> {
    let mut text = pg_sql::rewrite_placeholders(sql, params.len())?;
    if !params.is_empty() {
        text.push_str("\n/* arkham:");
        text.extend(params.iter().map(|p| match p {
            Value::Null => 'n',
            Value::Integer(_) => 'i',
            Value::Real(_) => 'r',
            Value::Text(_) => 't',
            Value::Blob(_) => 'b',
        }));
        text.push_str(" */");
    }
    Ok(text)
}

pub(super) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Postgres, PgArguments>,
    params: Vec<Value>,
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for param in params {
        query = match param {
            Value::Null => query.bind(UntypedNull),
            Value::Integer(v) => query.bind(v),
            Value::Real(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    query
}

pub(super) fn param_types(params: &[Value]) -> Vec<PgTypeInfo> {
    params
        .iter()
        .map(|p| match p {
            Value::Null => <UntypedNull as sqlx::Type<Postgres>>::type_info(),
            Value::Integer(_) => <i64 as sqlx::Type<Postgres>>::type_info(),
            Value::Real(_) => <f64 as sqlx::Type<Postgres>>::type_info(),
            Value::Text(_) => <String as sqlx::Type<Postgres>>::type_info(),
            Value::Blob(_) => <Vec<u8> as sqlx::Type<Postgres>>::type_info(),
        })
        .collect()
}

/// Reads column `i` as one of the five WIT types, checking its size before copying it.
pub(super) fn read_value(row: &PgRow, i: usize, value_limit: usize) -> Result<Value, Error> {
    let raw = row.try_get_raw(i).map_err(map_error)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_string();
    let column = row.columns().get(i).map_or("?", |c| c.name()).to_string();
    let len = raw.as_bytes().map_or(0, <[u8]>::len);
    if len > value_limit {
        return Err(Error::LimitExceeded(format!(
            "column `{column}` holds a value of {len} bytes, past the value limit of \
             {value_limit} bytes (`database.max_value_bytes`)"
        )));
    }
    let decode =
        |e: sqlx::Error| Error::Other(format!("cannot read column `{column}` ({type_name}): {e}"));
    Ok(match type_name.as_str() {
        "INT8" => Value::Integer(row.try_get::<i64, _>(i).map_err(decode)?),
        "INT4" => Value::Integer(row.try_get::<i32, _>(i).map_err(decode)?.into()),
        "INT2" => Value::Integer(row.try_get::<i16, _>(i).map_err(decode)?.into()),
        "OID" => Value::Integer(
            row.try_get::<sqlx::postgres::types::Oid, _>(i)
                .map_err(decode)?
                .0
                .into(),
        ),
        "FLOAT8" => Value::Real(row.try_get::<f64, _>(i).map_err(decode)?),
        "FLOAT4" => Value::Real(row.try_get::<f32, _>(i).map_err(decode)?.into()),
        "BOOL" => Value::Integer(row.try_get::<bool, _>(i).map_err(decode)?.into()),
        "NUMERIC" => Value::Real(numeric_to_f64(raw.as_bytes().unwrap_or(&[])).ok_or_else(
            || {
                Error::InvalidSql(format!(
                    "column `{column}` is a NUMERIC that does not fit a REAL: cast it \
                     (`CAST(… AS BIGINT)` or `AS TEXT`)"
                ))
            },
        )?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "UNKNOWN" => {
            Value::Text(row.try_get_unchecked::<String, _>(i).map_err(decode)?)
        }
        "JSON" => Value::Text(
            String::from_utf8(raw.as_bytes().unwrap_or(&[]).to_vec())
                .map_err(|e| decode(sqlx::Error::Decode(e.into())))?,
        ),
        "JSONB" => {
            // Binary JSONB is a version byte (1) and the text.
            let bytes = raw.as_bytes().unwrap_or(&[]);
            Value::Text(
                String::from_utf8(bytes.get(1..).unwrap_or(&[]).to_vec())
                    .map_err(|e| decode(sqlx::Error::Decode(e.into())))?,
            )
        }
        "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i).map_err(decode)?),
        "VOID" => Value::Null,
        other => {
            return Err(Error::InvalidSql(format!(
                "column `{column}` has type {other}, which is none of the portable types \
                 (INTEGER, REAL, TEXT, BLOB): cast it to text (`CAST({column} AS TEXT)`)"
            )));
        }
    })
}

/// PostgreSQL's binary NUMERIC (base-10000 digits) as the nearest `f64`; `None` for NaN or
/// infinity or a malformed value.
fn numeric_to_f64(bytes: &[u8]) -> Option<f64> {
    let word = |i: usize| -> Option<u16> {
        let b = bytes.get(i * 2..i * 2 + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16;
    let sign = word(2)?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    let mut value = 0f64;
    for k in 0..ndigits {
        let digit = f64::from(word(4 + k)?);
        value += digit * 10_000f64.powi(i32::from(weight) - k as i32);
    }
    Some(if negative { -value } else { value })
}

/// The prefix of a statement-cancel error (57014), recognised by the time bound in `postgres.rs`.
pub(super) const CANCELED: &str = "canceled:";

/// Maps a sqlx error to what the shard sees, by SQLSTATE.
pub(super) fn map_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let message = db.message().to_string();
            let class = code.get(..2).unwrap_or("");
            match (code.as_str(), class) {
                ("42501", _) => Error::Denied(format!(
                    "{message}: shards may use only their own schema, without privileged \
                     functions, roles or server files"
                )),
                ("0A000", _) if message.contains("cached plan") => Error::InvalidSql(message),
                ("0A000", _) => Error::Denied(message),
                ("57014", _) => Error::LimitExceeded(format!("{CANCELED} {message}")),
                // A serialization failure, a deadlock, a lock not available; no connection slot
                // free for the role (53300: every frame of a deployment holding its share) or
                // the server starting or stopping (57P03): worth trying again.
                ("40001" | "40P01" | "55P03" | "53300" | "57P03", _) => Error::Busy(message),
                ("42883", _) | ("42704", _) if names_privileged(&message) => {
                    Error::Denied(format!("{message}: not available to shards"))
                }
                ("58P01" | "58P02", _) => Error::Denied(message),
                (_, "23") => Error::Constraint(message),
                (_, "42") | (_, "22") => Error::InvalidSql(message),
                (_, "53" | "54") => Error::LimitExceeded(message),
                (_, "25") => Error::InvalidSql(message),
                _ => Error::Other(message),
            }
        }
        sqlx::Error::PoolTimedOut => {
            Error::Busy("no database connection became free in time".to_string())
        }
        _ => Error::Other(error.to_string()),
    }
}

/// Whether an "undefined function/object" message is about something privileged that is
/// merely not installed (`dblink`, untrusted languages): the shard is refused, not mistaken.
fn names_privileged(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "dblink",
        "plpython",
        "plperlu",
        "pltclu",
        "language c",
        "lo_import",
        "lo_export",
        "pg_read",
        "pg_ls_",
        "pg_stat_file",
        "adminpack",
        "postgres_fdw",
        "file_fdw",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_decode_to_reals() {
        // 12.5 = digits [12, 5000], weight 0, dscale 1.
        let bytes = [0u8, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88];
        assert_eq!(numeric_to_f64(&bytes), Some(12.5));
        let negative = [0u8, 1, 0, 0, 0x40, 0, 0, 0, 0, 3];
        assert_eq!(numeric_to_f64(&negative), Some(-3.0));
        let nan = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(numeric_to_f64(&nan), None);
        assert_eq!(numeric_to_f64(&[1]), None);
    }
}
