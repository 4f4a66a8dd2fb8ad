-- Events, pumps and handlers: publishing, the SQL API and its errors,
-- privileges.  No engine runs in this database: nothing is ever processed.
CREATE EXTENSION cluster;
\set SHOW_CONTEXT never

-------------------------------------------------------------------------
-- Publishing
-------------------------------------------------------------------------

SELECT cluster.publish('orders', '{"n": 1}') AS first_id \gset
SELECT cluster.publish('orders', '{"n": 2}', key => 'k1',
                       headers => '{"h": "v"}') AS second_id \gset
SELECT :second_id > :first_id AS increasing;
SELECT stream, key, payload, headers FROM cluster.events ORDER BY id;
-- errors
SELECT cluster.publish(NULL, '{}');
SELECT cluster.publish('', '{}');
SELECT cluster.publish(repeat('s', 513), '{}');
SELECT cluster.publish('orders', NULL);
SELECT count(*) AS events FROM cluster.events;

-- a batch: ids in the order of the elements
SELECT cluster.publish_batch('orders',
    '[{"payload": {"n": 3}, "key": "k1"},
      {"payload": {"n": 4}, "headers": {"h": 1}},
      {"payload": {"n": 5}, "key": "k2", "headers": null}]') AS ids \gset
SELECT cardinality(:'ids'::bigint[]) AS n,
       (:'ids'::bigint[])[1] > :second_id AS after_earlier_ones,
       :'ids'::bigint[] = array(SELECT unnest(:'ids'::bigint[]) ORDER BY 1) AS increasing;
SELECT e.stream, e.payload, e.key, e.headers
  FROM unnest(:'ids'::bigint[]) WITH ORDINALITY AS u(id, n)
  JOIN cluster.events e ON e.id = u.id
 ORDER BY u.n;
SELECT cluster.publish_batch('orders', '[]');
-- errors
SELECT cluster.publish_batch('orders', '{"payload": 1}');
SELECT cluster.publish_batch('orders', '"not an array"');
SELECT cluster.publish_batch('orders', '[{"payload": 1}, {"key": "no payload"}]');
SELECT cluster.publish_batch('orders', '[{"payload": null}]');
SELECT cluster.publish_batch('orders', '[1, 2]');
SELECT cluster.publish_batch('orders', NULL);
SELECT cluster.publish_batch(NULL, '[{"payload": 1}]');
SELECT cluster.publish_batch('', '[{"payload": 1}]');
-- nothing of a refused batch is kept
SELECT count(*) AS events FROM cluster.events;

-- a plain INSERT; txid defaults to the inserting transaction's id
BEGIN;
INSERT INTO cluster.events (stream, payload) VALUES ('orders', '{"n": 6}')
RETURNING txid = pg_current_xact_id() AS txid_is_mine;
SELECT cluster.publish('orders', '{"n": 7}') AS in_xact_id \gset
SELECT txid = pg_current_xact_id() AS txid_is_mine
  FROM cluster.events WHERE id = :in_xact_id;
COMMIT;
-- each transaction has its own txid
SELECT count(DISTINCT txid) AS transactions, count(*) AS events FROM cluster.events;

-------------------------------------------------------------------------
-- Pumps
-------------------------------------------------------------------------

-- the built-in events of a stream
SELECT cluster.create_pump('orders');
SELECT cluster.create_pump('orders');
SELECT cluster.create_pump('x', coordinator => 'nowhere');
SELECT cluster.create_pump('x', retention => '0 s');
SELECT cluster.create_pump('x', retention => '500 ms');
SELECT cluster.create_pump('x', retention => NULL);
SELECT cluster.create_pump(NULL);
SELECT cluster.create_pump('');
SELECT cluster.create_pump(repeat('p', 64));
SELECT cluster.create_coordinator('billing');
SELECT cluster.create_pump('invoices', coordinator => 'billing', retention => '7 days');
SELECT name, source, coordinator, retention, handlers FROM cluster.pumps ORDER BY name;
SELECT cluster.create_pump('no_table', 'no_such_table');

-- a user table (outbox) with the default column names
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    payload jsonb NOT NULL
);
CREATE INDEX ON outbox (txid, id);
SELECT cluster.create_pump('outbox', 'outbox');
-- inserts into it wake the leaders
SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal;

-- column mapping
CREATE TABLE mapped (
    seq int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xact xid8 NOT NULL DEFAULT pg_current_xact_id(),
    body jsonb NOT NULL,
    partition_key varchar(100),
    meta jsonb,
    inserted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON mapped (xact, seq);
SELECT cluster.create_pump('mapped', 'mapped', id_column => 'seq', txid_column => 'xact',
                           payload_column => 'body', key_column => 'partition_key',
                           headers_column => 'meta', created_at_column => 'inserted_at');
SELECT name, id_column, txid_column, payload_column, key_column, headers_column,
       created_at_column
  FROM cluster.pump WHERE source IS NOT NULL ORDER BY name;
SELECT name, source, coordinator, retention FROM cluster.pumps ORDER BY name;

-- errors: each names the column and says how to fix it
CREATE TABLE no_id (txid xid8 NOT NULL DEFAULT pg_current_xact_id(), payload jsonb);
SELECT cluster.create_pump('no_id', 'no_id');
CREATE TABLE no_txid (id bigint, payload jsonb);
SELECT cluster.create_pump('no_txid', 'no_txid');
CREATE TABLE bigint_txid (id bigint, txid bigint, payload jsonb);
SELECT cluster.create_pump('bigint_txid', 'bigint_txid');
CREATE TABLE json_payload (id bigint, txid xid8 DEFAULT pg_current_xact_id(), payload json);
SELECT cluster.create_pump('json_payload', 'json_payload');
SELECT cluster.create_pump('bad_key', 'outbox', key_column => 'nope');
SELECT cluster.create_pump('bad_key', 'mapped', id_column => 'seq', txid_column => 'xact',
                           payload_column => 'body', key_column => 'meta');
SELECT cluster.create_pump('bad_headers', 'mapped', id_column => 'seq', txid_column => 'xact',
                           payload_column => 'body', headers_column => 'partition_key');
SELECT cluster.create_pump('bad_created_at', 'mapped', id_column => 'seq', txid_column => 'xact',
                           payload_column => 'body', created_at_column => 'xact');
-- the name of a pump of the built-in events
SELECT cluster.create_pump('orders', 'outbox');
-- none of them left a pump or a trigger behind
SELECT count(*) AS pumps FROM cluster.pump;
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgname LIKE 'cluster\_pump\_%' AND NOT tgisinternal ORDER BY 2;

-- no index on (txid, id): a notice says which one to create
CREATE TABLE unindexed (id bigint, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                        payload jsonb NOT NULL);
SELECT cluster.create_pump('unindexed', 'unindexed');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'unindexed'::regclass AND NOT tgisinternal;
-- drop_pump removes the trigger
SELECT cluster.drop_pump('unindexed');
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = 'unindexed'::regclass AND NOT tgisinternal;
SELECT cluster.drop_pump('unindexed');
SELECT cluster.drop_pump(NULL);

-------------------------------------------------------------------------
-- Handlers
-------------------------------------------------------------------------

CREATE FUNCTION handle_void(batch jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION handle_patch(batch jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION handle_text(batch text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION handle_int(batch jsonb) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION handle_two(batch jsonb, extra int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION handle_set(batch jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT $1 $$;
CREATE PROCEDURE handle_proc(batch jsonb) LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION handle_rows(batch cluster.event[]) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION handle_row(batch cluster.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;

-- defaults: no function, ordering by key, not paused, at the first event
SELECT cluster.create_handler('mail', 'orders');
SELECT cluster.create_handler('search', 'orders', 'handle_patch(jsonb)', ordering => 'none');
SELECT cluster.create_handler('audit', 'outbox', 'handle_void(jsonb)', batch_size => 10,
                              max_attempts => 3, ack_timeout => '5 s', max_in_flight => 10);
SELECT name, pump, function, owner = current_user::regrole AS mine, ordering, paused
  FROM cluster.handlers ORDER BY name;
SELECT name, batch_size, max_attempts, ack_timeout, max_in_flight, epoch
  FROM cluster.handler ORDER BY name;
SELECT name, cursor, lag_events, lag_seconds >= 0 AS lag_seconds_ok, in_flight, retrying,
       dead_letters, processed, last_error, last_error_at
  FROM cluster.handlers ORDER BY name;
-- lag_events: every event of the stream
SELECT count(*) AS orders_events FROM cluster.events WHERE stream = 'orders';
SELECT cluster.handler_state('mail');
SELECT name, handlers FROM cluster.pumps ORDER BY name;

-- errors
SELECT cluster.create_handler('x', 'nowhere');
SELECT cluster.create_handler('mail', 'orders');
SELECT cluster.create_handler('mail', 'invoices');
SELECT cluster.create_handler(NULL, 'orders');
SELECT cluster.create_handler('x', NULL);
SELECT cluster.create_handler(repeat('h', 64), 'orders');
SELECT cluster.create_handler('x', 'orders', 'handle_text(text)');
SELECT cluster.create_handler('x', 'orders', 'handle_int(jsonb)');
SELECT cluster.create_handler('x', 'orders', 'handle_two(jsonb, int)');
SELECT cluster.create_handler('x', 'orders', 'handle_set(jsonb)');
SELECT cluster.create_handler('x', 'orders', 'handle_proc(jsonb)');
SELECT cluster.create_handler('x', 'orders', 'handle_row(cluster.event)');
SELECT cluster.create_handler('x', 'orders', 'no_such_function(jsonb)');
SELECT cluster.create_handler('x', 'orders', ordering => 'random');
SELECT cluster.create_handler('x', 'orders', ordering => NULL);
SELECT cluster.create_handler('x', 'orders', batch_size => 0);
SELECT cluster.create_handler('x', 'orders', batch_size => 10001);
SELECT cluster.create_handler('x', 'orders', max_attempts => 0);
SELECT cluster.create_handler('x', 'orders', max_attempts => NULL);
SELECT cluster.create_handler('x', 'orders', max_in_flight => 50);
SELECT cluster.create_handler('x', 'orders', ack_timeout => '0 s');
SELECT cluster.create_handler('x', 'orders', ack_timeout => NULL);
SELECT name FROM cluster.handler ORDER BY name;
-- the batch may come as rows
SELECT cluster.create_handler('rows', 'orders', 'handle_rows(cluster.event[])');
SELECT function FROM cluster.handlers WHERE name = 'rows';
SELECT cluster.drop_handler('rows');

-- a pump with handlers can't be dropped
SELECT cluster.drop_pump('orders');
SELECT cluster.drop_pump('outbox');
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal;

-- alter_handler: NULL keeps a setting
SELECT cluster.alter_handler('mail', batch_size => 50);
SELECT cluster.alter_handler('mail', function => 'handle_void(jsonb)', ordering => 'none');
SELECT name, function, ordering, batch_size, max_attempts, ack_timeout, max_in_flight
  FROM cluster.handler WHERE name = 'mail';
SELECT cluster.alter_handler('mail', remove_function => true);
SELECT function IS NULL AS no_function, ordering FROM cluster.handlers WHERE name = 'mail';
SELECT cluster.alter_handler('mail', batch_size => 2000);
SELECT cluster.alter_handler('mail', function => 'handle_int(jsonb)');
SELECT cluster.alter_handler('mail', ordering => 'random');
SELECT cluster.alter_handler('mail', max_attempts => 1001);
SELECT cluster.alter_handler('mail', ack_timeout => '-1 s');
SELECT cluster.alter_handler('nobody', batch_size => 10);
SELECT cluster.alter_handler(NULL, batch_size => 10);
-- the refused changes left it alone
SELECT name, function, ordering, batch_size, max_attempts, ack_timeout, max_in_flight
  FROM cluster.handler WHERE name = 'mail';

-- pause and resume
SELECT cluster.pause_handler('mail');
SELECT name, paused FROM cluster.handlers ORDER BY name;
SELECT cluster.pause_handler('mail');
SELECT cluster.resume_handler('mail');
SELECT name, paused FROM cluster.handlers ORDER BY name;
SELECT cluster.pause_handler('nobody');
SELECT cluster.resume_handler('nobody');

-- reset_handler: 'end', 'start', a timestamp; each one starts a new epoch
SELECT cluster.reset_handler('mail', 'end');
SELECT cursor <> '1:1' AS moved, lag_events FROM cluster.handlers WHERE name = 'mail';
SELECT cluster.publish('orders', '{"n": 8}') AS after_end \gset
SELECT lag_events FROM cluster.handlers WHERE name = 'mail';
SELECT cluster.reset_handler('mail', 'start');
SELECT cursor, lag_events FROM cluster.handlers WHERE name = 'mail';
SELECT cluster.reset_handler('mail', '2000-01-01 00:00:00+00');
SELECT cursor, lag_events FROM cluster.handlers WHERE name = 'mail';
SELECT cluster.reset_handler('mail', 'infinity');
SELECT cursor <> '1:1' AS moved, lag_events FROM cluster.handlers WHERE name = 'mail';
-- the cursor is then at the newest event
SELECT h.state -> 'cursor' -> 'after' = jsonb_build_array(e.txid::text, e.id::text) AS at_newest_event
  FROM cluster.handler h, cluster.events e
 WHERE h.name = 'mail' AND e.id = :after_end;
SELECT epoch, state -> 'done' AS done, state -> 'retry' AS retry
  FROM cluster.handler WHERE name = 'mail';
SELECT cluster.reset_handler('mail', 'yesterday at noon');
SELECT cluster.reset_handler('mail', '2024-13-45');
SELECT cluster.reset_handler('mail', '');
SELECT cluster.reset_handler('mail', NULL);
SELECT cluster.reset_handler('nobody', 'start');
SELECT epoch FROM cluster.handler WHERE name = 'mail';

-- a user table's handler: lag counts the table's rows
INSERT INTO outbox (payload) VALUES ('{"a": 1}'), ('{"a": 2}');
SELECT name, cursor, lag_events FROM cluster.handlers WHERE name = 'audit';
SELECT cluster.reset_handler('audit', 'end');
SELECT cursor <> '1:1' AS moved, lag_events FROM cluster.handlers WHERE name = 'audit';
SELECT cluster.reset_handler('audit', 'start');
SELECT cursor, lag_events FROM cluster.handlers WHERE name = 'audit';
-- resetting to a timestamp needs created_at_column
SELECT cluster.reset_handler('audit', '2000-01-01 00:00:00+00');
-- the mapped columns are used
SELECT cluster.create_handler('mapped_reader', 'mapped');
INSERT INTO mapped (body, partition_key) VALUES ('{"b": 1}', 'p');
SELECT name, cursor, lag_events, lag_seconds >= 0 AS lag_seconds_ok
  FROM cluster.handlers WHERE name = 'mapped_reader';
SELECT cluster.reset_handler('mapped_reader', 'infinity');
SELECT cursor <> '1:1' AS moved, lag_events FROM cluster.handlers WHERE name = 'mapped_reader';
SELECT cluster.reset_handler('mapped_reader', '2000-01-01 00:00:00+00');
SELECT cursor, lag_events FROM cluster.handlers WHERE name = 'mapped_reader';

-- handler_state
SELECT cluster.handler_state('search');
SELECT cluster.handler_state('nobody');
SELECT cluster.handler_state(NULL);

-- dead letters
SELECT cluster.replay_dead_letters('mail');
SELECT cluster.replay_dead_letters('nobody');
INSERT INTO cluster.dead_letters (handler_id, event_id, event, attempts, last_error)
SELECT h.id, e.id, jsonb_build_object('id', e.id::text, 'payload', e.payload), 5, 'boom'
  FROM cluster.handler h, cluster.events e
 WHERE h.name = 'mail' AND e.id IN (:first_id, :second_id);
SELECT name, dead_letters FROM cluster.handlers ORDER BY name;
SELECT cluster.replay_dead_letters('mail', ARRAY[:second_id]::bigint[]);
SELECT cluster.replay_dead_letters('mail', ARRAY[:second_id]::bigint[]);
SELECT cluster.replay_dead_letters('mail');
SELECT cluster.replay_dead_letters('mail');
SELECT count(*) FILTER (WHERE replay) AS to_replay, count(*) AS dead_letters
  FROM cluster.dead_letters;

-- drop_handler takes its dead letters along
SELECT cluster.drop_handler('mail');
SELECT cluster.drop_handler('mail');
SELECT cluster.drop_handler(NULL);
SELECT count(*) AS dead_letters FROM cluster.dead_letters;
SELECT name FROM cluster.handlers ORDER BY name;

-------------------------------------------------------------------------
-- Privileges
-------------------------------------------------------------------------

CREATE ROLE pump_admin_a IN ROLE cluster_admin;
CREATE ROLE pump_admin_b IN ROLE cluster_admin;
CREATE ROLE pump_app IN ROLE cluster_worker;
CREATE ROLE pump_nobody;
CREATE FUNCTION handle_private(batch jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION handle_private(jsonb) FROM PUBLIC;
CREATE TABLE admin_outbox (id bigint, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                           payload jsonb NOT NULL);
CREATE INDEX ON admin_outbox (txid, id);
ALTER TABLE admin_outbox OWNER TO pump_admin_a;

-- an admin manages pumps
SET ROLE pump_admin_a;
SELECT cluster.create_pump('admin_stream');
SELECT cluster.drop_pump('admin_stream');
SELECT cluster.create_pump('admin_outbox', 'admin_outbox');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'admin_outbox'::regclass AND NOT tgisinternal;
SELECT cluster.drop_pump('admin_outbox');
-- and handlers of pumps whose owners allow it
SELECT cluster.create_handler('a_mail', 'orders', 'handle_void(jsonb)');
\set VERBOSITY terse
SELECT cluster.grant_pump('orders', 'pump_admin_a');
\set VERBOSITY default
RESET ROLE;
SELECT cluster.grant_pump('orders', 'pump_admin_a');
SELECT cluster.grant_pump('orders', 'pump_admin_a');
SELECT object_type, object_name, grantee FROM cluster.grants;
SET ROLE pump_admin_a;
-- whose function it may execute
SELECT cluster.create_handler('a_private', 'orders', 'handle_private(jsonb)');
SELECT cluster.create_handler('a_mail', 'orders', 'handle_void(jsonb)');
SELECT name, owner, function FROM cluster.handlers WHERE name = 'a_mail';
SELECT cluster.alter_handler('a_mail', function => 'handle_private(jsonb)');
SELECT cluster.pause_handler('a_mail');
RESET ROLE;

-- another admin can't change it: neither through the functions nor directly
SET ROLE pump_admin_b;
SELECT cluster.alter_handler('a_mail', batch_size => 10);
SELECT cluster.alter_handler('a_mail', function => 'handle_patch(jsonb)');
SELECT cluster.pause_handler('a_mail');
SELECT cluster.resume_handler('a_mail');
SELECT cluster.reset_handler('a_mail', 'start');
SELECT cluster.replay_dead_letters('a_mail');
SELECT cluster.drop_handler('a_mail');
UPDATE cluster.handler SET owner = 'pump_admin_b' WHERE name = 'a_mail';
DELETE FROM cluster.handler WHERE name = 'a_mail';
INSERT INTO cluster.handler (name, pump_id, owner, ordering, batch_size, max_attempts,
                             ack_timeout, max_in_flight)
SELECT 'fake', id, 'pump_admin_a', 'key', 1, 1, '1 s', 1 FROM cluster.pump WHERE name = 'orders';
-- but it reads every handler
SELECT name, owner = 'pump_admin_a'::regrole AS owned_by_a, paused
  FROM cluster.handlers ORDER BY name;
SELECT cluster.handler_state('a_mail');
RESET ROLE;
SELECT name, owner, paused FROM cluster.handlers WHERE name = 'a_mail';

SET ROLE pump_admin_a;
SELECT cluster.resume_handler('a_mail');
SELECT cluster.alter_handler('a_mail', batch_size => 10);
-- the checks hold for direct writes too
UPDATE cluster.handler SET function = 'pg_catalog.jsonb_typeof(jsonb)' WHERE name = 'a_mail';
UPDATE cluster.handler SET function = 'pg_catalog.jsonb_strip_nulls(jsonb)' WHERE name = 'a_mail';
UPDATE cluster.handler SET owner = 'pump_admin_b' WHERE name = 'a_mail';
SELECT cluster.drop_handler('a_mail');
-- a pump belongs to its creator; its source must be readable by it
SELECT cluster.create_pump('a_pump');
RESET ROLE;
SET ROLE pump_admin_b;
SELECT cluster.drop_pump('a_pump');
UPDATE cluster.pump SET retention = '1 hour' WHERE name = 'a_pump';
SELECT count(*) AS changed FROM cluster.pump WHERE name = 'a_pump' AND retention = '1 hour';
RESET ROLE;
SET ROLE pump_admin_a;
UPDATE cluster.pump SET source = 'pg_authid' WHERE name = 'a_pump';
SELECT name, owner FROM cluster.pumps WHERE name = 'a_pump';
SELECT cluster.drop_pump('a_pump');
RESET ROLE;

-- an application publishes and reads the views, and manages nothing
SET ROLE pump_app;
SELECT cluster.publish('orders', '{"from": "app"}') > 0 AS published;
SELECT cardinality(cluster.publish_batch('orders', '[{"payload": 1}, {"payload": 2}]')) AS published;
INSERT INTO cluster.events (stream, payload) VALUES ('orders', '{"from": "insert"}');
-- but not its position in the pump's order
INSERT INTO cluster.events (stream, payload, txid) VALUES ('orders', '{}', '1');
INSERT INTO cluster.events (id, stream, payload) VALUES (1, 'orders', '{}');
SELECT count(*) FROM cluster.events;
SELECT cluster.create_pump('app_pump');
SELECT cluster.drop_pump('orders');
SELECT cluster.create_handler('app_handler', 'orders');
SELECT cluster.pause_handler('search');
SELECT cluster.handler_state('search');
SELECT name, source FROM cluster.pumps ORDER BY name;
SELECT name, pump, lag_events, paused FROM cluster.handlers ORDER BY name;
RESET ROLE;
SELECT count(*) AS events FROM cluster.events;

-- pg_monitor (pg_read_all_stats) sees every handler's lag, a statistic,
-- and still not the events
GRANT pg_monitor TO pump_app;
SET ROLE pump_app;
SELECT name, lag_events IS NOT NULL AS lag_known, lag_seconds IS NOT NULL AS age_known
  FROM cluster.handlers ORDER BY name;
SELECT count(*) FROM cluster.events;
RESET ROLE;
REVOKE pg_monitor FROM pump_app;

-- the owner's code runs in the caller's session for the lag count, and
-- never resolves a name to the caller's temporary objects (pg_temp comes
-- last in its search_path) and never sends it the owner's notices;
-- pg_monitor sees the lag of a plain table only, never of a view, whose
-- code it did not get the right to run
CREATE TABLE blocked_tags (tag text);
CREATE TABLE stolen (who text);
CREATE FUNCTION not_blocked(t text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE NOTICE 'checking a row tagged %', t;   -- the owner's; never the caller's to see
    RETURN NOT EXISTS (SELECT FROM blocked_tags b WHERE b.tag = t);
END $$;
CREATE TABLE tagged (id bigint PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                     payload jsonb, tag text);
CREATE VIEW visible AS SELECT * FROM tagged WHERE not_blocked(tag);
SELECT cluster.create_pump('visible', 'visible');
SELECT cluster.create_handler('visible_reader', 'visible');
INSERT INTO tagged (id, payload, tag) VALUES (1, '{}', 'a');
GRANT SELECT ON visible TO pump_app;
SET ROLE pump_app;
CREATE FUNCTION pg_temp.steal() RETURNS text LANGUAGE sql
    AS 'INSERT INTO public.stolen VALUES (current_user) RETURNING ''x''';
CREATE TEMP VIEW blocked_tags AS SELECT pg_temp.steal() AS tag;
SELECT name, lag_events FROM cluster.handlers WHERE name = 'visible_reader';
RESET ROLE;
SELECT count(*) AS stolen FROM stolen;
REVOKE SELECT ON visible FROM pump_app;
GRANT pg_monitor TO pump_app;
SET ROLE pump_app;
SELECT name, lag_events IS NULL AS lag_hidden FROM cluster.handlers WHERE name = 'visible_reader';
RESET ROLE;
REVOKE pg_monitor FROM pump_app;
SELECT cluster.drop_handler('visible_reader');
SELECT cluster.drop_pump('visible');
DROP VIEW visible, pg_temp.blocked_tags;
DROP FUNCTION pg_temp.steal();
DROP TABLE tagged, blocked_tags, stolen;
DROP FUNCTION not_blocked(text);

-- a role with nothing can't publish
SET ROLE pump_nobody;
SELECT cluster.publish('orders', '{}');
SELECT cluster.publish_batch('orders', '[{"payload": 1}]');
INSERT INTO cluster.events (stream, payload) VALUES ('orders', '{}');
SELECT name FROM cluster.handlers;
RESET ROLE;

-- a revoked grant stops a handler at its next round; only the owner may revoke
SET ROLE pump_admin_b;
\set VERBOSITY terse
SELECT cluster.revoke_pump('orders', 'pump_admin_a');
\set VERBOSITY default
RESET ROLE;
SELECT cluster.revoke_pump('orders', 'pump_admin_a');
SELECT count(*) FROM cluster.grants;

DROP FUNCTION handle_private(jsonb);
DROP TABLE admin_outbox;
DROP ROLE pump_admin_a, pump_admin_b, pump_app, pump_nobody;

-------------------------------------------------------------------------
-- Dropping
-------------------------------------------------------------------------

SELECT cluster.drop_handler('search');
SELECT cluster.drop_handler('audit');
SELECT cluster.drop_handler('mapped_reader');
SELECT cluster.drop_pump('outbox');
SELECT cluster.drop_pump('mapped');
SELECT cluster.drop_pump('orders');
SELECT cluster.drop_pump('invoices');
SELECT count(*) AS pumps FROM cluster.pumps;
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgname LIKE 'cluster\_pump\_%' AND NOT tgisinternal;
-- the events stay
SELECT count(*) AS events FROM cluster.events;
SELECT cluster.drop_coordinator('billing');

DROP TABLE outbox, mapped, no_id, no_txid, bigint_txid, json_payload, unindexed;
DROP FUNCTION handle_void(jsonb), handle_patch(jsonb), handle_text(text), handle_int(jsonb),
              handle_two(jsonb, int), handle_set(jsonb), handle_rows(cluster.event[]),
              handle_row(cluster.event);
DROP PROCEDURE handle_proc(jsonb);

DROP EXTENSION cluster;
