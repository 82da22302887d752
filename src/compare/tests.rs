use super::*;
use serde_json::json;

fn run(profile: Profile, legacy: Value, shadow: Value, raced: bool) -> Verdict {
    compare(profile, legacy.to_string().as_bytes(), &shadow, raced)
}

#[test]
fn timestamps_are_masked_and_everything_else_counts() {
    let legacy = json!({"status": "success", "context": [{"role": "user", "content": "hi", "timestamp": "2026-11-23T21:48:04.818728"}], "request_id": ""});
    let shadow = json!({"status": "success", "context": [{"role": "user", "content": "hi", "timestamp": "2026-11-23T20:48:04"}], "request_id": ""});
    assert_eq!(
        run(Profile::SessionMemory, legacy.clone(), shadow, false).outcome,
        Outcome::Match
    );
    let other = json!({"status": "success", "context": [{"role": "user", "content": "hello", "timestamp": "x"}], "request_id": ""});
    let v = run(Profile::SessionMemory, legacy.clone(), other.clone(), false);
    assert_eq!(v.outcome, Outcome::Mismatch);
    assert_eq!(v.paths, ["context[0].content"]);
    // The same difference while the key had writes in flight is a race.
    assert_eq!(
        run(Profile::SessionMemory, legacy, other, true).outcome,
        Outcome::Race
    );
}

#[test]
fn bytes_do_not_matter_parsed_json_does() {
    let legacy = br#"{"status": "ok", "memories": [{"timestamp": 1.5, "memory": "Gr\u00fc\u00dfe \ud83c\udf89"}]}"#;
    let shadow = json!({"status": "ok", "memories": [{"timestamp": 9.0, "memory": "Grüße 🎉"}]});
    assert_eq!(
        compare(Profile::JarvisMemory, legacy, &shadow, false).outcome,
        Outcome::Match
    );
    assert_eq!(
        compare(Profile::JarvisMemory, b"not json", &shadow, false).outcome,
        Outcome::LegacyError
    );
}

#[test]
fn missing_and_extra_items_and_keys_are_named() {
    let legacy = json!({"status": "ok", "memories": [{"timestamp": 1, "memory": "a"}]});
    let shadow = json!({"status": "ok", "memories": [{"timestamp": 1, "memory": "a"}, {"timestamp": 2, "memory": "b"}], "extra": true});
    let v = run(Profile::JarvisMemory, legacy, shadow, false);
    assert_eq!(v.outcome, Outcome::Mismatch);
    assert_eq!(v.paths, ["memories.length", "extra"]);
}

#[test]
fn an_expired_legacy_session_is_drift_not_mismatch() {
    let legacy = json!({"status": "success", "context": [], "request_id": ""});
    let shadow = json!({"status": "success", "context": [{"role": "user", "content": "hi", "timestamp": "t"}], "request_id": ""});
    assert_eq!(
        run(Profile::SessionMemory, legacy, shadow, false).outcome,
        Outcome::LegacyDrift
    );
}

#[test]
fn a_summary_cut_by_an_earlier_read_is_tolerated_but_other_changes_are_not() {
    let shadow = json!({"last_updated": 2.0, "conversation_summary": "Conversation Summary:\nTotal queries: 1\n", "errors_encountered": [], "key_decisions": [{"timestamp": 1.0, "decision": "d"}]});
    let cut = json!({"last_updated": 1.0, "conversation_summary": "Conversation...", "errors_encountered": [], "key_decisions": [{"timestamp": 3.0, "decision": "d"}]});
    assert_eq!(
        run(Profile::ContextualMemory, cut, shadow.clone(), false).outcome,
        Outcome::Match
    );
    let wrong = json!({"last_updated": 1.0, "conversation_summary": "Something else...", "errors_encountered": [], "key_decisions": [{"timestamp": 3.0, "decision": "d"}]});
    let v = run(Profile::ContextualMemory, wrong, shadow, false);
    assert_eq!(v.outcome, Outcome::Mismatch);
    assert_eq!(v.paths, ["conversation_summary"]);
}

#[test]
fn redaction_keeps_the_shape_and_the_protocol_words_only() {
    let reply = json!({"status": "success", "context": [{"role": "user", "content": "secret", "n": 4, "ok": true, "none": null}], "request_id": "r"});
    assert_eq!(
        redact(&reply),
        json!({"status": "success", "context": [{"role": "<redacted>", "content": "<redacted>", "n": "<redacted>", "ok": true, "none": null}], "request_id": "<redacted>"})
    );
}

#[test]
fn the_same_keys_in_another_order_are_a_mismatch() {
    // jsonb once re-sorted `{"text", "type", "n"}` into `{"n", "text", "type"}`: the client
    // sees other bytes, so the comparison must not call it a match.
    let legacy = br#"{"status": "ok", "memories": [{"timestamp": 1.5, "memory": {"text": "t", "type": "note", "n": 1}}]}"#;
    let reordered = json!({"status": "ok", "memories": [{"timestamp": 2.5, "memory": {"n": 1, "text": "t", "type": "note"}}]});
    let v = compare(Profile::JarvisMemory, legacy, &reordered, false);
    assert_eq!(v.outcome, Outcome::Mismatch);
    assert_eq!(v.paths, ["memories[0].memory.<key order>"]);
    // Masking a volatile value keeps its place: the order of the masked reply still counts.
    let same = json!({"status": "ok", "memories": [{"timestamp": 2.5, "memory": {"text": "t", "type": "note", "n": 1}}]});
    assert_eq!(
        compare(Profile::JarvisMemory, legacy, &same, false).outcome,
        Outcome::Match
    );
    let swapped = json!({"status": "ok", "memories": [{"memory": {"text": "t", "type": "note", "n": 1}, "timestamp": 2.5}]});
    assert_eq!(
        compare(Profile::JarvisMemory, legacy, &swapped, false).paths,
        ["memories[0].<key order>"]
    );
}
