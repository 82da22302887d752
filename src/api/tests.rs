use super::*;

fn parse_err(body: &str) -> (Echo, ApiError) {
    *parse_request(body.as_bytes()).expect_err(body)
}

#[test]
fn a_full_envelope_parses() {
    let (echo, req) = parse_request(
        br#"{"action": "read", "session_id": "s1", "payload": {"memory_id": "m"}, "request_id": "r1", "timestamp": "2026-11-24T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(req.action, Action::Read);
    assert_eq!(req.session_id.as_deref(), Some("s1"));
    assert_eq!(req.request_id.as_deref(), Some("r1"));
    assert_eq!(echo.request_id, json!("r1"));
    assert_eq!(req.payload["memory_id"], json!("m"));
}

#[test]
fn envelope_mistakes_are_invalid_request_with_what_can_be_echoed() {
    let table: &[(&str, ErrorCode, Value)] = &[
        ("{not json", ErrorCode::InvalidRequest, Value::Null),
        ("[1, 2]", ErrorCode::InvalidRequest, Value::Null),
        (
            r#"{"request_id": "r"}"#,
            ErrorCode::InvalidRequest,
            json!("r"),
        ),
        (
            r#"{"action": 7, "request_id": "r"}"#,
            ErrorCode::InvalidRequest,
            json!("r"),
        ),
        (
            r#"{"action": "explode", "request_id": "r"}"#,
            ErrorCode::InvalidRequest,
            json!("r"),
        ),
        (
            r#"{"action": "read", "payload": [], "request_id": "r"}"#,
            ErrorCode::InvalidRequest,
            json!("r"),
        ),
        (
            r#"{"action": "read", "session_id": 5, "request_id": "r"}"#,
            ErrorCode::InvalidRequest,
            json!("r"),
        ),
    ];
    for (body, code, request_id) in table {
        let (echo, err) = parse_err(body);
        assert_eq!(err.code, *code, "{body}");
        assert_eq!(echo.request_id, *request_id, "{body}");
    }
}

#[test]
fn replies_have_the_envelope_of_the_spec() {
    let echo = Echo {
        action: json!("read"),
        request_id: json!("r9"),
    };
    let ok: Value = serde_json::from_slice(&success(&echo, json!({"x": 1}))).unwrap();
    assert_eq!(ok["status"], "success");
    assert_eq!(ok["action"], "read");
    assert_eq!(ok["request_id"], "r9");
    assert_eq!(ok["data"]["x"], 1);
    let ts = ok["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "{ts}"
    );
    let err =
        ApiError::invalid("missing field: payload.memory_id").with("field", "payload.memory_id");
    let bad: Value = serde_json::from_slice(&error(&echo, &err)).unwrap();
    assert_eq!(bad["status"], "error");
    assert_eq!(bad["action"], "read");
    assert_eq!(bad["error"]["code"], "invalid_request");
    assert_eq!(bad["error"]["details"]["field"], "payload.memory_id");
}

#[test]
fn fields_name_the_field_and_never_the_value() {
    let payload =
        json!({"priority": 11, "content": "secret diary", "tags": ["a", "a", "b"], "ttl": null});
    let f = Fields::new(payload.as_object().unwrap(), "payload");
    let err = f.int("priority", 1, 10).unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationError);
    assert_eq!(err.details["field"], "payload.priority");
    let err = f.object("content").unwrap_err();
    assert!(!err.message.contains("secret"), "{}", err.message);
    assert_eq!(f.id_list("tags", 10).unwrap().unwrap(), ["a", "b"]);
    assert_eq!(f.number("ttl", 0.0, 1e9).unwrap(), None, "null is absent");
    let err = f.required_str("memory_id").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
}

#[test]
fn fingerprints_ignore_key_order_only() {
    let a = json!({"content": {"text": "hi", "role": "user"}, "priority": 5});
    let b = json!({"priority": 5, "content": {"role": "user", "text": "hi"}});
    let c = json!({"priority": 5, "content": {"role": "user", "text": "hi!"}});
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(fingerprint(&a), fingerprint(&c));
    assert_eq!(fingerprint(&a).len(), 64);
}
