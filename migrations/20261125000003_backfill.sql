-- (ext) Backfill and reconciliation.
--
-- One legacy record can reach the orchestrator twice: through the proxy's mirror, as it
-- happens, and through `memshift backfill`, from the legacy store. The two cannot share ids
-- (a legacy reply names no id, and the agent stamps its own clock on what it stores), so a
-- `create` that names its `origin` is paired instead: the orchestrator looks for a row of
-- the other origin with the same owner, type and content within `match_window` seconds
-- that has no twin yet, and if it finds one the new row is stored as its twin, inactive.
-- Each row has at most one twin, so two identical legacy records stay two rows. A twin is
-- never returned, never embedded, and keeps its id, so repeating either write changes
-- nothing. `twin_of` is the id of the row it pairs with.
ALTER TABLE memory_entries ADD COLUMN origin varchar(16);
ALTER TABLE memory_entries ADD COLUMN twin_of varchar(64);
CREATE INDEX memory_entries_twin_of_idx ON memory_entries (twin_of) WHERE twin_of IS NOT NULL;

-- What each `memshift reconcile` found, for the daily report (`memshift report`). `counts`
-- holds the differences by class; no contents are stored here.
CREATE TABLE reconcile_runs (
    id            bigserial PRIMARY KEY,
    agent         varchar(64) NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    legacy_entities   bigint NOT NULL,
    orchestrator_entities bigint NOT NULL,
    counts        jsonb NOT NULL,
    repaired      bigint NOT NULL DEFAULT 0,
    repair_failed bigint NOT NULL DEFAULT 0
);
CREATE INDEX reconcile_runs_agent_finished ON reconcile_runs (agent, finished_at);
