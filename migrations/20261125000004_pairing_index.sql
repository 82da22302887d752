-- (ext) The pairing lookup of a jarvis memory (an owner that is a user, not a session) asks
-- for the user's rows within a few seconds of a time. With only the single-column indexes
-- the planner walks created_at, and when writes are dense in time (a backfill of legacy
-- timestamps, a busy hour of mirroring) every lookup filters thousands of other users' rows:
-- a 100 000-memory backfill slowed down as it went. This index serves owner and window at
-- once. Session memories find theirs through memory_entries_session_id_idx.
CREATE INDEX memory_entries_user_created_idx ON memory_entries (user_id, created_at)
    WHERE session_id IS NULL;
