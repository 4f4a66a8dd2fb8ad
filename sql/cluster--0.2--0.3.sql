/* cluster 0.2 -> 0.3: the pump at the speed of the table */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.3'" to load this file. \quit

-------------------------------------------------------------------------
-- A batch as rows
-------------------------------------------------------------------------

/*
 * A handler function may take its batch as cluster.event[] instead of
 * jsonb: the events' stored values, the payload as it is stored, with no
 * JSON document built around them.
 */
CREATE TYPE cluster.event AS (
	id			bigint,
	stream		text,
	key			text,
	payload		jsonb,
	headers		jsonb,
	created_at	timestamptz,
	attempt		int
);
COMMENT ON TYPE cluster.event IS
'an event as a handler function taking cluster.event[] gets it: its values and its attempt number (1 the first time)';

CREATE OR REPLACE FUNCTION cluster._check_handler_function(fn regprocedure,
	runs_as regrole DEFAULT current_user::regrole)
RETURNS void LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p pg_proc;
BEGIN
	IF fn IS NULL THEN
		RETURN;
	END IF;
	SELECT * INTO p FROM pg_proc WHERE oid = fn;
	IF p.pronargs <> 1
	   OR p.proargtypes[0] NOT IN ('jsonb'::regtype, 'cluster.event[]'::regtype)
	   OR p.prorettype NOT IN ('void'::regtype, 'jsonb'::regtype) OR p.proretset
	   OR p.prokind <> 'f' THEN
		RAISE EXCEPTION 'function % can''t be a handler function', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'A handler function takes one argument, the batch of events as jsonb or as cluster.event[], and returns void or jsonb (a state patch).';
	END IF;
	IF NOT has_function_privilege(runs_as, fn, 'EXECUTE') THEN
		RAISE EXCEPTION 'permission denied for function %', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The handler function runs as the handler''s owner, %s.', runs_as);
	END IF;
END
$$;

-------------------------------------------------------------------------
-- The user state in its own column
-------------------------------------------------------------------------

/*
 * Each round's commit rewrites the handler's progress (cursor, done,
 * retry, counters, last_error): kept small in "state", it no longer drags
 * the user state along.  The user state changes only when a patch changes
 * it; a row update that leaves it alone keeps its stored (TOASTed) value.
 */
ALTER TABLE cluster.handler ADD COLUMN user_state jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN cluster.handler.user_state IS 'the state the handler''s patches build; read cluster.handler_state()';
COMMENT ON COLUMN cluster.handler.state IS
'the handler''s progress: cursor, done ranges above it, retries, counters, last_error';
DO $$
BEGIN
	ALTER TABLE cluster.handler ALTER COLUMN user_state SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	NULL;						/* a server built without lz4: pglz */
END
$$;
ALTER TABLE cluster.handler ALTER COLUMN state
	SET DEFAULT '{"cursor": ["0", "0"], "done": [], "retry": {}, "counters": {}}';

/*
 * A handler row in the shape of 0.2 and before (a restore of an older
 * dump, this update) has its user state inside "state": move it out.
 */
CREATE FUNCTION cluster._handler_split_user()
RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF jsonb_typeof(NEW.state -> 'user') = 'object' THEN
		NEW.user_state := NEW.state -> 'user';
	END IF;
	NEW.state := NEW.state - 'user';
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cluster._handler_split_user() IS
'a handler row from 0.2 or before: its user state moves from state.user to user_state (trigger)';
CREATE TRIGGER split_user BEFORE INSERT OR UPDATE OF state ON cluster.handler
	FOR EACH ROW WHEN (NEW.state ? 'user') EXECUTE FUNCTION cluster._handler_split_user();
UPDATE cluster.handler SET state = state WHERE state ? 'user';

CREATE OR REPLACE FUNCTION cluster.handler_state(name text)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owner regrole;
	result jsonb;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	SELECT h.owner, h.user_state INTO owner, result FROM cluster.handler h WHERE h.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	ELSIF NOT pg_has_role(current_user, owner, 'USAGE') THEN
		RAISE EXCEPTION 'permission denied for handler "%"', $1
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('It is owned by %s.', owner);
	END IF;
	RETURN result;
END
$$;

/* A patch applies to the user state it is given (before 0.3: to doc.user). */
COMMENT ON FUNCTION cluster._apply_patch(jsonb, jsonb) IS
'apply a checked patch to a user state';

/* the engines commit a round with one prepared statement of their own (src/handler.c) */
DROP FUNCTION cluster._commit_handler(int, int, text, bigint, jsonb, jsonb, jsonb, bigint, bigint, bigint, text);

/* the engines of a database wait for this update; wake its scheduler */
UPDATE cluster.coordinator SET name = name WHERE false;

REVOKE ALL ON FUNCTION cluster._handler_split_user() FROM PUBLIC;
