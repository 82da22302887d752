-- The Memory Orchestrator's schema, from the migration plan (../shared/specs/orchestrator-api.md),
-- with the extensions memshift needs. Applied by `memshift migrate` and, unless
-- `orchestrator.migrate_on_start = false`, by `memshift orchestrator` at start-up.
--
-- What is deliberately NOT here: the HNSW index over embeddings. Its dimension and model come
-- from the configuration (`[embedding]`), so the orchestrator creates it at start-up as a
-- partial expression index per (model, dimension). See `src/store/schema.rs`.

CREATE EXTENSION IF NOT EXISTS vector;

-- One conversation (or other kind of session). The legacy session_memory agent chooses its own
-- uuids, and the mirror carries them over, so session_id is caller-chosen text, not a serial.
CREATE TABLE sessions (
    session_id          varchar(64) PRIMARY KEY,
    user_id             varchar(64),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    ended_at            timestamptz,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    summary             text,
    is_archived         boolean NOT NULL DEFAULT false,
    session_type        varchar(32) NOT NULL,
    -- (ext) A hash of the write that created the row. A repeated create_session with the same
    -- session_id and the same fingerprint is a harmless retry; a different fingerprint is a
    -- conflict and is refused rather than silently overwriting.
    request_fingerprint text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE memory_entries (
    memory_id           varchar(64) PRIMARY KEY,
    session_id          varchar(64) REFERENCES sessions (session_id) ON DELETE CASCADE,
    -- (ext) jarvis memories belong to a user, not to a session.
    user_id             varchar(64),
    memory_type         varchar(32) NOT NULL,
    content             jsonb NOT NULL,
    -- The searchable text: what full-text search and the embedding worker read.
    text_content        text GENERATED ALWAYS AS (content ->> 'text') STORED,
    -- (ext) Its parsed form, stored: ranking reads it instead of parsing every matching
    -- text again at query time (the plan's to_tsvector('english', text_content), kept).
    text_search         tsvector GENERATED ALWAYS AS
                            (to_tsvector('english'::regconfig, COALESCE(content ->> 'text', ''))) STORED,
    source_agent        varchar(64),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    priority            integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    -- Soft delete: `delete` clears it; such rows are never returned but stay for audit and
    -- reconciliation. Expired rows are removed for good by the orchestrator's sweeper.
    is_active           boolean NOT NULL DEFAULT true,
    -- (ext) A caller's idempotency key, for writes that do not choose their memory_id.
    idempotency_key     varchar(128) UNIQUE,
    -- (ext) As sessions.request_fingerprint: tells a retry from a conflicting write.
    request_fingerprint text
);
CREATE INDEX memory_entries_session_id_idx ON memory_entries (session_id);
CREATE INDEX memory_entries_user_id_idx ON memory_entries (user_id);
CREATE INDEX memory_entries_memory_type_idx ON memory_entries (memory_type);
CREATE INDEX memory_entries_created_at_idx ON memory_entries (created_at);
-- Partial: only rows that can expire matter to the sweeper and to the expiry filter.
CREATE INDEX memory_entries_expires_at_idx ON memory_entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memory_entries_source_agent_idx ON memory_entries (source_agent);
CREATE INDEX memory_entries_priority_idx ON memory_entries (priority);
CREATE INDEX memory_entries_text_search_idx ON memory_entries USING gin (text_search);
CREATE INDEX memory_entries_content_idx ON memory_entries USING gin (content jsonb_path_ops);

CREATE TABLE memory_tags (
    tag_id      serial PRIMARY KEY,
    memory_id   varchar(64) NOT NULL REFERENCES memory_entries (memory_id) ON DELETE CASCADE,
    tag         varchar(64) NOT NULL,
    UNIQUE (memory_id, tag)
);
CREATE INDEX memory_tags_tag_idx ON memory_tags (tag);

-- One embedding per (memory, model). The column has no fixed dimension: the dimension belongs
-- to the model, which is configuration. Changing models adds rows under the new model name
-- (and a new index); it needs no migration and keeps the old vectors until they are dropped.
CREATE TABLE vector_embeddings (
    embedding_id    serial PRIMARY KEY,
    memory_id       varchar(64) NOT NULL REFERENCES memory_entries (memory_id) ON DELETE CASCADE,
    embedding       vector NOT NULL,
    embedding_model varchar(64) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (memory_id, embedding_model)
);

-- (ext) Entries waiting for an embedding under the configured model. A write inserts its row
-- in the same transaction as the entry, so no entry with text is ever forgotten; the worker
-- leases rows (next_attempt_at in the future), embeds them, and deletes them. A failure
-- pushes next_attempt_at back with exponential backoff and records the reason.
CREATE TABLE embedding_queue (
    memory_id       varchar(64) PRIMARY KEY REFERENCES memory_entries (memory_id) ON DELETE CASCADE,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX embedding_queue_next_attempt_idx ON embedding_queue (next_attempt_at);

CREATE TABLE user_profiles (
    user_id      varchar(64) PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    profile_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    preferences  jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active    boolean NOT NULL DEFAULT true
);

CREATE TABLE agent_states (
    state_id    serial PRIMARY KEY,
    agent_id    varchar(64) NOT NULL,
    session_id  varchar(64) REFERENCES sessions (session_id) ON DELETE SET NULL,
    state_data  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    UNIQUE (agent_id, session_id)
);

CREATE TABLE memory_relationships (
    relationship_id   serial PRIMARY KEY,
    source_memory_id  varchar(64) NOT NULL REFERENCES memory_entries (memory_id) ON DELETE CASCADE,
    target_memory_id  varchar(64) NOT NULL REFERENCES memory_entries (memory_id) ON DELETE CASCADE,
    relationship_type varchar(32) NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_memory_id, target_memory_id, relationship_type)
);

-- Who touched which memory, when, and whether it worked. No foreign key: the log outlives
-- the entries it mentions. request_data holds the request's id and action only, never the
-- memory's content (users' memories are private data). Switch off with
-- `orchestrator.access_log = false`. Large deployments partition it by time.
CREATE TABLE memory_access_logs (
    log_id        bigserial PRIMARY KEY,
    memory_id     varchar(64),
    session_id    varchar(64),
    agent_id      varchar(64),
    operation     varchar(16) NOT NULL,
    "timestamp"   timestamptz NOT NULL DEFAULT now(),
    request_data  jsonb,
    success       boolean NOT NULL,
    error_message text,
    ip_address    varchar(45)
);
CREATE INDEX memory_access_logs_memory_id_idx ON memory_access_logs (memory_id);
CREATE INDEX memory_access_logs_timestamp_idx ON memory_access_logs ("timestamp");
