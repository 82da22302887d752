//! Reading payload fields into typed values, with errors that name the field (never its
//! value). A missing required field is `invalid_request`; a present one of the wrong type
//! or out of range is `validation_error`. `null` counts as absent.

use super::{ApiError, ErrorCode};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Identifiers (memory, session, user ids, tags) fit the schema's `varchar(64)`.
pub const MAX_ID_CHARS: usize = 64;

/// One JSON object of a request, and its path for error messages (`payload.filter`).
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, path: &'static str) -> Fields<'a> {
        Fields { map, path }
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn invalid_type(&self, key: &str, expected: &str) -> ApiError {
        let field = self.field(key);
        ApiError::new(
            ErrorCode::ValidationError,
            format!("{field} must be {expected}"),
        )
        .with("field", field)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// # Errors
    /// Missing: `invalid_request`. Not a string: `validation_error`.
    pub fn required_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str(key)?.ok_or_else(|| {
            let field = self.field(key);
            ApiError::invalid(format!("missing field: {field}")).with("field", field)
        })
    }

    /// # Errors
    /// Present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid_type(key, "a string")),
        }
    }

    /// A non-empty identifier of at most 64 characters.
    ///
    /// # Errors
    /// Present but not such a string.
    pub fn id(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => Ok(Some(s.to_owned())),
            Some(_) => Err(self.invalid_type(key, "a string of 1 to 64 characters")),
        }
    }

    /// # Errors
    /// Missing: `invalid_request`; otherwise as [`Fields::id`].
    pub fn required_id(&self, key: &str) -> Result<String, ApiError> {
        self.required_str(key)?;
        Ok(self.id(key)?.expect("present"))
    }

    /// A whole number in `min..=max`.
    ///
    /// # Errors
    /// Present but not such a number.
    pub fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        });
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid_type(key, &format!("a whole number from {min} to {max}"))),
        }
    }

    /// A finite number in `min..=max`.
    ///
    /// # Errors
    /// Present but not such a number.
    pub fn number(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.get(key).map(Value::as_f64) {
            None => Ok(None),
            Some(Some(n)) if n.is_finite() && n >= min && n <= max => Ok(Some(n)),
            Some(_) => Err(self.invalid_type(key, &format!("a number from {min} to {max}"))),
        }
    }

    /// # Errors
    /// Present but not a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid_type(key, "true or false")),
        }
    }

    /// # Errors
    /// Present but not an object.
    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid_type(key, "an object")),
        }
    }

    /// A nested object as fields of its own (`payload.filter`).
    ///
    /// # Errors
    /// Present but not an object.
    pub fn nested(&self, key: &str, path: &'static str) -> Result<Option<Fields<'a>>, ApiError> {
        Ok(self.object(key)?.map(|m| Fields::new(m, path)))
    }

    /// A list of identifiers (tags, ids): strings of 1 to 64 characters, at most `max` of
    /// them, duplicates removed, order kept.
    ///
    /// # Errors
    /// Present but not such a list.
    pub fn id_list(&self, key: &str, max: usize) -> Result<Option<Vec<String>>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || {
            self.invalid_type(
                key,
                &format!("a list of at most {max} strings of 1 to 64 characters"),
            )
        };
        let Value::Array(items) = v else {
            return Err(bad());
        };
        if items.len() > max {
            return Err(bad());
        }
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(Some(out))
    }

    /// An ISO-8601 / RFC 3339 timestamp with a zone (`2026-11-24T10:00:00Z`).
    ///
    /// # Errors
    /// Present but not such a timestamp.
    pub fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| self.invalid_type(key, "an ISO-8601 timestamp with a time zone")),
        }
    }
}
