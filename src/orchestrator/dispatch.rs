//! The async side of a request: parse, handle under the concurrency limit and the deadline,
//! reply, count, and write the access log.

use super::service::Service;
use super::socket::{Incoming, ToSocket};
use crate::api::{self, Action, ApiError, ErrorCode, Request};
use crate::store::AccessLogRecord;
use crate::wakeup::WakeSender;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info_span, warn};

/// Takes requests off the socket thread's channel until it closes (a drain), running at
/// most `max_concurrent` at once; each runs on `tracker`, so shutdown can wait for them.
pub async fn run(
    mut requests: mpsc::Receiver<Incoming>,
    service: Arc<Service>,
    replies: WakeSender<ToSocket>,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(service.settings.max_concurrent));
    while let Some(incoming) = requests.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (service, replies) = (service.clone(), replies.clone());
        tracker.spawn(async move {
            handle(&service, incoming, &replies).await;
            drop(permit);
        });
    }
}

async fn handle(service: &Arc<Service>, incoming: Incoming, replies: &WakeSender<ToSocket>) {
    let deadline = incoming.received + service.settings.request_deadline;
    let (echo, req, result) = match api::parse_request(&incoming.body) {
        Ok((echo, req)) => {
            let span = info_span!(
                "request",
                action = req.action.name(),
                request_id = req.request_id
            );
            let result = run_action(service, &req, deadline).instrument(span).await;
            (echo, Some(req), result)
        }
        Err(rejected) => {
            let (echo, err) = *rejected;
            (echo, None, Err(err))
        }
    };
    let action = req.as_ref().map(|r| r.action);
    let request_id = req.as_ref().and_then(|r| r.request_id.as_deref());
    let code = result.as_ref().err().map(|e| e.code);
    // What the access log needs of the reply, taken before the reply's data is moved into
    // its body.
    let created_id = result
        .as_ref()
        .ok()
        .and_then(|d| d.get("memory_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = match result {
        Ok(data) => api::success(&echo, data),
        Err(err) => {
            if matches!(err.code, ErrorCode::StorageError | ErrorCode::InternalError) {
                warn!(
                    action = action.map(Action::name),
                    request_id,
                    error = err.message,
                    "request failed"
                );
            }
            api::error(&echo, &err)
        }
    };
    debug!(
        action = action.map(Action::name),
        request_id,
        outcome = code.map_or("success", ErrorCode::as_label),
        "reply"
    );
    // Counted before the reply leaves, so a client that has its reply also finds it counted.
    service
        .metrics
        .request(action, code, incoming.received.elapsed().as_secs_f64());
    replies.send(ToSocket::Reply {
        envelope: incoming.envelope,
        body,
    });
    if let Some(req) = &req {
        access_log(
            service,
            req,
            created_id.as_deref(),
            code,
            incoming.peer.as_deref(),
        )
        .await;
    }
}

/// Runs the action on a task of its own, so that every request gets exactly one reply: a
/// handler that panics is answered `internal_error`, and one past the deadline is aborted
/// and answered `storage_error`. Aborting stops memshift's side only: a statement already
/// sent may still finish in PostgreSQL (bounded by `database.statement_timeout`), so a
/// write answered `deadline_exceeded` may have been applied — which is why writes are
/// idempotent and safe to retry with the same id.
async fn run_action(
    service: &Arc<Service>,
    req: &Request,
    deadline: std::time::Instant,
) -> Result<Value, ApiError> {
    let task = {
        let (service, req) = (service.clone(), req.clone());
        tokio::spawn(async move { super::actions::handle(&service, &req).await }.in_current_span())
    };
    let abort = task.abort_handle();
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => {
            error!("the handler panicked");
            Err(ApiError::new(
                ErrorCode::InternalError,
                "the request could not be handled",
            ))
        }
        Err(_) => {
            abort.abort();
            Err(deadline_exceeded(service))
        }
    }
}

fn deadline_exceeded(service: &Service) -> ApiError {
    ApiError::new(
        ErrorCode::StorageError,
        "the request did not finish within its deadline",
    )
    .with("reason", "deadline_exceeded")
    .with(
        "deadline_ms",
        service.settings.request_deadline.as_millis() as u64,
    )
    .with("retryable", true)
}

/// One `memory_access_logs` row for requests about one memory, after the reply has gone.
async fn access_log(
    service: &Service,
    req: &Request,
    created_id: Option<&str>,
    code: Option<ErrorCode>,
    peer: Option<&str>,
) {
    if !service.settings.access_log {
        return;
    }
    let operation = match req.action {
        Action::Create | Action::Read | Action::Update | Action::Delete => req.action.name(),
        _ => return,
    };
    let from_request = req.payload.get("memory_id").and_then(Value::as_str);
    let Some(memory_id) = created_id.or(from_request) else {
        return;
    };
    let record = AccessLogRecord {
        memory_id,
        session_id: req.session_id.as_deref(),
        agent_id: req.payload.get("source_agent").and_then(Value::as_str),
        operation,
        request_id: req.request_id.as_deref(),
        success: code.is_none(),
        error_code: code.map(ErrorCode::as_label),
        ip_address: peer,
    };
    if let Err(e) = service.store.log_access(&record).await {
        service.metrics.access_log_failures.inc();
        debug!(error = %e, "access log row not written");
    }
}
