//! The rollout's HTTP routes, served next to `/metrics`:
//! - `GET /flags`: the flags in force, rollback reasons and gate inputs (read-only);
//! - `POST /admin/rollback` and `POST /admin/resume`: the kill switch, with
//!   `Authorization: Bearer <token>`, the token read from `[rollout] admin_token_file` at
//!   start-up. Without a token file these two answer 403: an unauthenticated switch that
//!   moves production traffic is not offered.

use super::{Latch, Rollout};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
struct Admin {
    rollout: Arc<Rollout>,
    token: Option<Arc<str>>,
}

type Answer = (StatusCode, axum::Json<serde_json::Value>);

/// The routes, with the admin token (if any) already read.
pub fn router(rollout: Arc<Rollout>, token: Option<String>) -> Router {
    let admin = Admin {
        rollout,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/flags", get(flags))
        .route("/admin/rollback", post(roll_back))
        .route("/admin/resume", post(resume))
        .with_state(admin)
}

async fn flags(State(admin): State<Admin>) -> axum::Json<serde_json::Value> {
    axum::Json(admin.rollout.status())
}

async fn roll_back(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    if let Err(denied) = authorize(&admin, &headers) {
        return denied;
    }
    admin.rollout.roll_back(Latch::Admin);
    (StatusCode::OK, axum::Json(json!({"rollback": true})))
}

async fn resume(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    if let Err(denied) = authorize(&admin, &headers) {
        return denied;
    }
    admin.rollout.resume("admin endpoint");
    (StatusCode::OK, axum::Json(json!({"rollback": false})))
}

fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<(), Answer> {
    let deny = |code, why: &str| Err((code, axum::Json(json!({"error": why}))));
    let Some(token) = &admin.token else {
        return deny(
            StatusCode::FORBIDDEN,
            "the admin endpoint is disabled: set [rollout] admin_token_file",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        deny(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}
