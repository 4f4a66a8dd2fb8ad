/* cluster 0.1 -> 0.2: what pumps and handlers use is protected like PostgreSQL's own dependencies */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.2'" to load this file. \quit

/*
 * What a drop took from the pumps and handlers of this database: a pump's
 * source table or one of its mapped columns, a handler's function.  Without
 * CASCADE the drop is refused, naming the pump or handler; with it, a pump
 * goes with its handlers and a handler loses its function (it keeps its
 * workers and cursor), each with a NOTICE.  Called by cluster._on_sql_drop()
 * as the extension's owner, inside the sql_drop event trigger: a refusal
 * is returned (message, detail, hint) for it to raise, so that the error
 * reads as PostgreSQL's own, without a PL/pgSQL context.
 */
CREATE FUNCTION cluster._protect_dropped(cascade boolean,
	OUT message text, OUT detail text, OUT hint text)
RETURNS SETOF record LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT p.id, p.name, d.object_type, d.object_identity,
			   (SELECT count(*) FROM cluster.handler h WHERE h.pump_id = p.id) AS handlers
		  FROM pg_event_trigger_dropped_objects() d
		  JOIN cluster.pump p ON p.source = d.objid
		 WHERE d.classid = 'pg_catalog.pg_class'::regclass
		   AND (d.objsubid = 0 OR
				d.address_names[3] IN (p.id_column, p.txid_column, p.payload_column,
									   p.key_column, p.headers_column, p.created_at_column))
	LOOP
		IF NOT cascade THEN
			RETURN QUERY SELECT format('cannot drop %s %s because other objects depend on it',
									   r.object_type, r.object_identity),
								format('cluster pump "%s" reads it.', r.name),
								'Drop the pump first with cluster.drop_pump(), or use DROP ... CASCADE to drop the pump and its handlers too.';
			RETURN;
		END IF;
		RAISE NOTICE 'drop cascades to cluster pump "%" and its % handler(s)', r.name, r.handlers;
		DELETE FROM cluster.handler WHERE pump_id = r.id;
		DELETE FROM cluster.pump WHERE id = r.id;
	END LOOP;

	FOR r IN
		SELECT h.id, h.name, d.object_identity
		  FROM pg_event_trigger_dropped_objects() d
		  JOIN cluster.handler h ON h.function = d.objid
		 WHERE d.classid = 'pg_catalog.pg_proc'::regclass
	LOOP
		IF NOT cascade THEN
			RETURN QUERY SELECT format('cannot drop function %s because other objects depend on it',
									   r.object_identity),
								format('cluster handler "%s" calls it.', r.name),
								'Give the handler another function with cluster.alter_handler() first, or use DROP ... CASCADE to leave the handler without one.';
			RETURN;
		END IF;
		RAISE NOTICE 'cluster handler "%" no longer has a function', r.name
			USING DETAIL = 'Its workers still get its events; without a connected worker, its events wait.';
		UPDATE cluster.handler SET function = NULL WHERE id = r.id;
	END LOOP;
END
$$;

CREATE FUNCTION cluster._on_sql_drop()
RETURNS event_trigger LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_on_sql_drop';
COMMENT ON FUNCTION cluster._on_sql_drop() IS
'refuse to drop what a pump or handler uses unless CASCADE (event trigger)';
CREATE EVENT TRIGGER cluster_dependencies ON sql_drop
	EXECUTE FUNCTION cluster._on_sql_drop();

/*
 * REASSIGN OWNED and DROP OWNED treat pumps, handlers, worker registrations
 * and grants as owned objects: reassigned, or dropped (pumps with their
 * handlers, as a CASCADE would; grants revoked).  Neither statement fires
 * event triggers: the module's ProcessUtility hook calls these, after
 * REASSIGN OWNED and before DROP OWNED (so that a table dropped with its
 * owner's pump is no longer in use).
 */
CREATE FUNCTION cluster._reassign_owned(roles regrole[], new_owner regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cluster.pump SET owner = new_owner WHERE owner = ANY (roles);
	UPDATE cluster.handler SET owner = new_owner WHERE owner = ANY (roles);
	UPDATE cluster.worker SET registered_by = new_owner WHERE registered_by = ANY (roles);
	UPDATE cluster.pump_grant SET granted_by = new_owner WHERE granted_by = ANY (roles);
	UPDATE cluster.worker_grant SET granted_by = new_owner WHERE granted_by = ANY (roles);
END
$$;

/* Drop the wake triggers (cluster_pump_<id>) that these pumps put on their outbox tables. */
CREATE FUNCTION cluster._drop_wake_triggers(pump_ids int[])
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT t.tgname, p.source FROM cluster.pump p
			   JOIN pg_trigger t ON t.tgrelid = p.source AND t.tgname = 'cluster_pump_' || p.id
			  WHERE p.id = ANY (pump_ids)
	LOOP
		EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.source);
	END LOOP;
END
$$;

CREATE FUNCTION cluster._drop_owned(roles regrole[], cascade boolean)
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
	DELETE FROM cluster.pump_grant WHERE grantee = ANY (roles) OR granted_by = ANY (roles);
	DELETE FROM cluster.worker_grant WHERE grantee = ANY (roles) OR granted_by = ANY (roles);
END
$$;

/*
 * What in this database keeps a role from being dropped: the first thing it
 * owns, registered or was granted, described as DROP ROLE's DETAIL would;
 * NULL when nothing.  Called by the DROP ROLE check of the module.
 */
CREATE FUNCTION cluster._role_in_use(role regrole)
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

REVOKE ALL ON FUNCTION cluster._protect_dropped(boolean), cluster._on_sql_drop(),
	cluster._reassign_owned(regrole[], regrole), cluster._drop_owned(regrole[], boolean),
	cluster._role_in_use(regrole) FROM PUBLIC;

/* last_error clears once the handler handles events again */
CREATE OR REPLACE FUNCTION cluster._commit_handler(handler_id int, epoch int, lease_key text,
	fence bigint, cursor jsonb, done jsonb, retry jsonb, processed bigint,
	failed bigint, dead bigint, last_error text)
RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	doc jsonb;
BEGIN
	PERFORM FROM cluster.lease l WHERE l.key = $3 AND l.fence = $4 FOR SHARE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	SELECT h.state INTO doc FROM cluster.handler h WHERE h.id = $1 AND h.epoch = $2 FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	doc := jsonb_set(doc, '{cursor}', $5);
	doc := jsonb_set(doc, '{done}', $6);
	doc := jsonb_set(doc, '{retry}', $7);
	IF $8 <> 0 OR $9 <> 0 OR $10 <> 0 THEN
		doc := jsonb_set(doc, '{counters}', coalesce(doc -> 'counters', '{}') || jsonb_build_object(
			'processed', coalesce((doc #>> '{counters,processed}')::bigint, 0) + $8,
			'failed', coalesce((doc #>> '{counters,failed}')::bigint, 0) + $9,
			'dead_lettered', coalesce((doc #>> '{counters,dead_lettered}')::bigint, 0) + $10));
	END IF;
	IF $11 IS NOT NULL THEN
		doc := jsonb_set(doc, '{last_error}', jsonb_build_object('message', $11, 'at', now()));
	ELSIF $8 > 0 THEN
		doc := doc - 'last_error';	/* it works again */
	END IF;
	UPDATE cluster.handler h SET state = doc WHERE h.id = $1;
	RETURN true;
END
$$;

/* positions are case-insensitive */
CREATE OR REPLACE FUNCTION cluster.reset_handler(name text, "position" text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
	cursor jsonb;
	at timestamptz;
BEGIN
	IF $2 IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', 'position'
			USING ERRCODE = 'null_value_not_allowed';
	ELSIF lower($2) = 'start' THEN
		cursor := '["0", "0"]';
	ELSIF lower($2) = 'end' THEN
		/* every event of a finished transaction is behind, the rest ahead */
		cursor := jsonb_build_array(
			(pg_snapshot_xmin(pg_current_snapshot())::text::numeric - 1)::text,
			'9223372036854775807');
	ELSE
		BEGIN
			at := $2::timestamptz;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
			RAISE EXCEPTION 'argument "%" must be ''start'', ''end'' or a timestamp', 'position'
				USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %L.', $2);
		END;
		cursor := cluster._position_before(h.id, at);
	END IF;
	UPDATE cluster.handler
	   SET epoch = epoch + 1,
		   state = jsonb_set(jsonb_set(jsonb_set(state, '{cursor}', cursor),
									   '{done}', '[]'), '{retry}', '{}')
	 WHERE id = h.id;
END
$$;

/*
 * Events after a handler's cursor not done yet, counted against the same
 * version of the handler's row (src/caller.c).  The 0.1 view subtracted
 * the done list it read itself from a count taken with a later snapshot,
 * and could show 0 while events were still in flight.
 */
CREATE FUNCTION cluster._handler_lag(handler_id int, OUT events bigint, OUT seconds double precision)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cluster_handler_lag';
REVOKE ALL ON FUNCTION cluster._handler_lag(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster._handler_lag(int) TO cluster_worker;

-- a cursor past every id of its transaction (after reset_handler(..., 'end')) reads "txid/*";
-- lag_events counts what is not done, against one version of the handler's row
CREATE OR REPLACE VIEW cluster.handlers AS
SELECT h.name, p.name AS pump, h.function, h.owner, h.ordering,
	   (h.state #>> '{cursor,0}') || '/' ||
	   CASE h.state #>> '{cursor,1}' WHEN '9223372036854775807' THEN '*'
			ELSE h.state #>> '{cursor,1}' END AS cursor,
	   lag.events AS lag_events,
	   lag.seconds AS lag_seconds,
	   coalesce(s.in_flight, 0) AS in_flight,
	   (SELECT count(*) FROM jsonb_object_keys(h.state -> 'retry'))::int AS retrying,
	   (SELECT count(*) FROM cluster.dead_letters d WHERE d.handler_id = h.id) AS dead_letters,
	   coalesce((h.state #>> '{counters,processed}')::bigint, 0) AS processed,
	   h.state #>> '{last_error,message}' AS last_error,
	   (h.state #>> '{last_error,at}')::timestamptz AS last_error_at,
	   h.paused
  FROM cluster.handler h
  JOIN cluster.pump p ON p.id = h.pump_id
  LEFT JOIN cluster._handler_status() s ON s.handler_id = h.id,
  LATERAL cluster._handler_lag(h.id) lag;
COMMENT ON VIEW cluster.handlers IS
'every handler: cursor (txid/id; txid/* after every event of that transaction), how far behind it is, what is in flight or retrying, dead letters, the last error';

-------------------------------------------------------------------------
-- Fences only grow: across DROP/CREATE EXTENSION and promotions
-------------------------------------------------------------------------

/*
 * The fence DROP EXTENSION left in this database (kept as the database's
 * setting cluster.fence_floor, which outlives the extension's tables), read
 * once when the extension is created again.
 */
CREATE TABLE cluster.fence_floor (
	floor		bigint NOT NULL
);
COMMENT ON TABLE cluster.fence_floor IS 'the highest fence of this database when the extension was last dropped';
INSERT INTO cluster.fence_floor
SELECT coalesce(max(split_part(c, '=', 2)::bigint), 0)
  FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND s.setrole = 0 AND c LIKE 'cluster.fence_floor=%';

CREATE FUNCTION cluster._timeline_floor()
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'cluster_timeline_floor';
COMMENT ON FUNCTION cluster._timeline_floor() IS
'(timeline - 1) << 32: fences of a promoted standby pass what its old primary handed out unreplicated';

/* No fence is handed out at or below this. */
CREATE FUNCTION cluster._fence_floor()
RETURNS bigint LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT greatest((SELECT max(floor) FROM cluster.fence_floor), cluster._timeline_floor())
$$;

/*
 * Taking a lease updates its row when there is one and inserts only when
 * there is none: an insert for a key that has a row is a restore, merged by
 * cluster._lease_merge().
 */
CREATE OR REPLACE FUNCTION cluster.acquire_lease(key text, holder text, ttl interval)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM cluster._check_lease_key($1);
	PERFORM cluster._check_text('holder', $2, 512);
	PERFORM cluster._check_interval('ttl', $3, interval '1 microsecond');

	UPDATE cluster.lease AS l
	   SET holder = $2,
		   fence = CASE WHEN l.holder IS DISTINCT FROM $2
						THEN greatest(l.fence + 1, cluster._fence_floor() + 1) ELSE l.fence END,
		   acquired_at = CASE WHEN l.holder IS DISTINCT FROM $2
							  THEN clock_timestamp() ELSE l.acquired_at END,
		   expires_at = clock_timestamp() + $3
	 WHERE l.key = $1
	   AND (l.holder = $2 OR l.holder IS NULL OR l.expires_at <= clock_timestamp())
	RETURNING l.fence INTO result;
	IF NOT FOUND AND NOT EXISTS (SELECT FROM cluster.lease l WHERE l.key = $1) THEN
		INSERT INTO cluster.lease AS l (key, holder, fence, acquired_at, expires_at)
		VALUES ($1, $2, cluster._fence_floor() + 1, clock_timestamp(), clock_timestamp() + $3)
		ON CONFLICT ON CONSTRAINT lease_pkey DO NOTHING
		RETURNING l.fence INTO result;
	END IF;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION cluster._engine_take(coordinator_id int, holder text)
RETURNS TABLE (fence bigint, ttl_ms int) LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	lease_key	text;
	ttl			interval;
BEGIN
	SELECT 'coordinator/' || c.name, c.lease_ttl INTO lease_key, ttl
	  FROM cluster.coordinator c WHERE c.id = $1;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	RETURN QUERY
	UPDATE cluster.lease AS l
	   SET holder = $2, fence = greatest(l.fence + 1, cluster._fence_floor() + 1),
		   acquired_at = clock_timestamp(), expires_at = clock_timestamp() + ttl
	 WHERE l.key = lease_key
	RETURNING l.fence, (extract(epoch FROM ttl) * 1000)::int;
	IF NOT FOUND THEN
		RETURN QUERY
		INSERT INTO cluster.lease AS l (key, holder, fence, acquired_at, expires_at)
		VALUES (lease_key, $2, cluster._fence_floor() + 1, clock_timestamp(), clock_timestamp() + ttl)
		ON CONFLICT ON CONSTRAINT lease_pkey DO NOTHING
		RETURNING l.fence, (extract(epoch FROM ttl) * 1000)::int;
	END IF;
END
$$;

/*
 * Before DROP EXTENSION cluster: stop this database's engines and keep them
 * out (the drop takes its tables' locks one by one, and a running engine
 * would deadlock with it), drop the wake triggers on user outbox tables
 * (they depend on the extension's function and would stop the drop), and
 * keep the highest fence as the database's cluster.fence_floor.
 */
CREATE FUNCTION cluster._before_drop()
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_terminate_backend(a.pid, 5000)
	   FROM pg_stat_activity a
	  WHERE a.backend_type = 'cluster engine'
		AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database());
	/* engines the launcher starts again wait here until the drop is done */
	LOCK TABLE cluster.coordinator, cluster.lease, cluster.pump, cluster.handler,
		cluster.dead_letters, cluster.worker IN ACCESS EXCLUSIVE MODE;
	PERFORM cluster._drop_wake_triggers(ARRAY(SELECT id FROM cluster.pump));
	EXECUTE format('ALTER DATABASE %I SET cluster.fence_floor = %L', current_database(),
				   greatest((SELECT max(fence) FROM cluster.lease), cluster._fence_floor())::text);
END
$$;

CREATE FUNCTION cluster._on_drop_extension()
RETURNS event_trigger LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_on_drop_extension';
COMMENT ON FUNCTION cluster._on_drop_extension() IS
'before DROP EXTENSION cluster: drop the wake triggers on outbox tables, keep the highest fence (event trigger)';
CREATE EVENT TRIGGER cluster_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION cluster._on_drop_extension();

REVOKE ALL ON FUNCTION cluster._drop_wake_triggers(int[]), cluster._timeline_floor(),
	cluster._fence_floor(), cluster._before_drop(),
	cluster._on_drop_extension() FROM PUBLIC;

-------------------------------------------------------------------------
-- pg_dump and pg_restore by the database's owner
-------------------------------------------------------------------------

/*
 * A lease row inserted for a key that has one comes from a restore (the
 * functions that take leases insert only missing keys).  Fences only grow:
 * the larger fence stays, and when the restored one is larger the current
 * holding ends, so the next holder's fence is above both.
 */
CREATE FUNCTION cluster._lease_merge()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cluster.lease AS l
	   SET fence = NEW.fence, holder = NULL,
		   expires_at = least(l.expires_at, clock_timestamp())
	 WHERE l.key = NEW.key AND l.fence < NEW.fence;
	IF FOUND OR EXISTS (SELECT FROM cluster.lease l WHERE l.key = NEW.key) THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cluster._lease_merge() IS
'a restored lease whose key exists keeps the larger fence and ends the current holding (trigger)';
CREATE TRIGGER merge BEFORE INSERT ON cluster.lease
	FOR EACH ROW EXECUTE FUNCTION cluster._lease_merge();
ALTER TABLE cluster.lease ADD CONSTRAINT lease_fence_range CHECK (fence BETWEEN 0 AND 4611686018427387904);

/*
 * Consent rows name a pump's or handler's owner as the one who consented:
 * only a member of that owner may write them directly (as a restore does);
 * cluster.grant_pump() and grant_worker() check the same.
 */
CREATE FUNCTION cluster._grant_guard()
RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owner		regrole;
	object		text;
BEGIN
	IF TG_TABLE_NAME = 'pump_grant' THEN
		SELECT p.owner, 'pump "' || p.name || '"' INTO owner, object
		  FROM cluster.pump p WHERE p.id = NEW.pump_id;
	ELSE
		SELECT h.owner, 'handler "' || h.name || '"' INTO owner, object
		  FROM cluster.handler h WHERE h.id = NEW.handler_id;
	END IF;
	IF owner IS NOT NULL AND NOT pg_has_role(current_user, owner, 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to grant on cluster %', object
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Only members of %s, its owner, may.', owner);
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cluster._grant_guard() IS
'only members of a pump''s or handler''s owner may write its consent rows directly (trigger)';
CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON cluster.pump_grant
	FOR EACH ROW EXECUTE FUNCTION cluster._grant_guard();
CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON cluster.worker_grant
	FOR EACH ROW EXECUTE FUNCTION cluster._grant_guard();

/* create_coordinator's limits, for rows written directly */
ALTER TABLE cluster.coordinator
	ADD CONSTRAINT coordinator_standby_engines CHECK (standby_engines BETWEEN 0 AND 16),
	ADD CONSTRAINT coordinator_lease_ttl CHECK (lease_ttl >= interval '1 second'),
	ADD CONSTRAINT coordinator_name CHECK (octet_length(name) BETWEEN 1 AND 63);

/*
 * Worker registrations are live connections, and they hold secrets: they
 * are not part of a dump.  Workers register again with the restored
 * database (cluster-worker does at start).  Leaving and rejoining the
 * extension is how a table stops being dumped as configuration.
 */
ALTER EXTENSION cluster DROP TABLE cluster.worker;
ALTER EXTENSION cluster ADD TABLE cluster.worker;

/*
 * The database's owner may dump what the extension keeps in its database:
 * the rows cluster_admin reads (dead letters only of handlers whose owner
 * it is a member of: pg_dump --enable-row-security).  Restoring writes
 * rows: pumps, handlers and dead letters as their owner (row-level
 * security, so pg_dump --inserts), consent rows as a member of the owner
 * (cluster._grant_guard), coordinators as a cluster_admin.
 */
GRANT SELECT ON cluster.lease, cluster.instance, cluster.kv, cluster.coordinator,
	cluster.events, cluster.pump, cluster.handler, cluster.dead_letters,
	cluster.pump_grant, cluster.worker_grant TO pg_database_owner;
GRANT SELECT, UPDATE ON SEQUENCE cluster.coordinator_id_seq, cluster.events_id_seq,
	cluster.pump_id_seq, cluster.handler_id_seq, cluster.dead_letters_id_seq TO pg_database_owner;
GRANT INSERT ON cluster.lease, cluster.instance, cluster.kv, cluster.events,
	cluster.dead_letters, cluster.pump_grant, cluster.worker_grant TO pg_database_owner;
GRANT INSERT ON cluster.coordinator TO cluster_admin;

REVOKE ALL ON FUNCTION cluster._lease_merge(), cluster._grant_guard() FROM PUBLIC;
