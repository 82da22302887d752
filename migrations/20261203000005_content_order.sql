-- (ext) A memory's content is kept as its writer sent it, key order included.
--
-- The legacy agents are Python: a dict keeps its keys in insertion order, and their clients
-- see the bytes `json.dumps` writes from it. A jarvis memory `{"text", "type", "n"}` must
-- come back from the orchestrator as `{"text", "type", "n"}`, not in jsonb's order (by
-- length, then bytes: `{"n", "text", "type"}`), or a live answer is not the agent's.
--
-- So `content` becomes `json`, which stores the text as given and is the one source of
-- truth; `content_doc` is its `jsonb` form, generated, for what needs jsonb (equality when
-- pairing twins, the GIN index). Being generated, it can never disagree with `content`.
-- The searchable text is still `content ->> 'text'` (the same for both types, except that
-- with a key given twice json answers the last occurrence, as Python's `json.loads` does).
-- Writers send the JSON text as a text parameter cast to `json`; a `jsonb` parameter would
-- already have lost the order.
--
-- Rows written before this migration keep jsonb's order: it was lost when they were
-- written. Changing the type rewrites the table once.

DROP INDEX memory_entries_content_idx;
DROP INDEX memory_entries_text_search_idx;
ALTER TABLE memory_entries DROP COLUMN text_search;
ALTER TABLE memory_entries DROP COLUMN text_content;
ALTER TABLE memory_entries ALTER COLUMN content TYPE json USING content::json;
ALTER TABLE memory_entries
    ADD COLUMN content_doc jsonb GENERATED ALWAYS AS (content::jsonb) STORED,
    ADD COLUMN text_content text GENERATED ALWAYS AS (content ->> 'text') STORED,
    ADD COLUMN text_search tsvector GENERATED ALWAYS AS
        (to_tsvector('english'::regconfig, COALESCE(content ->> 'text', ''))) STORED;
CREATE INDEX memory_entries_text_search_idx ON memory_entries USING gin (text_search);
CREATE INDEX memory_entries_content_idx ON memory_entries USING gin (content_doc jsonb_path_ops);
