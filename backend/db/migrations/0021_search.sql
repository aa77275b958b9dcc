-- Search (issue #15 section 6): GET /api/v1/search over machines, jobs, monitors and traces
-- (backend.repo.search). Two indexes per kind:
--
-- - a stored tsvector column (search_doc) with a GIN index, built with the 'simple' config
--   (lower-cased, nothing stemmed or dropped as a stop word: identifiers, flags and paths stay
--   what they are) from the text with its punctuation turned into spaces (search_words), so
--   "train_llama.py" is the words train, llama, py and the query "llama.py" is the phrase
--   llama <-> py. Weights: A the name, B the command line, C the parameters.
-- - a trigram GIN index (pg_trgm) on the name, for a part of a name (ILIKE '%lam%').
--
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it; the
-- embedded PostgreSQL 18 and Debian's postgresql-15 both ship it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The words of a text as search indexes them: each run of punctuation and white space becomes
-- one space, the rest is kept (letters of any script, digits). Bounded, so that no text makes a
-- tsvector over its 1 MB limit. backend.repo.search runs each query term through it too.
CREATE FUNCTION search_words(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
    RETURN regexp_replace(left(t, 65536), '[[:punct:][:space:]]+', ' ', 'g');

-- What of a job's parameters is searched: each argument as "key=value" (argv parsed, and the
-- parameters read from each config file) and each config file's path. Never the environment
-- (envVars) nor a config file's content: what is searchable is what the job list shows.
CREATE FUNCTION search_job_parameters(p jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (
        SELECT coalesce(string_agg(part, ' '), '') FROM (
            SELECT a.key || '=' || (a.value #>> '{}') AS part
            FROM jsonb_each(CASE WHEN jsonb_typeof(p -> 'parameterData') = 'object'
                                 THEN p -> 'parameterData' ELSE '{}' END) AS a
            UNION ALL
            SELECT concat_ws(' ', f ->> 'configFilePath', (
                       SELECT string_agg(c.key || '=' || (c.value #>> '{}'), ' ')
                       FROM jsonb_each(CASE WHEN jsonb_typeof(f -> 'parameterData') = 'object'
                                            THEN f -> 'parameterData' ELSE '{}' END) AS c))
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p -> 'configFiles') = 'array'
                                           THEN p -> 'configFiles' ELSE '[]' END) AS f
            WHERE jsonb_typeof(f) = 'object'
        ) AS parts
    );

ALTER TABLE machines ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', search_words(hostname)), 'A')
    || setweight(to_tsvector('simple', search_words(id)), 'B')) STORED;
CREATE INDEX machines_search_idx ON machines USING gin (search_doc);
CREATE INDEX machines_hostname_trgm_idx ON machines USING gin (hostname gin_trgm_ops);

ALTER TABLE jobs ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', search_words(job_name)), 'A')
    || setweight(to_tsvector('simple', search_words(command_line)), 'B')
    || setweight(to_tsvector('simple', search_words(search_job_parameters(parameters))), 'C'))
    STORED;
CREATE INDEX jobs_search_idx ON jobs USING gin (search_doc);
CREATE INDEX jobs_name_trgm_idx ON jobs USING gin (job_name gin_trgm_ops);

ALTER TABLE monitors ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', search_words(display_name)), 'A')
    || setweight(to_tsvector('simple', search_words(monitor_type)), 'B')) STORED;
CREATE INDEX monitors_search_idx ON monitors USING gin (search_doc);
CREATE INDEX monitors_name_trgm_idx ON monitors USING gin (display_name gin_trgm_ops);

ALTER TABLE trace_jobs ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', search_words(trace_name)), 'A')) STORED;
CREATE INDEX trace_jobs_search_idx ON trace_jobs USING gin (search_doc);
CREATE INDEX trace_jobs_name_trgm_idx ON trace_jobs USING gin (trace_name gin_trgm_ops);

-- A name asked for exactly comes first, whatever else matches: found by these, newest first.
CREATE INDEX jobs_name_lower_idx ON jobs (lower(job_name), start_time);
CREATE INDEX monitors_name_lower_idx ON monitors (lower(display_name), create_time);
-- The newest matches of a query are its candidates (backend.repo.search): monitors by age.
CREATE INDEX monitors_create_idx ON monitors (create_time);
