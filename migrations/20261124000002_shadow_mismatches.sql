-- (ext) Samples of shadow comparisons that found a real difference (outcome `mismatch`),
-- written by the proxies through the orchestrator's `record_mismatch` action: the input of
-- the daily report. Contents are redacted by the proxy unless `[shadow] record_contents` is
-- on; `paths` (the differing field paths) never carry contents. The orchestrator's sweeper
-- keeps at most `mismatch_retention` of history and `mismatch_max_rows` rows.
CREATE TABLE shadow_mismatches (
    id            bigserial PRIMARY KEY,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    agent         varchar(64) NOT NULL,
    action        varchar(64) NOT NULL,
    key           varchar(256),
    paths         text[] NOT NULL,
    request       jsonb NOT NULL,
    legacy_reply  jsonb,
    shadow_reply  jsonb,
    redacted      boolean NOT NULL
);
CREATE INDEX shadow_mismatches_recorded_at ON shadow_mismatches (recorded_at);
CREATE INDEX shadow_mismatches_agent_action ON shadow_mismatches (agent, action, recorded_at);
