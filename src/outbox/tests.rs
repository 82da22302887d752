use super::*;
use serde_json::json;

fn op(n: u32) -> MirrorOp {
    MirrorOp::CreateMemory {
        session_id: None,
        user_id: Some("u".into()),
        memory_type: "interaction".into(),
        content: json!({"n": n}),
        source_agent: "test".into(),
        memory_id: None,
    }
}

fn entry(key: &str, n: u32) -> NewEntry {
    NewEntry {
        key: key.into(),
        action: "add_memory",
        op: op(n),
        accepted_at: Utc::now(),
    }
}

fn open(dir: &tempfile::TempDir) -> Outbox {
    Outbox::open(&Outbox::path(dir.path(), "a"), Durability::Full).unwrap()
}

fn ids(heads: &[Entry]) -> Vec<i64> {
    heads.iter().map(|e| e.id).collect()
}

#[test]
fn only_each_keys_oldest_entry_is_eligible_and_busy_keys_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&dir);
    o.append(&[entry("a", 1), entry("b", 2), entry("a", 3), entry("c", 4)])
        .unwrap();
    let now = Utc::now();
    assert_eq!(ids(&o.heads(now, 10, |_| false).unwrap()), vec![1, 2, 4]);
    assert_eq!(ids(&o.heads(now, 10, |k| k == "b").unwrap()), vec![1, 4]);
    assert_eq!(ids(&o.heads(now, 1, |_| false).unwrap()), vec![1]);
    o.settle(&[Settled::Delivered { id: 1 }], now).unwrap();
    assert_eq!(ids(&o.heads(now, 10, |_| false).unwrap()), vec![2, 3, 4]);
    assert_eq!(o.heads(now, 10, |_| false).unwrap()[1].op, op(3));
}

#[test]
fn a_retried_head_holds_back_its_key_until_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&dir);
    o.append(&[entry("a", 1), entry("a", 2), entry("b", 3)])
        .unwrap();
    let now = Utc::now();
    let later = now + chrono::Duration::seconds(5);
    let retry = Settled::Retry {
        id: 1,
        attempts: 1,
        retry_at: later,
        error: "storage_error: x".into(),
    };
    o.settle(&[retry], now).unwrap();
    // Entry 2 must not overtake entry 1.
    assert_eq!(ids(&o.heads(now, 10, |_| false).unwrap()), vec![3]);
    assert_eq!(
        o.next_retry(now).unwrap(),
        Some(millis(later.timestamp_millis()))
    );
    let heads = o.heads(later, 10, |_| false).unwrap();
    assert_eq!(ids(&heads), vec![1, 3]);
    assert_eq!(heads[0].attempts, 1);
    let s = o.stats(now).unwrap();
    assert_eq!((s.pending, s.retrying, s.dead), (3, 1, 0));
}

#[test]
fn dead_letters_step_aside_and_retry_dead_puts_them_back_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&dir);
    o.append(&[entry("a", 1), entry("a", 2)]).unwrap();
    let now = Utc::now();
    let dead = Settled::Dead {
        id: 1,
        attempts: 1,
        reason: "rejected: validation_error".into(),
    };
    o.settle(&[dead], now).unwrap();
    assert_eq!(ids(&o.heads(now, 10, |_| false).unwrap()), vec![2]);
    let letters = o.dead_letters(10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "rejected: validation_error");
    assert_eq!(letters[0].operation, "create");
    assert_eq!(o.stats(now).unwrap().dead, 1);
    assert_eq!(o.retry_dead(Some(&[7])).unwrap(), 0);
    assert_eq!(o.retry_dead(None).unwrap(), 1);
    let heads = o.heads(now, 10, |_| false).unwrap();
    assert_eq!(ids(&heads), vec![1]);
    assert_eq!(heads[0].attempts, 0);
    assert_eq!(o.stats(now).unwrap().dead, 0);
}

#[test]
fn entries_and_the_epoch_survive_reopening_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path(dir.path(), "a");
    let (epoch, first) = {
        let mut o = open(&dir);
        o.append(&[entry("a", 1), entry("a", 2)]).unwrap();
        o.settle(&[Settled::Delivered { id: 2 }], Utc::now())
            .unwrap();
        (o.op_id(0), o.op_id(1))
    };
    let mut o = Outbox::open(&path, Durability::Normal).unwrap();
    assert_eq!(o.op_id(0), epoch);
    assert_eq!(o.op_id(1), first);
    o.append(&[entry("a", 3)]).unwrap();
    // Id 2 was delivered and deleted; it is not handed out again.
    assert_eq!(ids(&o.heads(Utc::now(), 10, |_| false).unwrap()), vec![1]);
    o.settle(&[Settled::Delivered { id: 1 }], Utc::now())
        .unwrap();
    assert_eq!(ids(&o.heads(Utc::now(), 10, |_| false).unwrap()), vec![3]);
    // A different file is a different epoch.
    let other = Outbox::<MirrorOp>::open(&Outbox::path(dir.path(), "b"), Durability::Full).unwrap();
    assert_ne!(other.op_id(1), first);
    let existing = Outbox::<MirrorOp>::open_existing(&path).unwrap();
    assert_eq!(existing.op_id(1), first);
}

#[test]
fn dropped_writes_are_counted_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&dir);
    let at = Utc::now();
    o.record_dropped(
        &[("s1".into(), "outbox_full"), ("s1".into(), "outbox_full")],
        at,
    )
    .unwrap();
    o.record_dropped(&[("s2".into(), "outbox_error")], at)
        .unwrap();
    let mut d = o.dropped(10).unwrap();
    d.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        d.iter()
            .map(|d| (d.key.as_str(), d.reason.as_str(), d.count))
            .collect::<Vec<_>>(),
        vec![("s1", "outbox_full", 2), ("s2", "outbox_error", 1)]
    );
    assert_eq!(o.stats(at).unwrap().dropped, 3);
}

#[test]
fn a_file_that_is_not_an_outbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sqlite");
    assert!(Outbox::<MirrorOp>::open_existing(&missing).is_err());
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); CREATE TABLE meta (name TEXT, value TEXT); INSERT INTO meta VALUES ('schema', '99'), ('epoch', 'e');")
        .unwrap();
    let err = Outbox::<MirrorOp>::open_existing(&other)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("format 99"), "{err}");
}

#[test]
fn one_deliverer_per_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = Outbox::path(dir.path(), "a");
    assert!(!DeliveryLock::is_held(&path));
    let lock = DeliveryLock::acquire(&path).unwrap();
    assert!(DeliveryLock::is_held(&path));
    let err = DeliveryLock::acquire(&path).unwrap_err();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(lock);
    assert!(!DeliveryLock::is_held(&path));
    DeliveryLock::acquire(&path).unwrap();
}

#[test]
fn the_kept_counts_match_a_full_count_through_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&dir);
    let now = Utc::now();
    let full = |o: &Outbox| -> (u64, u64) {
        o.conn
            .query_row(
                "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                        count(*) FILTER (WHERE dead_at IS NOT NULL) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let kept = |o: &Outbox| {
        let s = o.stats(now).unwrap();
        (s.pending, s.dead)
    };
    o.append(
        &(0..10)
            .map(|i| entry(&format!("k{}", i % 3), i))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(kept(&o), (10, 0));
    let dead = |id| Settled::Dead {
        id,
        attempts: 1,
        reason: "x".into(),
    };
    let retry = Settled::Retry {
        id: 3,
        attempts: 1,
        retry_at: now,
        error: "y".into(),
    };
    o.settle(
        &[Settled::Delivered { id: 1 }, dead(2), retry, dead(4)],
        now,
    )
    .unwrap();
    assert_eq!(kept(&o), full(&o));
    assert_eq!(kept(&o), (7, 2));
    o.retry_dead(Some(&[2])).unwrap();
    assert_eq!(kept(&o), (8, 1));
    o.settle(&[dead(5), Settled::Delivered { id: 4 }], now)
        .unwrap();
    assert_eq!(kept(&o), full(&o));
    o.retry_dead(None).unwrap();
    assert_eq!(kept(&o), full(&o));
    assert_eq!(kept(&o), (8, 0));
}
