//! The reload decision ([`super::judge`]), without a file or a proxy.

use super::*;

const VALID: &[u8] = b"[agents.session]\nstage = \"dualwrite\"\n";

fn open(_: &FlagsFile) -> Result<(), String> {
    Ok(())
}

fn judged(bytes: Result<&[u8], &str>, seen: Seen, force: bool) -> Reload {
    let bytes = bytes.map(<[u8]>::to_vec).map_err(str::to_owned);
    judge(bytes, seen, force, "flags.toml", open)
}

const NOTHING: Seen = Seen {
    applied: None,
    refused: None,
};

#[test]
fn a_new_valid_file_is_applied_and_the_same_one_again_changes_nothing() {
    let Reload::Apply { sum, .. } = judged(Ok(VALID), NOTHING, false) else {
        panic!("applied");
    };
    let applied = Seen {
        applied: Some(sum),
        refused: None,
    };
    assert!(matches!(
        judged(Ok(VALID), applied, false),
        Reload::Unchanged
    ));
    assert!(matches!(
        judged(Ok(VALID), applied, true),
        Reload::Apply { .. }
    ));
}

#[test]
fn an_empty_file_is_one_being_written() {
    assert!(matches!(judged(Ok(b" \n\t"), NOTHING, true), Reload::Empty));
    assert!(matches!(judged(Ok(b""), NOTHING, false), Reload::Empty));
}

#[test]
fn an_unreadable_file_is_reported_once_unless_forced() {
    let first = judged(Err("gone"), NOTHING, false);
    assert!(matches!(first, Reload::Unreadable { report: true, .. }));
    let refused = Seen {
        applied: None,
        refused: Some(Refused::Unreadable),
    };
    let again = judged(Err("gone"), refused, false);
    assert!(matches!(again, Reload::Unreadable { report: false, .. }));
    let forced = judged(Err("gone"), refused, true);
    assert!(matches!(forced, Reload::Unreadable { report: true, .. }));
}

#[test]
fn an_invalid_file_is_refused_once_unless_forced() {
    let bad: &[u8] = b"[agents.session]\nstage = \"sideways\"\n";
    let Reload::Invalid { sum, error } = judged(Ok(bad), NOTHING, false) else {
        panic!("invalid");
    };
    assert!(error.contains("sideways"), "{error}");
    let refused = Seen {
        applied: None,
        refused: Some(Refused::Content(sum)),
    };
    assert!(matches!(judged(Ok(bad), refused, false), Reload::Unchanged));
    assert!(matches!(
        judged(Ok(bad), refused, true),
        Reload::Invalid { .. }
    ));
    let not_text = judged(Ok(&[0xff, 0xfe]), NOTHING, false);
    assert!(matches!(not_text, Reload::Invalid { error, .. } if error == "not UTF-8 text"));
}

#[test]
fn a_closed_gate_refuses_a_valid_file() {
    let gated = judge(Ok(VALID.to_vec()), NOTHING, false, "flags.toml", |_| {
        Err("session: comparisons".to_owned())
    });
    assert!(matches!(gated, Reload::Gated { closed, .. } if closed == "session: comparisons"));
}
