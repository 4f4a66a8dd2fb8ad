/*
 * cluster 0.4 -> 0.5: comments that say what each object does now; role
 * commands see worker tokens; worker changes reload only the workers, and
 * alter_coordinator reloads the leaders only when listen changes
 */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.5'" to load this file. \quit

/*
 * No table changes, so a 0.5 library runs a database still at 0.4
 * (src/cluster.h).  docs/sql-reference.md quotes each of these comments,
 * and TAP 020_docs.pl checks that it does.
 */

/*
 * No COMMENT ON SCHEMA cluster: pg_dump would dump it, and a restore by the
 * database's owner (docs/operations.md) can't write it.  The extension's
 * own comment says what the schema holds.
 */

COMMENT ON ROLE cluster_admin IS
'may create coordinators, pumps and handlers, and manage its own; a member of cluster_worker';
COMMENT ON ROLE cluster_worker IS
'may call what workers and applications need: leases, instances, key-value store, publish, the status views, and the worker functions of handlers whose owners granted it';

COMMENT ON FUNCTION cluster.create_handler(text, text, regprocedure, text, int, int, interval, int, int) IS
'create a handler of a pump, owned by the caller and starting at the pump''s first event; its function (taking jsonb or cluster.event[]) runs the batches as the owner while none of its workers is connected';
COMMENT ON FUNCTION cluster.alter_handler(text, regprocedure, text, int, int, interval, int, boolean, int) IS
'change a handler''s settings (NULL keeps a setting, remove_function removes the function); the caller becomes its owner; cursor and state stay';
COMMENT ON FUNCTION cluster.drop_handler(text) IS
'drop a handler with its cursor, state, dead letters, worker registrations and tokens';
COMMENT ON FUNCTION cluster.reset_handler(text, text) IS
'move a handler''s cursor: ''start'' (every event again), ''end'' (past every event of the transactions that ended below the oldest one still running), or a timestamp (the events created from then on, in pump order)';
COMMENT ON FUNCTION cluster.kv_increment(text, interval) IS
'add one to a counter and return it; an absent or expired key starts at 1 and expires ttl later (later increments keep that expiry)';
COMMENT ON FUNCTION cluster.live_instances(interval) IS
'instances whose last heartbeat is within the last stale_after, by instance_id';

-------------------------------------------------------------------------
-- Role commands and worker tokens
-------------------------------------------------------------------------

/*
 * A worker token counts while its issuer may manage the handler's workers,
 * like a registration: REASSIGN OWNED moves the tokens a role issued, DROP
 * OWNED deletes them, and DROP ROLE is refused while the role issued a
 * token that is not revoked (a revoked one is history).  0.4 left them
 * out: a dropped issuer's token stopped counting, silently.
 */
CREATE OR REPLACE FUNCTION cluster._reassign_owned(roles regrole[], new_owner regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cluster.pump SET owner = new_owner WHERE owner = ANY (roles);
	UPDATE cluster.handler SET owner = new_owner WHERE owner = ANY (roles);
	UPDATE cluster.worker SET registered_by = new_owner WHERE registered_by = ANY (roles);
	UPDATE cluster.worker_token SET issued_by = new_owner WHERE issued_by = ANY (roles);
	UPDATE cluster.pump_grant SET granted_by = new_owner WHERE granted_by = ANY (roles);
	UPDATE cluster.worker_grant SET granted_by = new_owner WHERE granted_by = ANY (roles);
END
$$;

CREATE OR REPLACE FUNCTION cluster._drop_owned(roles regrole[], cascade boolean)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT p.id, p.name, p.source, h.name AS handler, h.owner AS handler_owner
		  FROM cluster.pump p JOIN cluster.handler h ON h.pump_id = p.id
		 WHERE p.owner = ANY (roles) AND NOT h.owner = ANY (roles)
		 LIMIT 1
	LOOP
		IF NOT cascade THEN
			RAISE EXCEPTION 'cannot drop cluster pump "%" because other objects depend on it', r.name
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = format('cluster handler "%s" of %s reads it.', r.handler, r.handler_owner),
					  HINT = 'Use DROP OWNED ... CASCADE to drop the dependent handlers too.';
		END IF;
	END LOOP;
	DELETE FROM cluster.handler WHERE owner = ANY (roles)
		OR pump_id IN (SELECT id FROM cluster.pump WHERE owner = ANY (roles));
	PERFORM cluster._drop_wake_triggers(ARRAY(SELECT id FROM cluster.pump WHERE owner = ANY (roles)));
	DELETE FROM cluster.pump WHERE owner = ANY (roles);
	DELETE FROM cluster.worker WHERE registered_by = ANY (roles);
	DELETE FROM cluster.worker_token WHERE issued_by = ANY (roles);
	DELETE FROM cluster.pump_grant WHERE grantee = ANY (roles) OR granted_by = ANY (roles);
	DELETE FROM cluster.worker_grant WHERE grantee = ANY (roles) OR granted_by = ANY (roles);
END
$$;

CREATE OR REPLACE FUNCTION cluster._role_in_use(role regrole)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT d FROM (
		SELECT format('owner of cluster pump "%s"', name) FROM cluster.pump WHERE owner = role
		UNION ALL
		SELECT format('owner of cluster handler "%s"', name) FROM cluster.handler WHERE owner = role
		UNION ALL
		SELECT format('registrant of a worker of cluster handler "%s"', h.name)
		  FROM cluster.worker w JOIN cluster.handler h ON h.id = w.handler_id WHERE w.registered_by = role
		UNION ALL
		SELECT format('issuer of a worker token of cluster handler "%s"', h.name)
		  FROM cluster.worker_token t JOIN cluster.handler h ON h.id = t.handler_id
		 WHERE t.issued_by = role AND t.revoked_at IS NULL
		UNION ALL
		SELECT format('privileges for cluster pump "%s"', p.name)
		  FROM cluster.pump_grant g JOIN cluster.pump p ON p.id = g.pump_id
		 WHERE role IN (g.grantee, g.granted_by)
		UNION ALL
		SELECT format('privileges for cluster handler "%s"', h.name)
		  FROM cluster.worker_grant g JOIN cluster.handler h ON h.id = g.handler_id
		 WHERE role IN (g.grantee, g.granted_by)
	) AS uses(d)
	LIMIT 1
$$;

-------------------------------------------------------------------------
-- Worker changes reload the workers, not the handlers
-------------------------------------------------------------------------

/*
 * A worker registering, a grant or a token changing made the leaders
 * reload every handler, which gives back every delivery in flight: one
 * worker joining sent all handlers' batches round again.  Now such a
 * change makes the leaders reread their workers only (src/wakeup.c).
 */
CREATE FUNCTION cluster._workers_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_workers_changed';
REVOKE ALL ON FUNCTION cluster._workers_changed() FROM PUBLIC;

DROP TRIGGER config_changed ON cluster.worker;
CREATE TRIGGER workers_changed AFTER INSERT OR DELETE OR TRUNCATE
	OR UPDATE OF address, secret, capacity, registered_by
	ON cluster.worker FOR EACH STATEMENT EXECUTE FUNCTION cluster._workers_changed();
DROP TRIGGER config_changed ON cluster.worker_grant;
CREATE TRIGGER workers_changed AFTER INSERT OR DELETE OR TRUNCATE ON cluster.worker_grant
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._workers_changed();
DROP TRIGGER config_changed ON cluster.worker_token;
CREATE TRIGGER workers_changed AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE
	ON cluster.worker_token FOR EACH STATEMENT EXECUTE FUNCTION cluster._workers_changed();

/*
 * alter_coordinator always writes listen (unchanged when NULL), so the
 * statement trigger made every call (a new lease_ttl, say) reload every
 * handler of the database and send its deliveries in flight again.  Only
 * a listen that really changes moves the leader now.
 */
DROP TRIGGER config_changed ON cluster.coordinator;
CREATE TRIGGER config_changed AFTER UPDATE OF listen ON cluster.coordinator
	FOR EACH ROW WHEN (OLD.listen IS DISTINCT FROM NEW.listen)
	EXECUTE FUNCTION cluster._config_changed();
