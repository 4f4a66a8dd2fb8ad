/* cluster 0.3 -> 0.4: workers that dial in */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.4'" to load this file. \quit

-------------------------------------------------------------------------
-- A leader that listens
-------------------------------------------------------------------------

/*
 * Where the coordinator's leader listens for workers that dial in, as
 * "host:port"; NULL: it does not.  Only endpoints a superuser lists in
 * cluster.worker_listen may be set (the database server opens the port),
 * and one off the loopback interface only with a certificate
 * (cluster.listen_cert_file): the workers' tokens must not cross a
 * network in clear.
 */
ALTER TABLE cluster.coordinator ADD COLUMN listen text
	CONSTRAINT coordinator_listen CHECK (octet_length(listen) BETWEEN 1 AND 300);

/* Is "listen" a host:port that cluster.worker_listen allows?  See src/allowlist.c. */
CREATE FUNCTION cluster._check_listen(listen text)
RETURNS void LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'cluster_check_listen';

DROP FUNCTION cluster.create_coordinator(text, interval, int);
CREATE FUNCTION cluster.create_coordinator(name text,
										   lease_ttl interval DEFAULT '10 s',
										   standby_engines int DEFAULT 1,
										   listen text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	PERFORM cluster._check_interval('lease_ttl', $2, interval '1 second');
	PERFORM cluster._check_range('standby_engines', $3, 0, 16);
	IF $4 IS NOT NULL THEN
		PERFORM cluster._check_listen($4);
	END IF;
	INSERT INTO cluster.coordinator (name, lease_ttl, standby_engines, listen)
	VALUES ($1, $2, $3, $4);
EXCEPTION
	WHEN unique_violation THEN
		RAISE EXCEPTION 'coordinator "%" already exists', $1
			USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION cluster.create_coordinator(text, interval, int, text) IS
'create a leadership domain: the launcher starts a leader engine and standby_engines standbys for it; with listen (host:port), its leader listens there for workers that dial in';

CREATE FUNCTION cluster.alter_coordinator(name text,
										  lease_ttl interval DEFAULT NULL,
										  standby_engines int DEFAULT NULL,
										  listen text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cluster._check_text('name', $1, 63);
	IF $2 IS NOT NULL THEN
		PERFORM cluster._check_interval('lease_ttl', $2, interval '1 second');
	END IF;
	IF $3 IS NOT NULL THEN
		PERFORM cluster._check_range('standby_engines', $3, 0, 16);
	END IF;
	IF $4 IS NOT NULL AND $4 <> '' THEN
		PERFORM cluster._check_listen($4);
	END IF;
	UPDATE cluster.coordinator c
	   SET lease_ttl = coalesce($2, c.lease_ttl),
		   standby_engines = coalesce($3, c.standby_engines),
		   listen = CASE WHEN $4 IS NULL THEN c.listen ELSE nullif($4, '') END
	 WHERE c.name = $1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coordinator "%" does not exist', $1
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;
COMMENT ON FUNCTION cluster.alter_coordinator(text, interval, int, text) IS
'change a coordinator''s lease_ttl, standby_engines or listen (host:port where its leader listens for workers that dial in; '''' to stop); NULL leaves a setting as it is';

/* a coordinator's listen endpoint moves its leader at commit */
CREATE TRIGGER config_changed AFTER UPDATE OF listen ON cluster.coordinator
	FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();

CREATE OR REPLACE VIEW cluster.coordinators AS
SELECT c.name, c.lease_ttl, c.standby_engines,
	   e.pid AS leader_pid, l.holder AS lease_holder, l.fence,
	   l.expires_at AS lease_expires_at, c.listen
  FROM cluster.coordinator AS c
  LEFT JOIN cluster.lease AS l ON l.key = 'coordinator/' || c.name
  LEFT JOIN cluster.engines AS e ON e.coordinator = c.name AND e.role = 'leader';
COMMENT ON VIEW cluster.coordinators IS
'who leads each coordinator, with which fence, until when, and where its leader listens for workers that dial in';

-------------------------------------------------------------------------
-- Worker tokens
-------------------------------------------------------------------------

/*
 * A worker that dials in presents a token as "Authorization: Bearer
 * <token>".  Only its SHA-256 is stored: the token is shown once, by
 * issue_worker_token.  A token is bound to one handler; its id is the
 * worker's id in cluster.workers.  Like a registration, it counts while
 * its issuer may still manage the handler's workers.
 */
CREATE TABLE cluster.worker_token (
	id			text PRIMARY KEY DEFAULT gen_random_uuid()::text,
	handler_id	int NOT NULL REFERENCES cluster.handler (id) ON DELETE CASCADE,
	token_hash	bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
	label		text CHECK (octet_length(label) <= 200),
	capacity	int NOT NULL CHECK (capacity BETWEEN 1 AND 10000),
	issued_by	regrole NOT NULL,
	issued_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz,
	revoked_at	timestamptz
);
COMMENT ON TABLE cluster.worker_token IS
'tokens of workers that dial in, stored hashed; use cluster.issue_worker_token(), read cluster.worker_tokens';

CREATE TRIGGER config_changed AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE
	ON cluster.worker_token FOR EACH STATEMENT EXECUTE FUNCTION cluster._config_changed();

CREATE FUNCTION cluster._issue_worker_token(handler text, capacity int,
	expires_in interval, label text, caller regrole)
RETURNS text LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int := cluster._worker_handler($1, $5);
	-- 244 random bits from the server's strong random source
	token text := 'cwt_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
	PERFORM cluster._check_range('capacity', $2, 1, 10000);
	IF $3 IS NOT NULL AND $3 <= interval '0' THEN
		RAISE EXCEPTION 'argument "%" must be positive', 'expires_in'
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', $3);
	END IF;
	IF $4 IS NOT NULL THEN
		PERFORM cluster._check_text('label', $4, 200);
	END IF;
	INSERT INTO cluster.worker_token (handler_id, token_hash, label, capacity, issued_by, expires_at)
	VALUES (hid, sha256(convert_to(token, 'UTF8')), $4, $2, $5, now() + $3);
	RETURN token;
END
$$;

CREATE FUNCTION cluster.issue_worker_token(handler text, capacity int DEFAULT 4,
	expires_in interval DEFAULT NULL, label text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.issue_worker_token(text, int, interval, text) IS
'a token for one worker that dials in to the handler''s leader (shown this once, stored hashed); capacity: its deliveries in flight; expires_in: NULL for none. For the handler''s owner and the roles it granted with grant_worker';

/* The token's handler, for a caller allowed to manage it; NULL when there is no such token. */
CREATE FUNCTION cluster._revoke_worker_token(token_id text, caller regrole)
RETURNS boolean LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int;
BEGIN
	PERFORM cluster._check_text('token_id', $1, 64);
	SELECT t.handler_id INTO hid FROM cluster.worker_token t WHERE t.id = $1;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF NOT cluster._may_manage_workers(hid, $2) THEN
		RAISE EXCEPTION 'permission denied for the worker token'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Role %s may not manage the workers of its handler.', $2);
	END IF;
	UPDATE cluster.worker_token t SET revoked_at = now()
	 WHERE t.id = $1 AND t.revoked_at IS NULL;
	RETURN FOUND;
END
$$;

CREATE FUNCTION cluster.revoke_worker_token(token_id text)
RETURNS boolean LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_for_caller';
COMMENT ON FUNCTION cluster.revoke_worker_token(text) IS
'revoke a worker token: the leader closes its connection and refuses it from then on; false when it was already revoked or does not exist';

/* Revoking grant_worker also revokes the tokens the role issued. */
CREATE OR REPLACE FUNCTION cluster._revoke_worker(handler text, role regrole, caller regrole)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	hid int := cluster._owned_handler($1, $3);
BEGIN
	PERFORM cluster._check_grantee($2);
	DELETE FROM cluster.worker_grant g WHERE g.handler_id = hid AND g.grantee = $2;
	/* its registrations and tokens go too; those of its members no longer count */
	DELETE FROM cluster.worker w WHERE w.handler_id = hid AND w.registered_by = $2
	   AND NOT cluster._may_manage_workers(hid, $2);
	UPDATE cluster.worker_token t SET revoked_at = now()
	 WHERE t.handler_id = hid AND t.issued_by = $2 AND t.revoked_at IS NULL
	   AND NOT cluster._may_manage_workers(hid, $2);
END
$$;
COMMENT ON FUNCTION cluster.revoke_worker(text, regrole) IS
'take back grant_worker: the role''s workers are unregistered and its worker tokens revoked; its members'' no longer count';

CREATE VIEW cluster.worker_tokens AS
SELECT t.id, h.name AS handler, t.label, t.capacity, t.issued_by, t.issued_at,
	   t.expires_at, t.revoked_at,
	   t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) AS valid
  FROM cluster.worker_token t
  JOIN cluster.handler h ON h.id = t.handler_id;
COMMENT ON VIEW cluster.worker_tokens IS
'tokens of workers that dial in (never the token itself): handler, label, capacity, who issued it, expiry, revocation';

/*
 * DROP EXTENSION locks the tables engines read, in the order they read
 * them, the tokens now among them (after the workers): an engine still
 * running must not hold one while it waits for another.
 */
CREATE OR REPLACE FUNCTION cluster._before_drop()
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
		cluster.dead_letters, cluster.worker, cluster.worker_token IN ACCESS EXCLUSIVE MODE;
	PERFORM cluster._drop_wake_triggers(ARRAY(SELECT id FROM cluster.pump));
	EXECUTE format('ALTER DATABASE %I SET cluster.fence_floor = %L', current_database(),
				   greatest((SELECT max(fence) FROM cluster.lease), cluster._fence_floor())::text);
END
$$;

-------------------------------------------------------------------------
-- Both kinds of workers in one view
-------------------------------------------------------------------------

DROP VIEW cluster.workers;
DROP FUNCTION cluster._worker_status();
CREATE FUNCTION cluster._worker_status(
	OUT worker_id text, OUT connected boolean, OUT in_flight int, OUT delivered bigint,
	OUT acked bigint, OUT failed bigint, OUT reconnects bigint, OUT last_error text,
	OUT rtt_ms double precision, OUT unhealthy_until timestamptz, OUT peer text)
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
	   cluster._worker_address_allowed(w.address) AS address_allowed,
	   false AS dialed_in
  FROM cluster.worker w
  JOIN cluster.handler h ON h.id = w.handler_id
  LEFT JOIN cluster._worker_status() s ON s.worker_id = w.id
UNION ALL
SELECT t.id, h.name, s.peer, t.capacity, t.issued_by, t.issued_at, NULL,
	   s.connected, s.in_flight, s.delivered, s.acked, s.failed, s.reconnects,
	   s.last_error, s.rtt_ms, s.unhealthy_until, NULL, true
  FROM cluster.worker_token t
  JOIN cluster.handler h ON h.id = t.handler_id
  JOIN cluster._worker_status() s ON s.worker_id = t.id;
COMMENT ON VIEW cluster.workers IS
'workers the leader dials (registered) and workers that dialed in (with a token, while connected): connected, in flight, delivered, acked, failed, reconnects, last error, round-trip time';

-------------------------------------------------------------------------
-- For monitoring: the handlers' failure counters in their view
-------------------------------------------------------------------------

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
	   h.paused,
	   coalesce((h.state #>> '{counters,failed}')::bigint, 0) AS failed,
	   coalesce((h.state #>> '{counters,dead_lettered}')::bigint, 0) AS dead_lettered
  FROM cluster.handler h
  JOIN cluster.pump p ON p.id = h.pump_id
  LEFT JOIN cluster._handler_status() s ON s.handler_id = h.id,
  LATERAL cluster._handler_lag(h.id) lag;
COMMENT ON VIEW cluster.handlers IS
'every handler: cursor (txid/id; txid/* after every event of that transaction), how far behind it is, what is in flight or retrying, dead letters, the last error, and its processed, failed and dead-lettered counters';

-------------------------------------------------------------------------
-- Privileges
-------------------------------------------------------------------------

REVOKE ALL ON cluster.worker_token FROM PUBLIC;
REVOKE ALL ON FUNCTION cluster._check_listen(text),
	cluster.create_coordinator(text, interval, int, text),
	cluster.alter_coordinator(text, interval, int, text),
	cluster._issue_worker_token(text, int, interval, text, regrole),
	cluster.issue_worker_token(text, int, interval, text),
	cluster._revoke_worker_token(text, regrole),
	cluster.revoke_worker_token(text),
	cluster._worker_status()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	cluster.create_coordinator(text, interval, int, text),
	cluster.alter_coordinator(text, interval, int, text)
TO cluster_admin;
GRANT EXECUTE ON FUNCTION
	cluster.issue_worker_token(text, int, interval, text),
	cluster.revoke_worker_token(text),
	cluster._worker_status()
TO cluster_worker;
GRANT SELECT ON cluster.workers, cluster.worker_tokens TO cluster_worker;

/*
 * Tokens are not dumped, like registrations: they are credentials of live
 * workers.  After a restore into another server, issue new ones.
 */

/* the engines wait for this update: wake the scheduler at its commit */
UPDATE cluster.coordinator SET name = name WHERE false;
