//! (ext) `record_mismatch`: a proxy's sample of a shadow comparison that differed, kept
//! for the daily report.

use super::service::Service;
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::MismatchRecord;
use serde_json::{Value, json};

/// Differing paths per sample at most (the proxy sends at most 20).
const MAX_PATHS: usize = 64;

pub async fn record(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let f = Fields::new(&req.payload, "payload");
    let agent = f.required_id("agent")?;
    let action = f.required_id("action")?;
    let key = match f.str("key")? {
        Some(k) if k.chars().count() <= 256 => Some(k.to_owned()),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "payload.key must be at most 256 characters",
            )
            .with("field", "payload.key"));
        }
        None => None,
    };
    let paths = f.id_list("paths", MAX_PATHS)?.unwrap_or_default();
    let request = req.payload.get("request").cloned().ok_or_else(|| {
        ApiError::invalid("missing field: payload.request").with("field", "payload.request")
    })?;
    let redacted = match req.payload.get("redacted") {
        Some(Value::Bool(b)) => *b,
        None => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "payload.redacted must be a boolean",
            )
            .with("field", "payload.redacted"));
        }
    };
    let record = MismatchRecord {
        agent,
        action,
        key,
        paths,
        request,
        legacy_reply: req.payload.get("legacy_reply").cloned(),
        shadow_reply: req.payload.get("shadow_reply").cloned(),
        redacted,
    };
    let id = s.store.record_mismatch(&record).await?;
    Ok(json!({"id": id}))
}
