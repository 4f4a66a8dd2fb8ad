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
				   AND k.classid = 1668052339::oid AND k.objid = $1::oid AND k.objsubid = 2
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
-- Dumps and privileges
-------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('cluster.lease', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.instance', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.kv', '');
SELECT pg_catalog.pg_extension_config_dump('cluster.coordinator', $$WHERE name <> 'default'$$);
SELECT pg_catalog.pg_extension_config_dump('cluster.coordinator_id_seq', '');

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA cluster FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA cluster FROM PUBLIC;

GRANT SELECT ON cluster.leases, cluster.engines, cluster.coordinators TO PUBLIC;
GRANT EXECUTE ON FUNCTION cluster._engine_status() TO PUBLIC;

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
