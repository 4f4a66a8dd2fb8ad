# A handler function taking its batch as cluster.event[]: every field of
# the source row arrives as stored, attempts count on retries, a failing
# event is isolated from its batch, a returned patch lands in the user
# state.  And the progress a round commits stays small: the events done
# behind a stuck one are kept as one range, the user state in its own
# column, and a new leader restores both without handling anything twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('rows', conf => "cluster.poll_interval = '1s'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE TABLE outbox (
		seq bigserial PRIMARY KEY,
		xact xid8 NOT NULL DEFAULT pg_current_xact_id(),
		account text,
		body jsonb NOT NULL,
		meta jsonb,
		at timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE INDEX ON outbox (xact, seq);
	CREATE TABLE seen AS SELECT * FROM unnest(ARRAY[]::cluster.event[]);
	-- body.fail: fails while the attempt is at most that; body.stuck: always
	CREATE FUNCTION take(events cluster.event[]) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT FROM unnest(events) e
					WHERE e.attempt <= coalesce((e.payload ->> 'fail')::int, 0)
					   OR (e.payload ->> 'stuck')::boolean) THEN
			RAISE EXCEPTION 'refusing the batch';
		END IF;
		INSERT INTO seen SELECT * FROM unnest(events);
		RETURN (SELECT jsonb_agg(jsonb_build_object('op', 'set', 'path', jsonb_build_array('ids', e.id::text),
													'value', e.attempt))
				  FROM unnest(events) e);
	END $$;
	SELECT cluster.create_pump('ob', source => 'outbox', id_column => 'seq', txid_column => 'xact',
							   payload_column => 'body', key_column => 'account',
							   headers_column => 'meta', created_at_column => 'at',
							   retention => '1 day');
	SELECT cluster.create_handler('rows', 'ob', 'take(cluster.event[])', ordering => 'none',
								  max_attempts => 1000, max_in_flight => 5000, batch_size => 100);
	INSERT INTO outbox (account, body, meta) VALUES
		('alice', '{"n": 1}', '{"trace": "t1"}'),
		(NULL, '{"n": 2, "fail": 2}', NULL),
		('bob', '"a scalar"', '{}');
});
ok(defined poll_until($node, "SELECT count(*) FROM seen", '3'), 'the three events arrive');

# the same events as a jsonb batch: the wire form, its id a string
$node->safe_psql('postgres', q{
	CREATE TABLE shapes (id text, shape text);
	CREATE FUNCTION shape(batch jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO shapes SELECT e ->> 'id', jsonb_typeof(e -> 'id') || ' ' ||
			(SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(e) k) || ' ' || (e ->> 'createdAt')::timestamptz::text
		  FROM jsonb_array_elements(batch) e $$;
	SELECT cluster.create_handler('shape', 'ob', 'shape(jsonb)');
});
ok(defined poll_until($node, "SELECT count(*) FROM shapes", '3'), 'a jsonb handler of the same pump gets them too');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM shapes s JOIN outbox o ON o.seq::text = s.id
	 WHERE s.shape = 'string attempt,createdAt,headers,id,key,payload,stream ' || o.at::text}), '3',
	'as objects with the documented fields, the id a string, createdAt the stored time');
$node->safe_psql('postgres', "SELECT cluster.drop_handler('shape')");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM seen s JOIN outbox o ON o.seq = s.id
	 WHERE s.stream = 'ob' AND s.key IS NOT DISTINCT FROM o.account AND s.payload = o.body
	   AND s.headers IS NOT DISTINCT FROM o.meta AND s.created_at = o.at}), '3',
	'each field arrives as stored (stream, key, payload, headers, created_at)');
is($node->safe_psql('postgres', "SELECT string_agg(attempt::text, ',' ORDER BY id) FROM seen"), '1,3,1',
	'the failing event was isolated and arrived at its third attempt; the others at their first');
is($node->safe_psql('postgres', "SELECT cluster.handler_state('rows')"),
	'{"ids": {"1": 1, "2": 3, "3": 1}}', 'the patches landed in the user state');
is($node->safe_psql('postgres', "SELECT state ? 'user' FROM cluster.handler"), 'f',
	'the user state is kept apart from the progress');

# a stuck event at the head: everything behind it is done, as one range
$node->safe_psql('postgres', q{
	INSERT INTO outbox (body) VALUES ('{"stuck": true}');
	INSERT INTO outbox (body) SELECT jsonb_build_object('n', i) FROM generate_series(5, 2004) i;
});
ok(defined poll_until($node, "SELECT count(*) FROM seen", '2003'), 'the 2000 events behind the stuck one are handled');
ok(defined poll_until($node,
		"SELECT jsonb_array_length(state -> 'done') || ' ' || (state -> 'done' -> 0 ->> 4) FROM cluster.handler WHERE name = 'rows'",
		'1 2000'),
	'they are kept as one done range of 2000 events');
is($node->safe_psql('postgres', "SELECT lag_events FROM cluster.handlers WHERE name = 'rows'"), '1',
	'the lag counts only the stuck event');

# a new leader restores the range and the retry: nothing is handled twice
my $before = $node->safe_psql('postgres', "SELECT fence FROM cluster.engines WHERE role = 'leader'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM cluster.engines WHERE role = 'leader'");
ok(defined poll_until($node, "SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $before", '1'),
	'a new leader');
$node->safe_psql('postgres', "INSERT INTO outbox (body) VALUES ('{\"n\": 9999}')");
ok(defined poll_until($node, "SELECT count(*) FROM seen", '2004'), 'a new event is handled by the new leader');
is($node->safe_psql('postgres', "SELECT count(*) - count(DISTINCT id) FROM seen"), '0',
	'no event was handled twice');
is($node->safe_psql('postgres', "SELECT (state -> 'retry' -> '4' ->> 'attempts')::int > 1 FROM cluster.handler WHERE name = 'rows'"), 't',
	'the stuck event keeps its attempts');

# reloads (each retries the stuck event at once, and commits) while the
# new leader has read only part of the range: what it has not read yet
# stays done
$node->safe_psql('postgres', "SELECT cluster.create_pump('other')");
for my $i (1 .. 3)
{
	my $attempts = $node->safe_psql('postgres', "SELECT state -> 'retry' -> '4' ->> 'attempts' FROM cluster.handler WHERE name = 'rows'");
	$node->safe_psql('postgres', "SELECT cluster.create_handler('reload$i', 'other')");
	ok(defined poll_until($node,
			"SELECT (state -> 'retry' -> '4' ->> 'attempts')::int > $attempts FROM cluster.handler WHERE name = 'rows'", 't'),
		"reload $i: the stuck event was tried again");
}
is($node->safe_psql('postgres', "SELECT count(*) - count(DISTINCT id) FROM seen"), '0',
	'no event was handled twice through the reloads');
is($node->safe_psql('postgres', "SELECT lag_events FROM cluster.handlers WHERE name = 'rows'"), '1',
	'and the range is still known: only the stuck event is ahead');
# dead letters as a restore can bring them (the database's owner may insert
# them): shapes the leader never wrote are replayed without harm
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('plain');
	CREATE FUNCTION take_all(events cluster.event[]) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO seen SELECT * FROM unnest(events) $$;
	SELECT cluster.create_handler('plain', 'plain', 'take_all(cluster.event[])');
	INSERT INTO cluster.dead_letters (handler_id, event_id, event, attempts, last_error, replay)
	SELECT h.id, 900000 + n, e, 1, 'restored', false
	  FROM cluster.handler h,
		   (VALUES (1, '5'::jsonb), (2, '[1, 2]'), (3, '{"payload": {"n": 3}, "createdAt": "not a time", "key": 7}'),
				   (4, '{"payload": null, "headers": "h", "createdAt": "2024-05-01T12:00:00+00:00", "key": "k"}')) AS d(n, e)
	 WHERE h.name = 'plain';
	SELECT cluster.replay_dead_letters('plain');
});
ok(defined poll_until($node, "SELECT count(*) FROM seen WHERE id > 900000", '4'),
	'four dead letters of odd shapes are replayed');
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s %s %s %s', id - 900000, coalesce(key, '-'), coalesce(payload::text, '-'),
							 coalesce(created_at::text, '-')), ', ' ORDER BY id)
	  FROM seen WHERE id > 900000}),
	'1 - null -, 2 - null -, 3 - {"n": 3} -, 4 k null 2024-05-01 12:00:00+00',
	'what can be read of them is read; the rest is absent');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.dead_letters"), '0', 'and they are gone');

$node->stop;
done_testing();
