# Failures: a failing event is retried with backoff and dead-lettered after
# max_attempts with its error while the other events pass; with key
# ordering, later events of its key wait behind it; a replay hands a dead
# letter to the handler again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('retries');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE TABLE done_order (seq bigserial, event_id bigint, key text, attempt int);
	-- payload.fail_times: fail that many attempts; payload.poison: always fail
	CREATE FUNCTION flaky(batch jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		e jsonb;
	BEGIN
		FOR e IN SELECT * FROM jsonb_array_elements(batch) LOOP
			IF coalesce((e -> 'payload' ->> 'fail_times')::int, 0) >= (e ->> 'attempt')::int THEN
				RAISE EXCEPTION 'event % fails on attempt %', e ->> 'id', e ->> 'attempt';
			END IF;
			IF (e -> 'payload' ->> 'poison')::boolean THEN
				RAISE EXCEPTION 'poison event %', e ->> 'id';
			END IF;
			INSERT INTO done_order (event_id, key, attempt)
			VALUES ((e ->> 'id')::bigint, e ->> 'key', (e ->> 'attempt')::int);
		END LOOP;
	END $$;
	SELECT cluster.create_pump('jobs');
	SELECT cluster.create_handler('worker', 'jobs', 'flaky(jsonb)', max_attempts => 3);
	SELECT cluster.publish_batch('jobs', '[
		{"key": "a", "payload": {"name": "a1", "fail_times": 2}},
		{"key": "b", "payload": {"name": "b1"}},
		{"key": "a", "payload": {"name": "a2"}},
		{"key": "b", "payload": {"name": "b2", "poison": true}},
		{"key": "c", "payload": {"name": "c1"}},
		{"key": "a", "payload": {"name": "a3"}},
		{"key": "b", "payload": {"name": "b3"}},
		{"key": "c", "payload": {"name": "c2"}}
	]');
});

sub names
{
	my ($where) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(e.payload ->> 'name', ',' ORDER BY d.seq) FROM done_order d "
		  . "JOIN cluster.events e ON e.id = d.event_id WHERE $where");
}

ok(defined poll_until($node,
		"SELECT lag_events = 0 FROM cluster.handlers WHERE name = 'worker'", 't', 60),
	'the handler passed every event');
is(names("d.key = 'a'"), 'a1,a2,a3', 'key a in order although a1 failed twice');
is(names("e.payload ->> 'name' = 'a1'") , 'a1', 'a1 handled once');
is($node->safe_psql('postgres',
		"SELECT d.attempt FROM done_order d JOIN cluster.events e ON e.id = d.event_id "
		  . "WHERE e.payload ->> 'name' = 'a1'"),
	'3', 'a1 succeeded on its third attempt');
is(names("d.key = 'b'"), 'b1,b3', 'key b: b3 after the poison b2 was given up');
is(names("d.key = 'c'"), 'c1,c2', 'key c flowed');
is($node->safe_psql('postgres',
		"SELECT max(seq) FILTER (WHERE key = 'c') < min(seq) FILTER (WHERE key = 'a' AND attempt = 3) "
		  . "FROM done_order"),
	't', 'key c did not wait for the retries of key a');

is($node->safe_psql('postgres',
		"SELECT e.payload ->> 'name', d.attempts, d.last_error FROM cluster.dead_letters d "
		  . "JOIN cluster.events e ON e.id = d.event_id"),
	"b2|3|poison event " . $node->safe_psql('postgres',
		"SELECT id FROM cluster.events WHERE payload ->> 'name' = 'b2'"),
	'b2 dead-lettered after 3 attempts with its error');
is($node->safe_psql('postgres',
		"SELECT dead_letters, retrying, last_error LIKE 'poison event %' FROM cluster.handlers"),
	'1|0|t', 'cluster.handlers shows the dead letter and the last error');

# the fix is deployed: replay the dead letter
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION flaky(batch jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO done_order (event_id, key, attempt)
		SELECT (e ->> 'id')::bigint, e ->> 'key', (e ->> 'attempt')::int
		  FROM jsonb_array_elements(batch) e;
	END $$;
});
is($node->safe_psql('postgres', "SELECT cluster.replay_dead_letters('worker')"), '1',
	'one dead letter marked for replay');
ok(defined poll_until($node, 'SELECT count(*) FROM cluster.dead_letters', '0'),
	'the replay succeeded and removed the dead letter');
is(names("e.payload ->> 'name' = 'b2'"), 'b2', 'b2 handled once, by the replay');
is($node->safe_psql('postgres',
		"SELECT d.attempt FROM done_order d JOIN cluster.events e ON e.id = d.event_id "
		  . "WHERE e.payload ->> 'name' = 'b2'"),
	'4', 'the replay was its fourth attempt');

# An event waiting for its retry at the head holds back the cursor, not
# the events after it: with max_in_flight 10, the 300 events published
# after one that fails its first three attempts (backoff 1, 2, 4 s) are
# handled while it waits, far more than the 10 a window of events read
# and not passed would allow (done events behind it don't count, up to
# 16 x max_in_flight in all).
$node->safe_psql('postgres', q{
	CREATE TABLE window_sink (n int);
	CREATE FUNCTION windowed(events cluster.event[]) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		e cluster.event;
	BEGIN
		FOREACH e IN ARRAY events LOOP
			IF (e.payload ->> 'n')::int = 0 AND e.attempt <= 3 THEN
				RAISE EXCEPTION 'event % fails on attempt %', e.id, e.attempt;
			END IF;
			INSERT INTO window_sink VALUES ((e.payload ->> 'n')::int);
		END LOOP;
	END $$;
	SELECT cluster.create_pump('window');
	SELECT cluster.create_handler('windowed', 'window', 'windowed(cluster.event[])', ordering => 'none',
								  batch_size => 10, max_in_flight => 10, max_attempts => 5);
});
$node->safe_psql('postgres', q{
	SELECT count(cluster.publish('window', jsonb_build_object('n', i))) FROM generate_series(0, 300) i});
ok(defined poll_until($node, q{
		SELECT (SELECT count(*) FROM window_sink WHERE n > 0) >= 150
		   AND NOT EXISTS (SELECT FROM window_sink WHERE n = 0)}, 't', 6),
	'150 events after the one waiting for its retry are handled while it waits');
ok(defined poll_until($node, q{
		SELECT waiting_for || ' ' || (next_retry_at > now() - interval '1 s') FROM cluster.handlers WHERE name = 'windowed'},
		'retries true', 6),
	'the handler says it waits for a retry, and when it is due');
ok(defined poll_until($node, "SELECT count(*) FROM window_sink", '301', 30),
	'then it is handled too, and the rest');
is($node->safe_psql('postgres', "SELECT lag_events || ' ' || dead_letters FROM cluster.handlers WHERE name = 'windowed'"),
	'0 0', 'nothing left, nothing dead-lettered');

$node->stop;
done_testing();
