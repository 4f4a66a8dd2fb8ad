# Versioned upgrades: a database created with the oldest released version
# (0.1), with pumps, handlers, a worker registration, state and dead
# letters, is updated with ALTER EXTENSION cluster UPDATE and keeps working:
# cursors and state carry over, new events flow, dead letters replay, and
# what the new versions add (dependency protection, the user state apart)
# is in force.  Keep this test for every later version: it always starts
# from 0.1.
#
# The library runs the current version's tables only (0.6 changed the cursor):
# until the update, the database's engines wait.  What a 0.1 leader leaves in a handler's row
# (cursor, done events above it, a retry, counters, the user state) is
# written here as 0.1 wrote it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('upgrade', conf => "max_prepared_transactions = 2\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster VERSION '0.1';
	CREATE TABLE seen (n int);
	-- notes each event in the state; payload.fail: fails until seen has -1
	CREATE FUNCTION count_events(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		e jsonb;
	BEGIN
		FOR e IN SELECT * FROM jsonb_array_elements(batch) LOOP
			IF (e -> 'payload' ->> 'fail')::boolean AND NOT EXISTS (SELECT FROM seen WHERE n = -1) THEN
				RAISE EXCEPTION 'event % fails', e -> 'payload' ->> 'n';
			END IF;
			INSERT INTO seen VALUES ((e -> 'payload' ->> 'n')::int);
		END LOOP;
		RETURN (SELECT jsonb_agg(jsonb_build_object('op', 'set', 'value', true,
						'path', jsonb_build_array('seen', x -> 'payload' ->> 'n')))
				  FROM jsonb_array_elements(batch) x);
	END $$;
	SELECT cluster.create_pump('orders');
	SELECT cluster.create_handler('counter', 'orders', 'count_events(jsonb)', max_attempts => 1);
	SELECT cluster.register_worker('counter', 'ws://127.0.0.1:1/', capacity => 1);
	SELECT count(cluster.publish('orders', jsonb_build_object('n', i, 'fail', i = 3))) FROM generate_series(1, 10) i;
});
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'cluster'"), '0.1',
	'created at 0.1');
ok($node->wait_for_log(qr/cluster engines of database "postgres" wait for ALTER EXTENSION cluster UPDATE/),
	'the engines wait for the update, and say so');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.engines"), '0', 'no engine runs meanwhile');

# a 0.1 leader's work: 1-2 handled (the cursor), 3 dead-lettered, 4-6
# handled above the cursor, 7 failed once
$node->safe_psql('postgres', q{
	CREATE FUNCTION pos(n int) RETURNS jsonb LANGUAGE sql AS $$
		SELECT jsonb_build_array(txid::text, id::text) FROM cluster.events WHERE (payload ->> 'n')::int = n $$;
	UPDATE cluster.handler SET state = jsonb_build_object(
		'cursor', pos(2),
		'done', jsonb_build_array(pos(3), pos(4), pos(5), pos(6)),
		'retry', jsonb_build_object((pos(7) ->> 1), jsonb_build_object('txid', pos(7) ->> 0, 'attempts', 1, 'error', 'event 7 fails')),
		'counters', '{"processed": 5, "failed": 2, "dead_lettered": 1}'::jsonb,
		'user', '{"seen": {"1": true, "2": true, "4": true, "5": true, "6": true}}'::jsonb);
	INSERT INTO seen VALUES (1), (2), (4), (5), (6);
	INSERT INTO cluster.dead_letters (handler_id, event_id, event, attempts, last_error)
	SELECT h.id, e.id, jsonb_build_object('id', e.id, 'stream', e.stream, 'key', e.key, 'payload', e.payload,
										  'headers', e.headers, 'createdAt', e.created_at, 'attempt', 1),
		   1, 'event 3 fails'
	  FROM cluster.events e, cluster.handler h WHERE (e.payload ->> 'n')::int = 3;
});
my $cursor = $node->safe_psql('postgres', "SELECT cursor FROM cluster.handlers WHERE name = 'counter'");
is($cursor, $node->safe_psql('postgres', "SELECT (pos(2) ->> 0) || '/' || (pos(2) ->> 1)"),
	'0.1 reads the cursor it left');

# the new library beside the old SQL (before ALTER EXTENSION UPDATE): role
# commands work as before
$node->safe_psql('postgres', q{
	CREATE ROLE carol;
	REASSIGN OWNED BY carol TO CURRENT_USER;
	DROP OWNED BY carol;
	DROP ROLE carol;
});
pass('0.1 with the new library: REASSIGN OWNED, DROP OWNED and DROP ROLE work');

# 0.6 changed the cursor's shape (snapshot steps): at 0.5 the engines
# wait; the update converts the 0.1 cursor, its done events above it and
# the retry of event 7, so that exactly 7 to 10 are handled, once
$node->safe_psql('postgres', "ALTER EXTENSION cluster UPDATE TO '0.5'");
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'"), '0',
	'at 0.5 no engine of the 0.6 library leads');
# events in flight across the update: published at 0.5 by a transaction
# still open, and by a prepared one, both committed after it
my $open = $node->background_psql('postgres');
$open->query_safe("BEGIN; SELECT cluster.publish('orders', jsonb_build_object('n', 100))");
$node->safe_psql('postgres', q{
	BEGIN; SELECT cluster.publish('orders', jsonb_build_object('n', 101)); PREPARE TRANSACTION 'in_flight'});
$node->safe_psql('postgres', 'ALTER EXTENSION cluster UPDATE');
ok(defined poll_until($node, "SELECT count(*) FROM seen", '9'),
	'after the update to 0.6 the engines run: 7 to 10 are handled, nothing twice');
is($node->safe_psql('postgres', "SELECT string_agg(n::text, ',' ORDER BY n) FROM seen"), '1,2,4,5,6,7,8,9,10',
	'exactly the events the 0.1 leader had not done');
$open->query_safe('COMMIT');
$open->quit;
$node->safe_psql('postgres', "COMMIT PREPARED 'in_flight'");
ok(defined poll_until($node, "SELECT count(*) FROM seen", '11'),
	'the events in flight at the update are handled once their transactions commit');
is($node->safe_psql('postgres', "SELECT string_agg(n::text, ',' ORDER BY n) FROM seen WHERE n >= 100"), '100,101',
	'each of them once');
is($node->safe_psql('postgres', "SELECT state ? 'user' FROM cluster.handler WHERE name = 'counter'"), 'f',
	'the user state moved to its own column (0.3)');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'cluster'"), '0.6',
	'updated to 0.6');
is($node->safe_psql('postgres', "SELECT listen IS NULL FROM cluster.coordinators WHERE name = 'default'"), 't',
	'the updated coordinator listens nowhere (0.4)');
is($node->safe_psql('postgres', "SELECT string_agg(k, ',' ORDER BY k::int) FROM jsonb_object_keys(cluster.handler_state('counter') -> 'seen') k"),
	'1,2,4,5,6,7,8,9,10,100,101', 'the user state carried over, and the new events were added to it');
ok(defined poll_until($node, "SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'counter'", 't'),
	'the cursor moved on from where 0.1 left it past the last event');
is($node->safe_psql('postgres', "SELECT jsonb_typeof(state -> 'cursor') FROM cluster.handler WHERE name = 'counter'"),
	'object', 'the cursor is a position of snapshots (0.6)');
is($node->safe_psql('postgres', "SELECT processed || '/' || dead_letters FROM cluster.handlers WHERE name = 'counter'"),
	'11/1', 'the counters carried over (5 + 4 handled, and the 2 in flight) with the dead letter');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.workers WHERE handler = 'counter'"), '1',
	'the worker registration carried over');
is($node->safe_psql('postgres', "SELECT 'cluster.worker'::regclass = ANY (extconfig) FROM pg_extension WHERE extname = 'cluster'"),
	'f', 'and it is no longer part of a dump (it holds secrets)');

$node->safe_psql('postgres',
	"SELECT count(cluster.publish('orders', jsonb_build_object('n', i))) FROM generate_series(11, 20) i");
ok(defined poll_until($node, "SELECT count(*) FROM seen", '21'), 'new events flow after the update');
$node->safe_psql('postgres', "INSERT INTO seen VALUES (-1); SELECT cluster.replay_dead_letters('counter')");
ok(defined poll_until($node, "SELECT dead_letters || ' ' || (last_error IS NULL) FROM cluster.handlers WHERE name = 'counter'", '0 true'),
	'the dead letter replays, and last_error clears (new in 0.2)');
is($node->safe_psql('postgres', "SELECT count(*) FROM jsonb_object_keys(cluster.handler_state('counter') -> 'seen')"), '22',
	'every event is in the state');

my ($ret, $out, $err) = $node->psql('postgres', 'DROP FUNCTION count_events(jsonb)');
like($err, qr/cannot drop function .* because other objects depend on it/,
	'dependency protection (new in 0.2) is in force');

# DROP EXTENSION works with an outbox table's wake trigger in place, and
# fences go on above the old ones after CREATE EXTENSION
$node->safe_psql('postgres', q{
	CREATE TABLE outbox (id bigserial PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(), payload jsonb NOT NULL);
	SELECT cluster.create_pump('outbox', source => 'outbox');
});
my $fence = $node->safe_psql('postgres', "SELECT max(fence) FROM cluster.leases");
($ret, $out, $err) = $node->psql('postgres', 'DROP EXTENSION cluster');
is($ret, 0, 'DROP EXTENSION works while an outbox table has its wake trigger') or diag($err);
$node->safe_psql('postgres', 'CREATE EXTENSION cluster');
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $fence", '1'),
	"after DROP and CREATE EXTENSION the leader's fence is above $fence");
is($node->safe_psql('postgres', "SELECT cluster.acquire_lease('fresh-key', 'me', '1 minute') > $fence"), 't',
	'and so is a new lease\'s');

# the installed scripts: every released version stays installable
is($node->safe_psql('postgres',
		"SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'cluster'"),
	'0.1,0.2,0.3,0.4,0.5,0.6', 'versions 0.1 to 0.6 are available');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION cluster');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'cluster'"), '0.6',
	'a new database gets 0.6');
is($node->safe_psql('fresh', "SELECT obj_description('cluster.create_handler'::regproc, 'pg_proc') ~ 'cluster.event'"), 't',
	'with the comments of 0.5 and later');


$node->stop;
done_testing();
