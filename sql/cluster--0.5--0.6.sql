/*
 * cluster 0.5 -> 0.6: handlers read their pumps by snapshot steps, so no
 * open transaction anywhere holds a stream back.  A handler's cursor
 * becomes a position made of snapshots (src/position.h); every cursor and
 * its done and retry entries are converted to it, nothing lost and nothing
 * handled twice.
 */
\echo Use "ALTER EXTENSION cluster UPDATE TO '0.6'" to load this file. \quit

/*
 * The events at or before (t, i) in (txid, id) order, as a position: the
 * transactions below t, and t's own events up to i.  A 0.5 cursor or read
 * position was below the xmin of the snapshot it was read with, so every
 * transaction below it had ended: no snapshot needs an xip.
 */
CREATE FUNCTION cluster._position_upto(t xid8, i bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN t::text::numeric = 0 THEN jsonb_build_object('snapshot', '1:1:')
		   ELSE jsonb_build_object('snapshot', format('%s:%s:', t, t),
								   'step', format('%s:%s:', t::text::numeric + 1, t::text::numeric + 1),
								   'after', jsonb_build_array(t::text, i::text)) END
$$;

/*
 * 0.5 kept the cursor [txid, id], done ranges [from txid, from id, to
 * txid, to id, count] (before 0.3: [txid, id]) and retries above it, all
 * of events it had read.  0.6 keeps the cursor, the position read to
 * ("read": here the last done or retrying event, as everything up to it
 * had been read), and the same ranges and retries between the two.
 */
WITH old AS (
	SELECT h.id, (h.state #>> '{cursor,0}')::xid8 AS ct, (h.state #>> '{cursor,1}')::bigint AS ci,
		   (SELECT jsonb_agg(jsonb_build_array(e ->> 0, e ->> 1, COALESCE(e ->> 2, e ->> 0),
											   COALESCE(e ->> 3, e ->> 1), COALESCE((e ->> 4)::int, 1)))
			  FROM jsonb_array_elements(h.state -> 'done') e) AS done,
		   (SELECT ARRAY[p.t::text, p.i::text]
			  FROM (SELECT COALESCE(e ->> 2, e ->> 0)::xid8 AS t, COALESCE(e ->> 3, e ->> 1)::bigint AS i
					  FROM jsonb_array_elements(h.state -> 'done') e
					UNION ALL
					SELECT (r.value ->> 'txid')::xid8, r.key::bigint
					  FROM jsonb_each(h.state -> 'retry') r) p
			 ORDER BY p.t DESC, p.i DESC LIMIT 1) AS last
	  FROM cluster.handler h
	 WHERE jsonb_typeof(h.state -> 'cursor') = 'array'
)
UPDATE cluster.handler h
   SET state = h.state
	   || jsonb_build_object('cursor', cluster._position_upto(old.ct, old.ci),
							 'done', COALESCE(old.done, '[]'))
	   || CASE WHEN old.last IS NULL THEN '{}'
		  ELSE jsonb_build_object('read', cluster._position_upto(old.last[1]::xid8, old.last[2]::bigint)) END
  FROM old
 WHERE h.id = old.id;

DROP FUNCTION cluster._position_upto(xid8, bigint);

ALTER TABLE cluster.handler ALTER COLUMN state
	SET DEFAULT '{"cursor": {"snapshot": "1:1:"}, "done": [], "retry": {}, "counters": {}}';

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
		cursor := '{"snapshot": "1:1:"}';
	ELSIF lower($2) = 'end' THEN
		/* what has committed is behind; what is in progress, and later, ahead */
		cursor := jsonb_build_object('snapshot', pg_current_snapshot()::text);
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
		   state = (state - 'read') || jsonb_build_object('cursor', cursor, 'done', '[]'::jsonb,
														  'retry', '{}'::jsonb)
	 WHERE id = h.id;
END
$$;
COMMENT ON FUNCTION cluster.reset_handler(text, text) IS
'move a handler''s cursor: ''start'' (every event again), ''end'' (past every event committed now; those of transactions still in progress come when they commit), or a timestamp (the events created from then on, in pump order)';

/*
 * A position, short: its snapshot's xmin and xmax, how many transactions
 * were in progress at it, and within a step the step's xmax and the event
 * it is at; never the list of transactions in progress.
 */
CREATE FUNCTION cluster._position_text(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_snapshot_xmin(s)::text || ':' || pg_snapshot_xmax(s)::text
		   || CASE WHEN n > 0 THEN format(' (%s in progress)', n) ELSE '' END
		   || CASE WHEN p ? 'step'
				   THEN format(', step to %s at %s/%s', pg_snapshot_xmax((p ->> 'step')::pg_snapshot),
							   p #>> '{after,0}',
							   CASE p #>> '{after,1}' WHEN '9223372036854775807' THEN '*'
									ELSE p #>> '{after,1}' END)
				   ELSE '' END
	  FROM (SELECT (p ->> 'snapshot')::pg_snapshot AS s) x,
		   LATERAL (SELECT count(*) AS n FROM pg_snapshot_xip(x.s)) c
$$;
REVOKE ALL ON FUNCTION cluster._position_text(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster._position_text(jsonb) TO cluster_worker;

CREATE FUNCTION cluster._handler_waits(
	OUT handler_id int, OUT waiting_for text, OUT next_retry_at timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'cluster_handler_waits';
REVOKE ALL ON FUNCTION cluster._handler_waits() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster._handler_waits() TO cluster_worker;
COMMENT ON FUNCTION cluster._handler_waits() IS
'internal: what each handler waits for, as its leader last reported it (cluster.handlers)';

CREATE OR REPLACE VIEW cluster.handlers AS
SELECT h.name, p.name AS pump, h.function, h.owner, h.ordering,
	   cluster._position_text(h.state -> 'cursor') AS cursor,
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
	   coalesce((h.state #>> '{counters,dead_lettered}')::bigint, 0) AS dead_lettered,
	   CASE WHEN h.paused THEN 'paused'
			WHEN w.handler_id IS NULL THEN 'a leader'
			ELSE w.waiting_for END AS waiting_for,
	   CASE WHEN NOT h.paused THEN w.next_retry_at END AS next_retry_at
  FROM cluster.handler h
  JOIN cluster.pump p ON p.id = h.pump_id
  LEFT JOIN cluster._handler_status() s ON s.handler_id = h.id
  LEFT JOIN cluster._handler_waits() w ON w.handler_id = h.id,
  LATERAL cluster._handler_lag(h.id) lag;
COMMENT ON VIEW cluster.handlers IS
'every handler: cursor (the xmin:xmax of the snapshot every event visible in is done, how many transactions were in progress at it, and the step it is within), how far behind it is, what is in flight or retrying, dead letters, the last error, its processed, failed and dead-lettered counters, what it waits for now (NULL: nothing; paused, a leader, error backoff, no worker connected, worker slots, retries, key order, answers) and when its next retry is due';

COMMENT ON TABLE cluster.events IS
'the built-in event log: publish with cluster.publish(), INSERT or COPY; the pump named after a stream reads it, each event once its transaction has committed';

-- A worker that dialed in stays connected while its handler is paused
-- (0.6): the view says so.
CREATE OR REPLACE VIEW cluster.workers AS
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
	   false AS dialed_in,
	   h.paused AS handler_paused
  FROM cluster.worker w
  JOIN cluster.handler h ON h.id = w.handler_id
  LEFT JOIN cluster._worker_status() s ON s.worker_id = w.id
UNION ALL
SELECT t.id, h.name, s.peer, t.capacity, t.issued_by, t.issued_at, NULL,
	   s.connected, s.in_flight, s.delivered, s.acked, s.failed, s.reconnects,
	   s.last_error, s.rtt_ms, s.unhealthy_until, NULL, true, h.paused
  FROM cluster.worker_token t
  JOIN cluster.handler h ON h.id = t.handler_id
  JOIN cluster._worker_status() s ON s.worker_id = t.id;
COMMENT ON VIEW cluster.workers IS
'workers the leader dials (registered) and workers that dialed in (with a token, while connected): connected, in flight, delivered, acked, failed, reconnects, last error, round-trip time, and whether their handler is paused (a paused handler''s registered workers are not dialled; those that dialed in stay connected and get no events)';
