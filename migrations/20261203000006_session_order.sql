-- session_memory keeps 100 sessions in memory and deletes the oldest past them: whether it
-- has pushed a session out is the creation time of the 100th session of its type created
-- after it (`batch_read`'s `legacy_sessions_kept`, `create`'s `legacy_session_expiry.kept`).
CREATE INDEX sessions_type_created_idx ON sessions (session_type, created_at);
