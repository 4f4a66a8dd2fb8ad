/* cluster--0.1.sql: the coordination service, coordinators and engines */

\echo Use "CREATE EXTENSION cluster" to load this file. \quit

/*
 * Roles.  They are cluster-wide, so they may exist already (the extension
 * in another database, or a dump restored): create them only when missing.
 */
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cluster_admin') THEN
		CREATE ROLE cluster_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cluster_worker') THEN
		CREATE ROLE cluster_worker NOLOGIN;
	END IF;
END
$roles$;

COMMENT ON ROLE cluster_admin IS 'may manage coordinators and call every function of the cluster extension';
COMMENT ON ROLE cluster_worker IS 'may call what workers and applications need: leases, instances, key-value store';

GRANT cluster_worker TO cluster_admin;

REVOKE ALL ON SCHEMA cluster FROM PUBLIC;
GRANT USAGE ON SCHEMA cluster TO PUBLIC;

/*
 * Argument checks shared by the public functions.  Their messages name the
 * argument, as the built-in functions' do.
 */
CREATE FUNCTION cluster._check_text(arg text, value text, max_bytes int)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', arg
			USING ERRCODE = 'null_value_not_allowed';
	ELSIF value = '' THEN
		RAISE EXCEPTION 'argument "%" must not be empty', arg
			USING ERRCODE = 'invalid_parameter_value';
	ELSIF octet_length(value) > max_bytes THEN
		RAISE EXCEPTION 'argument "%" is too long', arg
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('It is %s bytes long; the limit is %s bytes.',
								  octet_length(value), max_bytes);
	END IF;
END
$$;

CREATE FUNCTION cluster._check_interval(arg text, value interval, min_value interval)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', arg
			USING ERRCODE = 'null_value_not_allowed';
	ELSIF value <= interval '0' THEN
		RAISE EXCEPTION 'argument "%" must be positive', arg
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', value);
	ELSIF value < min_value THEN
		RAISE EXCEPTION 'argument "%" must be at least %', arg, min_value
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', value);
	END IF;
END
$$;

CREATE FUNCTION cluster._check_lease_key(key text)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('key', key, 512);
	IF starts_with(key, 'coordinator/') THEN
		RAISE EXCEPTION 'lease key "%" is reserved', key
			USING ERRCODE = 'reserved_name',
				  HINT = 'Keys beginning with "coordinator/" belong to the engines of the cluster''s coordinators.';
	END IF;
END
$$;

-------------------------------------------------------------------------
-- Leases
-------------------------------------------------------------------------

/*
 * A row is never deleted: its fence must only grow, also after a release,
 * a crash, or a drop and re-create of a coordinator.
 */
CREATE TABLE cluster.lease (
	key			text PRIMARY KEY,
	holder		text,
	fence		bigint NOT NULL,
	acquired_at timestamptz NOT NULL,
	expires_at	timestamptz NOT NULL
);
COMMENT ON TABLE cluster.lease IS 'leases with fencing tokens; read cluster.leases';

CREATE FUNCTION cluster.acquire_lease(key text, holder text, ttl interval)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM cluster._check_lease_key($1);
	PERFORM cluster._check_text('holder', $2, 512);
	PERFORM cluster._check_interval('ttl', $3, interval '1 microsecond');

	INSERT INTO cluster.lease AS l (key, holder, fence, acquired_at, expires_at)
	VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3)
	ON CONFLICT ON CONSTRAINT lease_pkey DO UPDATE
		SET holder = excluded.holder,
			fence = l.fence + (l.holder IS DISTINCT FROM excluded.holder)::int,
			acquired_at = CASE WHEN l.holder IS DISTINCT FROM excluded.holder
							   THEN excluded.acquired_at ELSE l.acquired_at END,
			expires_at = excluded.expires_at
		WHERE l.holder = excluded.holder
		   OR l.holder IS NULL
		   OR l.expires_at <= clock_timestamp()
	RETURNING l.fence INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION cluster.acquire_lease(text, text, interval) IS
'take or extend a lease; returns its fence while the caller holds it, NULL when another holder has a live lease';

CREATE FUNCTION cluster.renew_lease(key text, holder text, ttl interval)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_lease_key($1);
	PERFORM cluster._check_text('holder', $2, 512);
	PERFORM cluster._check_interval('ttl', $3, interval '1 microsecond');

	UPDATE cluster.lease AS l
	   SET expires_at = clock_timestamp() + $3
	 WHERE l.key = $1 AND l.holder = $2 AND l.expires_at > clock_timestamp();
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cluster.renew_lease(text, text, interval) IS
'extend a live lease held by holder to now + ttl; false when it is not (any more) held by holder';

CREATE FUNCTION cluster.release_lease(key text, holder text)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_lease_key($1);
	PERFORM cluster._check_text('holder', $2, 512);

	UPDATE cluster.lease AS l
	   SET holder = NULL, expires_at = clock_timestamp()
	 WHERE l.key = $1 AND l.holder = $2 AND l.expires_at > clock_timestamp();
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cluster.release_lease(text, text) IS
'give up a live lease held by holder; the next holder gets the next fence';

CREATE VIEW cluster.leases AS
SELECT key, holder, fence, expires_at,
	   holder IS NOT NULL AND expires_at > clock_timestamp() AS live
  FROM cluster.lease;
COMMENT ON VIEW cluster.leases IS 'every lease with its holder, fence and expiry; live = held and not expired';

-------------------------------------------------------------------------
-- Instance registry
-------------------------------------------------------------------------

CREATE TABLE cluster.instance (
	instance_id text PRIMARY KEY,
	address		text NOT NULL,
	registered_at timestamptz NOT NULL,
	last_heartbeat timestamptz NOT NULL
);
COMMENT ON TABLE cluster.instance IS 'registered instances; read cluster.live_instances()';

CREATE FUNCTION cluster.register_instance(instance_id text, address text)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('instance_id', $1, 512);
	PERFORM cluster._check_text('address', $2, 2048);

	INSERT INTO cluster.instance AS i
	VALUES ($1, $2, clock_timestamp(), clock_timestamp())
	ON CONFLICT ON CONSTRAINT instance_pkey DO UPDATE
		SET address = excluded.address,
			registered_at = excluded.registered_at,
			last_heartbeat = excluded.last_heartbeat;
END
$$;
COMMENT ON FUNCTION cluster.register_instance(text, text) IS
'register (or re-register) an instance and its address; counts as a heartbeat';

CREATE FUNCTION cluster.heartbeat(instance_id text)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('instance_id', $1, 512);

	UPDATE cluster.instance AS i SET last_heartbeat = clock_timestamp()
	 WHERE i.instance_id = $1;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cluster.heartbeat(text) IS
'record that an instance is alive; false when it is not registered';

CREATE FUNCTION cluster.unregister_instance(instance_id text)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('instance_id', $1, 512);
	DELETE FROM cluster.instance AS i WHERE i.instance_id = $1;
END
$$;
COMMENT ON FUNCTION cluster.unregister_instance(text) IS 'remove an instance from the registry';

CREATE FUNCTION cluster.live_instances(stale_after interval)
RETURNS TABLE (instance_id text, address text, last_heartbeat timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_interval('stale_after', $1, interval '1 microsecond');

	RETURN QUERY
	SELECT i.instance_id, i.address, i.last_heartbeat
	  FROM cluster.instance AS i
	 WHERE i.last_heartbeat > clock_timestamp() - $1
	 ORDER BY i.instance_id;
END
$$;
COMMENT ON FUNCTION cluster.live_instances(interval) IS
'instances whose last heartbeat is more recent than stale_after';

-------------------------------------------------------------------------
-- Key-value store with TTLs
-------------------------------------------------------------------------

/* An expired row reads as absent and is overwritten by the next write. */
CREATE TABLE cluster.kv (
	key			text PRIMARY KEY,
	value		text NOT NULL,
	expires_at	timestamptz NOT NULL
);
COMMENT ON TABLE cluster.kv IS 'the key-value store; use the cluster.kv_* functions';

CREATE FUNCTION cluster.kv_increment(key text, ttl interval)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM cluster._check_text('key', $1, 512);
	PERFORM cluster._check_interval('ttl', $2, interval '1 microsecond');

	INSERT INTO cluster.kv AS k
	VALUES ($1, '1', clock_timestamp() + $2)
	ON CONFLICT ON CONSTRAINT kv_pkey DO UPDATE
		SET value = CASE WHEN k.expires_at <= clock_timestamp() THEN '1'
						 ELSE (k.value::bigint + 1)::text END,
			expires_at = CASE WHEN k.expires_at <= clock_timestamp()
							  THEN excluded.expires_at ELSE k.expires_at END
	RETURNING k.value::bigint INTO result;
	RETURN result;
EXCEPTION
	WHEN invalid_text_representation OR numeric_value_out_of_range THEN
		RAISE EXCEPTION 'value of key "%" is not a bigint counter', $1
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'Delete the key, or let it expire, before counting with it.';
END
$$;
COMMENT ON FUNCTION cluster.kv_increment(text, interval) IS
'add one to a counter and return it; an absent or expired key starts at 1 and expires after ttl';

CREATE FUNCTION cluster.kv_set_if_not_exists(key text, value text, ttl interval)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	stored boolean;
BEGIN
	PERFORM cluster._check_text('key', $1, 512);
	IF $2 IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', 'value'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF octet_length($2) > 1048576 THEN
		PERFORM cluster._check_text('value', $2, 1048576);
	END IF;
	PERFORM cluster._check_interval('ttl', $3, interval '1 microsecond');

	INSERT INTO cluster.kv AS k
	VALUES ($1, $2, clock_timestamp() + $3)
	ON CONFLICT ON CONSTRAINT kv_pkey DO UPDATE
		SET value = excluded.value, expires_at = excluded.expires_at
		WHERE k.expires_at <= clock_timestamp()
	RETURNING true INTO stored;
	RETURN coalesce(stored, false);
END
$$;
COMMENT ON FUNCTION cluster.kv_set_if_not_exists(text, text, interval) IS
'store value under key unless a live value is there; true when stored';

CREATE FUNCTION cluster.kv_extend_ttl(key text, ttl interval)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('key', $1, 512);
	PERFORM cluster._check_interval('ttl', $2, interval '1 microsecond');

	UPDATE cluster.kv AS k SET expires_at = clock_timestamp() + $2
	 WHERE k.key = $1 AND k.expires_at > clock_timestamp();
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION cluster.kv_extend_ttl(text, interval) IS
'make a live key expire ttl from now; false when the key is absent or expired';

CREATE FUNCTION cluster.kv_delete(key text)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('key', $1, 512);
	DELETE FROM cluster.kv AS k WHERE k.key = $1;
END
$$;
COMMENT ON FUNCTION cluster.kv_delete(text) IS 'remove a key';

CREATE FUNCTION cluster.kv_get(key text)
RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result text;
BEGIN
	PERFORM cluster._check_text('key', $1, 512);
	SELECT k.value INTO result FROM cluster.kv AS k
	 WHERE k.key = $1 AND k.expires_at > clock_timestamp();
	RETURN result;
END
$$;
COMMENT ON FUNCTION cluster.kv_get(text) IS 'the value of a live key; NULL when absent or expired';

-------------------------------------------------------------------------
-- Coordinators and engines
-------------------------------------------------------------------------

CREATE TABLE cluster.coordinator (
	id			int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	lease_ttl	interval NOT NULL,
	standby_engines int NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cluster.coordinator IS 'leadership domains; read cluster.coordinators';

CREATE FUNCTION cluster._wake_launcher() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_wake_launcher';

/* The launcher rereads the coordinators at the commit of any change. */
CREATE TRIGGER wake_launcher
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cluster.coordinator
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._wake_launcher();

CREATE FUNCTION cluster.create_coordinator(name text,
										   lease_ttl interval DEFAULT '10 s',
										   standby_engines int DEFAULT 1)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	PERFORM cluster._check_interval('lease_ttl', $2, interval '1 second');
	IF $3 IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', 'standby_engines'
			USING ERRCODE = 'null_value_not_allowed';
	ELSIF $3 NOT BETWEEN 0 AND 16 THEN
		RAISE EXCEPTION 'argument "%" must be between 0 and 16', 'standby_engines'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %s.', $3);
	END IF;

	INSERT INTO cluster.coordinator (name, lease_ttl, standby_engines)
	VALUES ($1, $2, $3);
EXCEPTION
	WHEN unique_violation THEN
		RAISE EXCEPTION 'coordinator "%" already exists', $1
			USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION cluster.create_coordinator(text, interval, int) IS
'create a leadership domain: the launcher starts a leader engine and standby_engines standbys for it';

CREATE FUNCTION cluster.drop_coordinator(name text)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	IF EXISTS (SELECT FROM cluster.pump p JOIN cluster.coordinator c ON c.id = p.coordinator_id
				WHERE c.name = $1) THEN
		RAISE EXCEPTION 'coordinator "%" still runs pumps', $1
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop them first with cluster.drop_pump().';
	END IF;
	DELETE FROM cluster.coordinator AS c WHERE c.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coordinator "%" does not exist', $1
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cluster.drop_coordinator(text) IS
'drop a coordinator; its engines stop, its lease row stays so that its fence never goes back';

/* The engines' side of the coordinator lease (see src/lease.c). */
CREATE FUNCTION cluster._engine_take(coordinator_id int, holder text)
RETURNS TABLE (fence bigint, ttl_ms int) LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH c AS (
		SELECT 'coordinator/' || name AS key, lease_ttl, clock_timestamp() AS now
		  FROM cluster.coordinator WHERE id = $1
	)
	INSERT INTO cluster.lease AS l (key, holder, fence, acquired_at, expires_at)
	SELECT c.key, $2, 1, c.now, c.now + c.lease_ttl FROM c
	ON CONFLICT ON CONSTRAINT lease_pkey DO UPDATE
		SET holder = excluded.holder, fence = l.fence + 1,
			acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
	RETURNING l.fence,
			  (extract(epoch FROM l.expires_at - l.acquired_at) * 1000)::int
$$;

CREATE FUNCTION cluster._engine_renew(coordinator_id int, holder text, fence bigint)
RETURNS int LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE cluster.lease AS l SET expires_at = clock_timestamp() + c.lease_ttl
	  FROM cluster.coordinator AS c
	 WHERE c.id = $1 AND l.key = 'coordinator/' || c.name
	   AND l.holder = $2 AND l.fence = $3 AND l.expires_at > clock_timestamp()
	RETURNING (extract(epoch FROM c.lease_ttl) * 1000)::int
$$;

CREATE FUNCTION cluster._engine_release(coordinator_id int, holder text, fence bigint)
RETURNS void LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE cluster.lease AS l SET holder = NULL, expires_at = clock_timestamp()
	  FROM cluster.coordinator AS c
	 WHERE c.id = $1 AND l.key = 'coordinator/' || c.name
	   AND l.holder = $2 AND l.fence = $3
$$;

/*
 * For a standby: ms until the lease expires, and the pid of an engine that
 * holds the coordinator's advisory lock although its lease has expired.
 * 1668052339 is the lock's first key ('clus', see src/lease.c).
 */
CREATE FUNCTION cluster._engine_watch(coordinator_id int)
RETURNS TABLE (wait_ms int, stuck_pid int) LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN l.holder IS NULL
				THEN (extract(epoch FROM c.lease_ttl) * 1000)::int
				ELSE greatest(0, ceil(extract(epoch FROM l.expires_at - clock_timestamp()) * 1000))::int
		   END,
		   CASE WHEN l.holder IS NOT NULL AND l.expires_at <= clock_timestamp() THEN
			   (SELECT k.pid
				  FROM pg_locks AS k JOIN pg_stat_activity AS a ON a.pid = k.pid
				 WHERE k.locktype = 'advisory' AND k.granted
				   AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
				   AND k.classid = 1668052339::oid AND k.objid = $1::oid AND k.objsubid = 3
				   AND a.backend_type = 'cluster engine' AND k.pid <> pg_backend_pid()
				 LIMIT 1)
		   END
	  FROM cluster.coordinator AS c
	  LEFT JOIN cluster.lease AS l ON l.key = 'coordinator/' || c.name
	 WHERE c.id = $1
$$;

CREATE FUNCTION cluster._engine_status(
	OUT pid int, OUT coordinator text, OUT ordinal int, OUT role text,
	OUT fence bigint, OUT leader_since timestamptz, OUT last_renewal timestamptz,
	OUT started_at timestamptz, OUT restarts int)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_engine_status';

CREATE VIEW cluster.engines AS
SELECT pid, coordinator, ordinal, role, fence, leader_since, last_renewal,
	   started_at, restarts
  FROM cluster._engine_status();
COMMENT ON VIEW cluster.engines IS
'the engines the launcher runs, live from shared memory: role is leader, standby, idle (hot standby server), starting or stopped';

CREATE VIEW cluster.coordinators AS
SELECT c.name, c.lease_ttl, c.standby_engines,
	   e.pid AS leader_pid, l.holder AS lease_holder, l.fence,
	   l.expires_at AS lease_expires_at
  FROM cluster.coordinator AS c
  LEFT JOIN cluster.lease AS l ON l.key = 'coordinator/' || c.name
  LEFT JOIN cluster.engines AS e ON e.coordinator = c.name AND e.role = 'leader';
COMMENT ON VIEW cluster.coordinators IS 'who leads each coordinator, with which fence, until when';

SELECT cluster.create_coordinator('default');

-------------------------------------------------------------------------
-- Events and pumps
-------------------------------------------------------------------------

/*
 * The built-in event log.  txid is the inserting top-level transaction: the
 * pump reads in (txid, id) order and only below the oldest running
 * transaction, so an event whose transaction commits late is never skipped.
 * Don't set txid by hand.
 */
CREATE TABLE cluster.events (
	id			bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	stream		text NOT NULL,
	key			text,
	payload		jsonb NOT NULL,
	headers		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now(),
	txid		xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
CREATE INDEX events_stream_txid_id ON cluster.events (stream, txid, id);
COMMENT ON TABLE cluster.events IS
'the built-in event log: publish with cluster.publish(), INSERT or COPY; the pump named after a stream reads it';

CREATE FUNCTION cluster._wake_leaders() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_wake_leaders';

/* Leaders read new events at the commit of any insert, COPY included. */
CREATE TRIGGER wake_leaders AFTER INSERT ON cluster.events
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._wake_leaders();

CREATE FUNCTION cluster.publish(stream text, payload jsonb, key text DEFAULT NULL,
								headers jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint;
BEGIN
	PERFORM cluster._check_text('stream', $1, 512);
	IF $2 IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', 'payload'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO cluster.events (stream, payload, key, headers)
	VALUES ($1, $2, $3, $4) RETURNING id INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION cluster.publish(text, jsonb, text, jsonb) IS
'append one event to a stream; returns its id; delivered after the calling transaction commits';

CREATE FUNCTION cluster.publish_batch(stream text, events jsonb)
RETURNS bigint[] LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result bigint[];
BEGIN
	PERFORM cluster._check_text('stream', $1, 512);
	IF $2 IS NULL OR jsonb_typeof($2) <> 'array'
	   OR EXISTS (SELECT FROM jsonb_array_elements($2) e
				   WHERE jsonb_typeof(e) <> 'object'
					  OR jsonb_typeof(e -> 'payload') IS NULL
					  OR jsonb_typeof(e -> 'payload') = 'null') THEN
		RAISE EXCEPTION 'argument "%" must be a JSON array of events with payloads', 'events'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Each element is an object {"payload": ..., "key": ..., "headers": ...}; only payload is required.';
	END IF;
	WITH ins AS (
		INSERT INTO cluster.events (stream, payload, key, headers)
		SELECT $1, e -> 'payload', e ->> 'key', nullif(e -> 'headers', 'null')
		  FROM jsonb_array_elements($2) WITH ORDINALITY AS a(e, n)
		 ORDER BY n
		RETURNING id
	)
	SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO result FROM ins;
	RETURN result;
END
$$;
COMMENT ON FUNCTION cluster.publish_batch(text, jsonb) IS
'append many events to a stream in one call: a JSON array of {payload, key, headers}; returns their ids in order';

CREATE TABLE cluster.pump (
	id			int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	coordinator_id int NOT NULL REFERENCES cluster.coordinator (id),
	source		regclass,			/* NULL: cluster.events of stream "name" */
	id_column	name NOT NULL DEFAULT 'id',
	txid_column name NOT NULL DEFAULT 'txid',
	payload_column name NOT NULL DEFAULT 'payload',
	key_column	name,
	headers_column name,
	created_at_column name,
	retention	interval NOT NULL,
	owner		regrole NOT NULL DEFAULT current_user::regrole,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cluster.pump IS 'pumps: named sources of events; read cluster.pumps';

/* Only a pump's owner (or a superuser) may change or drop it. */
ALTER TABLE cluster.pump ENABLE ROW LEVEL SECURITY;
CREATE POLICY pump_read ON cluster.pump FOR SELECT USING (true);
CREATE POLICY pump_insert ON cluster.pump FOR INSERT
	WITH CHECK (owner = current_user::regrole);
CREATE POLICY pump_update ON cluster.pump FOR UPDATE
	USING (owner = current_user::regrole) WITH CHECK (owner = current_user::regrole);
CREATE POLICY pump_delete ON cluster.pump FOR DELETE
	USING (owner = current_user::regrole);

CREATE TABLE cluster.handler (
	id			int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	pump_id		int NOT NULL REFERENCES cluster.pump (id),
	function	regprocedure,
	owner		regrole NOT NULL DEFAULT current_user::regrole,
	ordering	text NOT NULL CHECK (ordering IN ('key', 'none')),
	batch_size	int NOT NULL CHECK (batch_size BETWEEN 1 AND 10000),
	max_attempts int NOT NULL CHECK (max_attempts BETWEEN 1 AND 1000),
	ack_timeout interval NOT NULL CHECK (ack_timeout > interval '0'),
	max_in_flight int NOT NULL CHECK (max_in_flight BETWEEN 1 AND 1000000),
	/* a delivery's events, in bytes of stored jsonb; a larger event is dead-lettered */
	max_batch_bytes int NOT NULL DEFAULT 1048576 CHECK (max_batch_bytes BETWEEN 1024 AND 8388608),
	paused		boolean NOT NULL DEFAULT false,
	/* raised by reset_handler: a cursor commit from an older epoch fails */
	epoch		int NOT NULL DEFAULT 0,
	/*
	 * cursor: [txid, id] below which every event is done; done: [txid, id]
	 * pairs done above it; retry: {event id: {attempts, error}}; counters;
	 * last_error; user: the state that handlers patch.  Only ever updated
	 * by deltas (see cluster._commit_handler).
	 */
	state		jsonb NOT NULL DEFAULT '{"cursor": ["0", "0"], "done": [], "retry": {}, "counters": {}, "user": {}}',
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cluster.handler IS 'handlers: consumers of a pump, with cursor and state; read cluster.handlers';

/* A handler's function runs as the handler's owner: only the owner may change it. */
ALTER TABLE cluster.handler ENABLE ROW LEVEL SECURITY;
CREATE POLICY handler_read ON cluster.handler FOR SELECT USING (true);
CREATE POLICY handler_insert ON cluster.handler FOR INSERT
	WITH CHECK (owner = current_user::regrole);
CREATE POLICY handler_update ON cluster.handler FOR UPDATE
	USING (owner = current_user::regrole) WITH CHECK (owner = current_user::regrole);
CREATE POLICY handler_delete ON cluster.handler FOR DELETE
	USING (owner = current_user::regrole);

CREATE TABLE cluster.dead_letters (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	handler_id	int NOT NULL REFERENCES cluster.handler (id) ON DELETE CASCADE,
	event_id	bigint NOT NULL,
	event		jsonb NOT NULL,			/* as it was delivered */
	attempts	int NOT NULL,
	last_error	text,
	failed_at	timestamptz NOT NULL DEFAULT now(),
	replay		boolean NOT NULL DEFAULT false
);
CREATE INDEX dead_letters_handler ON cluster.dead_letters (handler_id, replay);

/* Dead letters are events: only members of their handler's owner see them. */
ALTER TABLE cluster.dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letters_owner ON cluster.dead_letters
	USING (EXISTS (SELECT FROM cluster.handler h
					WHERE h.id = handler_id AND pg_has_role(current_user, h.owner, 'USAGE')));
COMMENT ON TABLE cluster.dead_letters IS
'events a handler gave up on after max_attempts, with the last error; cluster.replay_dead_letters() hands them over again';

/*
 * Who may attach handlers to a pump besides its owner: a handler gets the
 * events the pump's owner reads, so the owner must consent.
 */
CREATE TABLE cluster.pump_grant (
	pump_id		int NOT NULL REFERENCES cluster.pump (id) ON DELETE CASCADE,
	grantee		regrole NOT NULL,
	granted_by	regrole NOT NULL,
	granted_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (pump_id, grantee)
);
COMMENT ON TABLE cluster.pump_grant IS 'roles a pump''s owner allowed to attach handlers; use cluster.grant_pump(), read cluster.grants';

/*
 * May "role" read the events of a pump (own a handler of it)?  Members of
 * its owner and of the roles it was granted to may; superusers may.
 */
CREATE FUNCTION cluster._may_read_pump(pump_id int, role regrole)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (
		SELECT FROM cluster.pump p
		 WHERE p.id = $1
		   AND (pg_has_role($2, p.owner, 'USAGE')
				OR EXISTS (SELECT FROM cluster.pump_grant g
							WHERE g.pump_id = p.id AND pg_has_role($2, g.grantee, 'USAGE'))))
$$;

/* Leaders reload pumps and handlers at the commit of any change. */
CREATE FUNCTION cluster._config_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cluster_config_changed';
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cluster.pump
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OF name, pump_id, function, owner, ordering,
	batch_size, max_attempts, ack_timeout, max_in_flight, max_batch_bytes, paused, epoch OR DELETE OR TRUNCATE
	ON cluster.handler
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();
CREATE TRIGGER config_changed AFTER UPDATE OF replay ON cluster.dead_letters
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();

/* Check that column "col" of "tbl" exists with one of the types "types". */
CREATE FUNCTION cluster._check_column(tbl regclass, arg text, col name, types regtype[])
RETURNS void LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	actual regtype;
BEGIN
	SELECT atttypid::regtype INTO actual FROM pg_attribute
	 WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('The pump reads it as its %s column.', arg),
				  HINT = CASE WHEN arg = 'txid'
					THEN format('Add it with: ALTER TABLE %s ADD COLUMN %I xid8 NOT NULL DEFAULT pg_current_xact_id(); or name another column with %s_column.', tbl, col, arg)
					ELSE format('Add a column of type %s, or name another column with %s_column.', types[1], arg) END;
	ELSIF NOT actual = ANY (types) THEN
		RAISE EXCEPTION 'column "%" of relation % has type %, not %', col, tbl, actual,
			array_to_string(types::text[], ' or ')
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = format('The pump reads it as its %s column.', arg),
				  HINT = CASE WHEN arg = 'txid'
					THEN 'The column must hold the inserting transaction''s id: xid8 DEFAULT pg_current_xact_id().'
					ELSE format('Change its type, or name another column with %s_column.', arg) END;
	END IF;
END
$$;

CREATE FUNCTION cluster.create_pump(name text, source regclass DEFAULT NULL,
	coordinator text DEFAULT 'default', retention interval DEFAULT '1 day',
	id_column name DEFAULT 'id', txid_column name DEFAULT 'txid',
	payload_column name DEFAULT 'payload', key_column name DEFAULT NULL,
	headers_column name DEFAULT NULL, created_at_column name DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coordinator_id int;
	pump_id int;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	IF EXISTS (SELECT FROM cluster.pump p WHERE p.name = $1) THEN
		RAISE EXCEPTION 'pump "%" already exists', $1 USING ERRCODE = 'duplicate_object';
	END IF;
	PERFORM cluster._check_text('coordinator', $3, 63);
	PERFORM cluster._check_interval('retention', $4, interval '1 second');
	SELECT c.id INTO coordinator_id FROM cluster.coordinator c WHERE c.name = $3;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coordinator "%" does not exist', $3
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with cluster.create_coordinator(), or use ''default''.';
	END IF;
	IF source IS NOT NULL THEN
		PERFORM cluster._check_column(source, 'id', id_column, '{bigint,integer}');
		PERFORM cluster._check_column(source, 'txid', txid_column, '{xid8}');
		PERFORM cluster._check_column(source, 'payload', payload_column, '{jsonb}');
		IF key_column IS NOT NULL THEN
			PERFORM cluster._check_column(source, 'key', key_column, '{text,character varying}');
		END IF;
		IF headers_column IS NOT NULL THEN
			PERFORM cluster._check_column(source, 'headers', headers_column, '{jsonb}');
		END IF;
		IF created_at_column IS NOT NULL THEN
			PERFORM cluster._check_column(source, 'created_at', created_at_column, '{timestamptz}');
		END IF;
		IF NOT EXISTS (SELECT FROM pg_index i
						WHERE i.indrelid = source
						  AND i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = source AND attname = txid_column)
						  AND i.indkey[1] = (SELECT attnum FROM pg_attribute WHERE attrelid = source AND attname = id_column)) THEN
			RAISE NOTICE 'relation % has no index on (%, %)', source, txid_column, id_column
				USING HINT = format('Reading will scan the table; create one with: CREATE INDEX ON %s (%I, %I);',
									source, txid_column, id_column);
		END IF;
	END IF;
	INSERT INTO cluster.pump (name, coordinator_id, source, id_column, txid_column,
							  payload_column, key_column, headers_column,
							  created_at_column, retention)
	VALUES ($1, coordinator_id, source, id_column, txid_column, payload_column,
			key_column, headers_column, created_at_column, $4)
	RETURNING id INTO pump_id;
	IF source IS NOT NULL THEN
		/* wake the leader at the commit of inserts into the source */
		EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH STATEMENT EXECUTE FUNCTION cluster._wake_leaders()',
					   'cluster_pump_' || pump_id, source);
	END IF;
EXCEPTION
	WHEN unique_violation THEN
		RAISE EXCEPTION 'pump "%" already exists', $1 USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION cluster.create_pump(text, regclass, text, interval, name, name, name, name, name, name) IS
'create a pump: the built-in events of stream "name" (source NULL) or a user table with id, txid (xid8) and payload columns';

CREATE FUNCTION cluster.drop_pump(name text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p cluster.pump;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	SELECT * INTO p FROM cluster.pump WHERE pump.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pump "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM FROM cluster.pump WHERE id = p.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied for pump "%"', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It is owned by %s.', p.owner);
	END IF;
	IF EXISTS (SELECT FROM cluster.handler h WHERE h.pump_id = p.id) THEN
		RAISE EXCEPTION 'pump "%" still has handlers', $1
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop them first with cluster.drop_handler().';
	END IF;
	IF p.source IS NOT NULL THEN
		EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'cluster_pump_' || p.id, p.source);
	END IF;
	DELETE FROM cluster.pump WHERE id = p.id;
END
$$;
COMMENT ON FUNCTION cluster.drop_pump(text) IS 'drop a pump that has no handlers; its events stay';

CREATE FUNCTION cluster._check_range(arg text, value int, low int, high int)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', arg
			USING ERRCODE = 'null_value_not_allowed';
	ELSIF value NOT BETWEEN low AND high THEN
		RAISE EXCEPTION 'argument "%" must be between % and %', arg, low, high
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', value);
	END IF;
END
$$;

CREATE FUNCTION cluster._check_handler_settings(ordering text, batch_size int,
	max_attempts int, ack_timeout interval, max_in_flight int, max_batch_bytes int)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF ordering IS NULL OR ordering NOT IN ('key', 'none') THEN
		RAISE EXCEPTION 'argument "%" must be ''key'' or ''none''', 'ordering'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('It is %L.', ordering);
	END IF;
	PERFORM cluster._check_range('batch_size', batch_size, 1, 10000);
	PERFORM cluster._check_range('max_attempts', max_attempts, 1, 1000);
	PERFORM cluster._check_interval('ack_timeout', ack_timeout, interval '1 millisecond');
	PERFORM cluster._check_range('max_in_flight', max_in_flight, 1, 1000000);
	/* well under the 16 MiB a worker's frame may have (wire.h) */
	PERFORM cluster._check_range('max_batch_bytes', max_batch_bytes, 1024, 8388608);
	IF max_in_flight < batch_size THEN
		RAISE EXCEPTION 'argument "%" must be at least batch_size (%)', 'max_in_flight', batch_size
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', max_in_flight);
	END IF;
END
$$;

/* The handler function: one jsonb argument, returns void or jsonb. */
CREATE FUNCTION cluster._check_handler_function(fn regprocedure,
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
	IF p.pronargs <> 1 OR p.proargtypes[0] <> 'jsonb'::regtype
	   OR p.prorettype NOT IN ('void'::regtype, 'jsonb'::regtype) OR p.proretset
	   OR p.prokind <> 'f' THEN
		RAISE EXCEPTION 'function % can''t be a handler function', fn
			USING ERRCODE = 'invalid_function_definition',
				  DETAIL = 'A handler function takes one jsonb argument (the batch of events) and returns void or jsonb (a state patch).';
	END IF;
	IF NOT has_function_privilege(runs_as, fn, 'EXECUTE') THEN
		RAISE EXCEPTION 'permission denied for function %', fn
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The handler function runs as the handler''s owner, %s.', runs_as);
	END IF;
END
$$;

/*
 * The checks hold for direct writes to the tables too: a handler's
 * function must suit and be executable by its owner, a pump's source must
 * be readable by its owner.
 */
CREATE FUNCTION cluster._handler_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_handler_function(NEW.function, NEW.owner);
	IF NOT cluster._may_read_pump(NEW.pump_id, NEW.owner) THEN
		RAISE EXCEPTION 'permission denied for pump "%"',
			(SELECT p.name FROM cluster.pump p WHERE p.id = NEW.pump_id)
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The handler''s owner, %s, may not read its events.', NEW.owner),
				  HINT = 'The pump''s owner can allow it with cluster.grant_pump().';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OF function, owner, pump_id ON cluster.handler
	FOR EACH ROW EXECUTE FUNCTION cluster._handler_guard();

CREATE FUNCTION cluster._pump_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.source IS NOT NULL AND NOT has_table_privilege(NEW.owner, NEW.source, 'SELECT') THEN
		RAISE EXCEPTION 'permission denied for table %', NEW.source
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The owner of pump "%s", %s, must be able to read it.', NEW.name, NEW.owner);
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OF source, owner ON cluster.pump
	FOR EACH ROW EXECUTE FUNCTION cluster._pump_guard();

CREATE FUNCTION cluster.create_handler(name text, pump text,
	function regprocedure DEFAULT NULL, ordering text DEFAULT 'key',
	batch_size int DEFAULT 100, max_attempts int DEFAULT 5,
	ack_timeout interval DEFAULT '30 s', max_in_flight int DEFAULT 1000,
	max_batch_bytes int DEFAULT 1048576)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pump_id int;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	PERFORM cluster._check_text('pump', $2, 63);
	SELECT p.id INTO pump_id FROM cluster.pump p WHERE p.name = $2;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pump "%" does not exist', $2
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with cluster.create_pump().';
	END IF;
	PERFORM cluster._check_handler_function($3);
	PERFORM cluster._check_handler_settings($4, $5, $6, $7, $8, $9);
	INSERT INTO cluster.handler (name, pump_id, function, ordering, batch_size,
								 max_attempts, ack_timeout, max_in_flight, max_batch_bytes)
	VALUES ($1, pump_id, $3, $4, $5, $6, $7, $8, $9);
EXCEPTION
	WHEN unique_violation THEN
		RAISE EXCEPTION 'handler "%" already exists', $1 USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION cluster.create_handler(text, text, regprocedure, text, int, int, interval, int, int) IS
'create a handler of a pump, starting at the pump''s first event; function(jsonb) runs the batches as the caller';

/* The handler row for a change by the caller; errors name the handler. */
CREATE FUNCTION cluster._handler_for_update(name text)
RETURNS cluster.handler LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	SELECT * INTO h FROM cluster.handler WHERE handler.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM FROM cluster.handler WHERE id = h.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied for handler "%"', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It is owned by %s.', h.owner);
	END IF;
	RETURN h;
END
$$;

CREATE FUNCTION cluster.alter_handler(name text, function regprocedure DEFAULT NULL,
	ordering text DEFAULT NULL, batch_size int DEFAULT NULL,
	max_attempts int DEFAULT NULL, ack_timeout interval DEFAULT NULL,
	max_in_flight int DEFAULT NULL, remove_function boolean DEFAULT false,
	max_batch_bytes int DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
BEGIN
	h.function := CASE WHEN remove_function THEN NULL ELSE coalesce($2, h.function) END;
	h.ordering := coalesce($3, h.ordering);
	h.batch_size := coalesce($4, h.batch_size);
	h.max_attempts := coalesce($5, h.max_attempts);
	h.ack_timeout := coalesce($6, h.ack_timeout);
	h.max_in_flight := coalesce($7, h.max_in_flight);
	h.max_batch_bytes := coalesce($9, h.max_batch_bytes);
	PERFORM cluster._check_handler_function(h.function);
	PERFORM cluster._check_handler_settings(h.ordering, h.batch_size, h.max_attempts,
											h.ack_timeout, h.max_in_flight, h.max_batch_bytes);
	UPDATE cluster.handler
	   SET function = h.function, ordering = h.ordering, batch_size = h.batch_size,
		   max_attempts = h.max_attempts, ack_timeout = h.ack_timeout,
		   max_in_flight = h.max_in_flight, max_batch_bytes = h.max_batch_bytes,
		   owner = current_user::regrole
	 WHERE id = h.id;
END
$$;
COMMENT ON FUNCTION cluster.alter_handler(text, regprocedure, text, int, int, interval, int, boolean, int) IS
'change a handler''s settings (NULL keeps a setting); the caller becomes its owner';

CREATE FUNCTION cluster.drop_handler(name text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
BEGIN
	DELETE FROM cluster.handler WHERE id = h.id;
END
$$;
COMMENT ON FUNCTION cluster.drop_handler(text) IS 'drop a handler with its cursor, state and dead letters';

CREATE FUNCTION cluster.pause_handler(name text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
BEGIN
	UPDATE cluster.handler SET paused = true WHERE id = h.id;
END
$$;
COMMENT ON FUNCTION cluster.pause_handler(text) IS 'stop handing out events to a handler; its cursor stays';

CREATE FUNCTION cluster.resume_handler(name text)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
BEGIN
	UPDATE cluster.handler SET paused = false WHERE id = h.id;
END
$$;
COMMENT ON FUNCTION cluster.resume_handler(text) IS 'hand out events to a paused handler again, from its cursor';

/*
 * The cursor just before the first event created at or after "at", read
 * from the source as the pump's owner (src/caller.c); for the handler's
 * owner.
 */
CREATE FUNCTION cluster._position_before(handler_id int, at timestamptz)
RETURNS jsonb LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cluster_position_before';

CREATE FUNCTION cluster.reset_handler(name text, "position" text)
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
	ELSIF $2 = 'start' THEN
		cursor := '["0", "0"]';
	ELSIF $2 = 'end' THEN
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
COMMENT ON FUNCTION cluster.reset_handler(text, text) IS
'move a handler''s cursor: ''start'' (every event again), ''end'' (only events not yet committed), or a timestamp (events created from then on)';

CREATE FUNCTION cluster.replay_dead_letters(handler text, event_ids bigint[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler := cluster._handler_for_update($1);
	n bigint;
BEGIN
	UPDATE cluster.dead_letters d SET replay = true
	 WHERE d.handler_id = h.id AND NOT d.replay
	   AND ($2 IS NULL OR d.event_id = ANY ($2));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cluster.replay_dead_letters(text, bigint[]) IS
'hand dead-lettered events (all, or those with the given event ids) to the handler again; returns how many';

CREATE FUNCTION cluster.handler_state(name text)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler;
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	SELECT * INTO h FROM cluster.handler WHERE handler.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	ELSIF NOT pg_has_role(current_user, h.owner, 'USAGE') THEN
		RAISE EXCEPTION 'permission denied for handler "%"', $1
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('It is owned by %s.', h.owner);
	END IF;
	RETURN h.state -> 'user';
END
$$;
COMMENT ON FUNCTION cluster.handler_state(text) IS 'the state a handler''s patches have built (a jsonb document)';

/*
 * A patch: [{"op": "set", "path": [...], "value": ...}, {"op": "remove",
 * "path": [...]}], paths relative to the user state.  Checked where it
 * comes from (inside the handler's subtransaction), applied at commit.
 */
CREATE FUNCTION cluster._check_patch(patch jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	op jsonb;
BEGIN
	IF patch IS NULL OR jsonb_typeof(patch) = 'null' THEN
		RETURN;
	END IF;
	IF jsonb_typeof(patch) <> 'array' THEN
		RAISE EXCEPTION 'state patch must be a JSON array of operations'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Return [{"op": "set", "path": [...], "value": ...}, {"op": "remove", "path": [...]}], or NULL.';
	END IF;
	FOR op IN SELECT * FROM jsonb_array_elements(patch) LOOP
		IF jsonb_typeof(op) <> 'object' OR (op ->> 'op') IS NULL
		   OR (op ->> 'op') NOT IN ('set', 'remove')
		   OR jsonb_typeof(op -> 'path') IS DISTINCT FROM 'array'
		   OR jsonb_array_length(op -> 'path') = 0
		   OR EXISTS (SELECT FROM jsonb_array_elements(op -> 'path') e
					   WHERE jsonb_typeof(e) NOT IN ('string', 'number'))
		   OR (op ->> 'op' = 'set' AND NOT op ? 'value') THEN
			RAISE EXCEPTION 'invalid state patch operation: %', op
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'An operation is {"op": "set", "path": [keys...], "value": ...} or {"op": "remove", "path": [keys...]}.';
		END IF;
	END LOOP;
END
$$;

/* Apply a checked patch to a handler's state, in one pass (src/patch.c). */
CREATE FUNCTION cluster._apply_patch(doc jsonb, patch jsonb)
RETURNS jsonb LANGUAGE c IMMUTABLE
AS 'MODULE_PATHNAME', 'cluster_apply_patch';

/*
 * The leader's cursor commit: fenced (the lease row is locked in share mode
 * and must still carry the leader's fence, so a new leader's take waits for
 * this transaction), conditional on the epoch, and made of deltas.  State
 * patches were applied already, where they came from, in this transaction.
 * Returns false when the commit must not happen: the caller rolls back.
 */
CREATE FUNCTION cluster._commit_handler(handler_id int, epoch int, lease_key text,
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
	END IF;
	UPDATE cluster.handler h SET state = doc WHERE h.id = $1;
	RETURN true;
END
$$;

CREATE FUNCTION cluster._handler_status(
	OUT handler_id int, OUT in_flight int, OUT leader_pid int)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_handler_status';

CREATE VIEW cluster.pumps AS
SELECT p.name, coalesce(p.source::text, 'cluster.events') AS source, c.name AS coordinator, p.owner,
	   p.retention,
	   (SELECT count(*) FROM cluster.handler h WHERE h.pump_id = p.id) AS handlers,
	   p.created_at
  FROM cluster.pump p JOIN cluster.coordinator c ON c.id = p.coordinator_id;
COMMENT ON VIEW cluster.pumps IS 'every pump: its source, coordinator, retention and number of handlers';

/*
 * Committed events after a handler's cursor: how many, and the age of the
 * oldest, counted as the pump's owner (src/caller.c).  NULL for a caller
 * who may not know: neither a member of the handler's or the pump's owner
 * nor allowed to read the source.
 */
CREATE FUNCTION cluster._lag(handler_id int, OUT events bigint, OUT seconds double precision)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cluster_lag';

CREATE VIEW cluster.handlers AS
SELECT h.name, p.name AS pump, h.function, h.owner, h.ordering,
	   (h.state #>> '{cursor,0}') || '/' || (h.state #>> '{cursor,1}') AS cursor,
	   CASE WHEN lag.events IS NOT NULL
			THEN greatest(lag.events - jsonb_array_length(h.state -> 'done'), 0) END AS lag_events,
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
  LATERAL cluster._lag(h.id) lag;
COMMENT ON VIEW cluster.handlers IS
'every handler: cursor (txid/id), how far behind it is, what is in flight or retrying, dead letters, the last error';

-------------------------------------------------------------------------
-- Workers
-------------------------------------------------------------------------

/*
 * A worker runs a WebSocket server and registers its address for a
 * handler; the leader dials it and, when the registration has a secret,
 * presents it as "Authorization: Bearer <secret>".  Secrets are readable
 * by nobody but the extension's owner: no view shows them.
 */
CREATE TABLE cluster.worker (
	id			text PRIMARY KEY DEFAULT gen_random_uuid()::text,
	handler_id	int NOT NULL REFERENCES cluster.handler (id) ON DELETE CASCADE,
	address		text NOT NULL,
	secret		text,
	capacity	int NOT NULL,
	registered_by regrole NOT NULL DEFAULT current_user::regrole,
	registered_at timestamptz NOT NULL DEFAULT now(),
	last_heartbeat timestamptz NOT NULL DEFAULT now(),
	UNIQUE (handler_id, address)
);
COMMENT ON TABLE cluster.worker IS 'registered workers; read cluster.workers';

CREATE TRIGGER config_changed AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF address, secret, capacity
	ON cluster.worker FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();

/*
 * Who may register, heartbeat and unregister workers of a handler besides
 * its owner: a worker receives the handler's events, so the owner must
 * consent (cluster.grant_worker).
 */
CREATE TABLE cluster.worker_grant (
	handler_id	int NOT NULL REFERENCES cluster.handler (id) ON DELETE CASCADE,
	grantee		regrole NOT NULL,
	granted_by	regrole NOT NULL,
	granted_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (handler_id, grantee)
);
COMMENT ON TABLE cluster.worker_grant IS 'roles a handler''s owner allowed to register workers; use cluster.grant_worker(), read cluster.grants';

/* the leader drops the connections of registrants whose right was revoked */
CREATE TRIGGER config_changed AFTER INSERT OR DELETE OR TRUNCATE ON cluster.worker_grant
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();

/* May "role" manage the workers of a handler?  Members of its owner and of its grantees may. */
CREATE FUNCTION cluster._may_manage_workers(handler_id int, role regrole)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (
		SELECT FROM cluster.handler h
		 WHERE h.id = $1
		   AND (pg_has_role($2, h.owner, 'USAGE')
				OR EXISTS (SELECT FROM cluster.worker_grant g
							WHERE g.handler_id = h.id AND pg_has_role($2, g.grantee, 'USAGE'))))
$$;

/* May the leader dial this address (cluster.worker_hosts)?  See src/allowlist.c. */
CREATE FUNCTION cluster._worker_address_allowed(address text)
RETURNS boolean LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'cluster_worker_address_allowed';
CREATE FUNCTION cluster._check_worker_address(address text)
RETURNS void LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'cluster_check_worker_address';

/*
 * The public functions below that take a caller are C functions
 * (cluster_for_caller, src/caller.c): they call the internal function of
 * the same name with a leading underscore as the extension's owner, with
 * the calling role as the last argument.  Nobody else may execute the
 * internal ones, so the caller can't be forged.
 */

/* The handler's id, for a caller allowed to manage its workers. */
CREATE FUNCTION cluster._worker_handler(handler text, caller regrole)
RETURNS int LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int;
BEGIN
	PERFORM cluster._check_text('handler', $1, 63);
	SELECT h.id INTO hid FROM cluster.handler h WHERE h.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT cluster._may_manage_workers(hid, $2) THEN
		RAISE EXCEPTION 'permission denied for the workers of handler "%"', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s is neither the handler''s owner nor allowed by it.', $2),
				  HINT = 'The handler''s owner can allow it with cluster.grant_worker().';
	END IF;
	RETURN hid;
END
$$;

CREATE FUNCTION cluster._register_worker(handler text, address text,
	secret text, capacity int, caller regrole)
RETURNS text LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	hid int := cluster._worker_handler($1, $5);
	result text;
BEGIN
	PERFORM cluster._check_text('address', $2, 2048);
	IF $2 !~ '^wss?://[^/?#@]+(/.*)?$' THEN
		RAISE EXCEPTION 'argument "%" must be a ws:// or wss:// URL', 'address'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %L.', $2),
				  HINT = 'For example ws://10.0.0.5:8080/ or wss://worker.example.com/events.';
	END IF;
	PERFORM cluster._check_worker_address($2);
	IF $3 IS NOT NULL THEN
		PERFORM cluster._check_text('secret', $3, 1024);
	END IF;
	PERFORM cluster._check_range('capacity', $4, 1, 10000);
	INSERT INTO cluster.worker AS w (handler_id, address, secret, capacity, registered_by)
	VALUES (hid, $2, $3, $4, $5)
	ON CONFLICT (handler_id, address) DO UPDATE
		SET secret = excluded.secret, capacity = excluded.capacity,
			registered_by = excluded.registered_by,
			registered_at = excluded.registered_at, last_heartbeat = excluded.last_heartbeat
	RETURNING w.id INTO result;
	RETURN result;
END
$$;

CREATE FUNCTION cluster.register_worker(handler text, address text,
	secret text DEFAULT NULL, capacity int DEFAULT 4)
RETURNS text LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.register_worker(text, text, text, int) IS
'register a worker''s WebSocket address for a handler (again: updates it); returns the worker id; the leader dials it. For the handler''s owner and the roles it granted with grant_worker';

/* The worker's handler, for a caller allowed to manage it; NULL when there is no such worker. */
CREATE FUNCTION cluster._worker_check(worker_id text, caller regrole)
RETURNS int LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w cluster.worker;
BEGIN
	PERFORM cluster._check_text('worker_id', $1, 64);
	SELECT * INTO w FROM cluster.worker WHERE id = $1;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	IF NOT cluster._may_manage_workers(w.handler_id, $2) THEN
		RAISE EXCEPTION 'permission denied for worker %', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s may not manage the workers of its handler.', $2);
	END IF;
	RETURN w.handler_id;
END
$$;

CREATE FUNCTION cluster._worker_heartbeat(worker_id text, caller regrole)
RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF cluster._worker_check($1, $2) IS NULL THEN
		RETURN false;
	END IF;
	UPDATE cluster.worker w SET last_heartbeat = clock_timestamp() WHERE w.id = $1;
	RETURN FOUND;
END
$$;

CREATE FUNCTION cluster.worker_heartbeat(worker_id text)
RETURNS boolean LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.worker_heartbeat(text) IS
'record that a worker is alive; false when it is not registered (register again)';

CREATE FUNCTION cluster._unregister_worker(worker_id text, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF cluster._worker_check($1, $2) IS NOT NULL THEN
		DELETE FROM cluster.worker w WHERE w.id = $1;
	END IF;
END
$$;

CREATE FUNCTION cluster.unregister_worker(worker_id text)
RETURNS void LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.unregister_worker(text) IS
'remove a worker; the leader closes its connection and hands its deliveries to others';

/* Grants: only the object's owner (or a member of it) may give or take them. */
CREATE FUNCTION cluster._check_grantee(role regrole)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF role IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', 'role'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
END
$$;

CREATE FUNCTION cluster._owned_handler(handler text, caller regrole)
RETURNS int LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	h cluster.handler;
BEGIN
	PERFORM cluster._check_text('handler', $1, 63);
	SELECT * INTO h FROM cluster.handler WHERE name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'handler "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	ELSIF NOT pg_has_role($2, h.owner, 'USAGE') THEN
		RAISE EXCEPTION 'permission denied for handler "%"', $1
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('It is owned by %s.', h.owner);
	END IF;
	RETURN h.id;
END
$$;

CREATE FUNCTION cluster._owned_pump(pump text, caller regrole)
RETURNS int LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p cluster.pump;
BEGIN
	PERFORM cluster._check_text('pump', $1, 63);
	SELECT * INTO p FROM cluster.pump WHERE name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pump "%" does not exist', $1 USING ERRCODE = 'undefined_object';
	ELSIF NOT pg_has_role($2, p.owner, 'USAGE') THEN
		RAISE EXCEPTION 'permission denied for pump "%"', $1
			USING ERRCODE = 'insufficient_privilege', DETAIL = format('It is owned by %s.', p.owner);
	END IF;
	RETURN p.id;
END
$$;

CREATE FUNCTION cluster._grant_worker(handler text, role regrole, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int := cluster._owned_handler($1, $3);
BEGIN
	PERFORM cluster._check_grantee($2);
	INSERT INTO cluster.worker_grant (handler_id, grantee, granted_by)
	VALUES (hid, $2, $3) ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION cluster.grant_worker(handler text, role regrole)
RETURNS void LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.grant_worker(text, regrole) IS
'allow a role (and its members) to register, heartbeat and unregister workers of your handler: they receive its events';

CREATE FUNCTION cluster._revoke_worker(handler text, role regrole, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int := cluster._owned_handler($1, $3);
BEGIN
	PERFORM cluster._check_grantee($2);
	DELETE FROM cluster.worker_grant g WHERE g.handler_id = hid AND g.grantee = $2;
	/* its registrations go too; those of its members are no longer dialled */
	DELETE FROM cluster.worker w WHERE w.handler_id = hid AND w.registered_by = $2
	   AND NOT cluster._may_manage_workers(hid, $2);
END
$$;

CREATE FUNCTION cluster.revoke_worker(handler text, role regrole)
RETURNS void LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.revoke_worker(text, regrole) IS
'take back grant_worker: the role''s workers are unregistered, its members'' are no longer dialled';

CREATE FUNCTION cluster._grant_pump(pump text, role regrole, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid int := cluster._owned_pump($1, $3);
BEGIN
	PERFORM cluster._check_grantee($2);
	INSERT INTO cluster.pump_grant (pump_id, grantee, granted_by)
	VALUES (pid, $2, $3) ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION cluster.grant_pump(pump text, role regrole)
RETURNS void LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.grant_pump(text, regrole) IS
'allow a role (and its members) to attach handlers to your pump: they receive the events you read from its source';

CREATE FUNCTION cluster._revoke_pump(pump text, role regrole, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid int := cluster._owned_pump($1, $3);
BEGIN
	PERFORM cluster._check_grantee($2);
	DELETE FROM cluster.pump_grant g WHERE g.pump_id = pid AND g.grantee = $2;
END
$$;

CREATE FUNCTION cluster.revoke_pump(pump text, role regrole)
RETURNS void LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.revoke_pump(text, regrole) IS
'take back grant_pump: the role''s handlers of the pump stop at their next round, with last_error saying why';

CREATE VIEW cluster.grants AS
SELECT 'pump' AS object_type, p.name AS object_name, g.grantee, g.granted_by, g.granted_at
  FROM cluster.pump_grant g JOIN cluster.pump p ON p.id = g.pump_id
UNION ALL
SELECT 'handler', h.name, g.grantee, g.granted_by, g.granted_at
  FROM cluster.worker_grant g JOIN cluster.handler h ON h.id = g.handler_id;
COMMENT ON VIEW cluster.grants IS
'who may attach handlers to a pump (grant_pump) and register workers for a handler (grant_worker), besides their owners';

CREATE FUNCTION cluster._worker_status(
	OUT worker_id text, OUT connected boolean, OUT in_flight int, OUT delivered bigint,
	OUT acked bigint, OUT failed bigint, OUT reconnects bigint, OUT last_error text,
	OUT rtt_ms double precision, OUT unhealthy_until timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_worker_status';

CREATE VIEW cluster.workers AS
SELECT w.id, h.name AS handler, w.address, w.capacity, w.registered_by,
	   w.registered_at, w.last_heartbeat,
	   coalesce(s.connected, false) AS connected,
	   coalesce(s.in_flight, 0) AS in_flight,
	   coalesce(s.delivered, 0) AS delivered,
	   coalesce(s.acked, 0) AS acked,
	   coalesce(s.failed, 0) AS failed,
	   coalesce(s.reconnects, 0) AS reconnects,
	   s.last_error, s.rtt_ms, s.unhealthy_until,
	   cluster._worker_address_allowed(w.address) AS address_allowed
  FROM cluster.worker w
  JOIN cluster.handler h ON h.id = w.handler_id
  LEFT JOIN cluster._worker_status() s ON s.worker_id = w.id;
COMMENT ON VIEW cluster.workers IS
'registered workers and their live connection: connected, in flight, delivered, acked, failed, reconnects, last error, round-trip time';

-------------------------------------------------------------------------
-- Dumps and privileges
-------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('cluster.lease', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.instance', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.kv', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.coordinator', $$WHERE name <> 'default'$$);
SELECT pg_catalog.pg_extension_config_dump('cluster.coordinator_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.events', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.pump', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.pump_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.handler', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.handler_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.dead_letters_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.worker', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.pump_grant', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.worker_grant', '');

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA cluster FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA cluster FROM PUBLIC;

GRANT SELECT ON cluster.leases, cluster.engines, cluster.coordinators TO PUBLIC;
GRANT EXECUTE ON FUNCTION cluster._engine_status() TO PUBLIC;

/* Publishing: through the functions, or INSERT / COPY into cluster.events. */
GRANT EXECUTE ON FUNCTION
	cluster.publish(text, jsonb, text, jsonb),
	cluster.publish_batch(text, jsonb)
TO cluster_worker;
/* not id or txid: the pump's order depends on them being the defaults */
GRANT INSERT (stream, key, payload, headers, created_at) ON cluster.events TO cluster_worker;
GRANT USAGE ON SEQUENCE cluster.events_id_seq TO cluster_worker;

/*
 * Pumps and handlers are managed by cluster_admin through SECURITY INVOKER
 * functions: a handler records its creator, whose privileges its function
 * runs with, and row-level security keeps others from changing it.
 */
GRANT SELECT ON cluster.pumps, cluster.handlers TO cluster_worker;
GRANT EXECUTE ON FUNCTION cluster._handler_status() TO cluster_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON cluster.pump, cluster.handler TO cluster_admin;
GRANT SELECT, UPDATE (replay) ON cluster.dead_letters TO cluster_admin;
GRANT SELECT ON cluster.events, cluster.coordinator TO cluster_admin;
GRANT EXECUTE ON FUNCTION
	cluster.create_pump(text, regclass, text, interval, name, name, name, name, name, name),
	cluster.drop_pump(text),
	cluster.create_handler(text, text, regprocedure, text, int, int, interval, int, int),
	cluster.alter_handler(text, regprocedure, text, int, int, interval, int, boolean, int),
	cluster.drop_handler(text),
	cluster.pause_handler(text),
	cluster.resume_handler(text),
	cluster.reset_handler(text, text),
	cluster.replay_dead_letters(text, bigint[]),
	cluster.handler_state(text),
	cluster._check_text(text, text, int),
	cluster._check_interval(text, interval, interval),
	cluster._check_range(text, int, int, int),
	cluster._check_column(regclass, text, name, regtype[]),
	cluster._check_handler_settings(text, int, int, interval, int, int),
	cluster._check_handler_function(regprocedure, regrole),
	cluster._handler_for_update(text),
	cluster._handler_guard(),
	cluster._pump_guard(),
	cluster._position_before(int, timestamptz),
	cluster._may_read_pump(int, regrole),
	cluster.grant_pump(text, regrole),
	cluster.revoke_pump(text, regrole),
	cluster.grant_worker(text, regrole),
	cluster.revoke_worker(text, regrole)
TO cluster_admin;
GRANT SELECT ON cluster.pump_grant TO cluster_admin;
GRANT EXECUTE ON FUNCTION
	cluster.register_worker(text, text, text, int),
	cluster.worker_heartbeat(text),
	cluster.unregister_worker(text),
	cluster._worker_status(),
	cluster._worker_address_allowed(text),
	cluster._lag(int)
TO cluster_worker;
GRANT SELECT ON cluster.workers, cluster.grants TO cluster_worker;
/* create_pump puts this trigger on the admin's own outbox table */
GRANT EXECUTE ON FUNCTION cluster._wake_leaders() TO cluster_admin;

GRANT EXECUTE ON FUNCTION
	cluster.acquire_lease(text, text, interval),
	cluster.renew_lease(text, text, interval),
	cluster.release_lease(text, text),
	cluster.register_instance(text, text),
	cluster.heartbeat(text),
	cluster.unregister_instance(text),
	cluster.live_instances(interval),
	cluster.kv_increment(text, interval),
	cluster.kv_set_if_not_exists(text, text, interval),
	cluster.kv_extend_ttl(text, interval),
	cluster.kv_delete(text),
	cluster.kv_get(text)
TO cluster_worker;

GRANT EXECUTE ON FUNCTION
	cluster.create_coordinator(text, interval, int),
	cluster.drop_coordinator(text)
TO cluster_admin;
