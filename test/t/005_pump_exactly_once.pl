# The pump through a crash (immediate stop) and through the leader being
# terminated, both mid-stream: every committed event's SQL side effect
# happens exactly once, and so does every state patch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('pump', conf => "max_prepared_transactions = 250\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE TABLE sink (event_id bigint NOT NULL, n int NOT NULL);
	-- inserts each event, and patches the state: a count read from the
	-- committed state plus this batch, and one key per event
	CREATE FUNCTION consume(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		seen bigint := coalesce((cluster.handler_state('consumer') ->> 'count')::bigint, 0);
	BEGIN
		INSERT INTO sink
		SELECT (e ->> 'id')::bigint, (e -> 'payload' ->> 'n')::int
		  FROM jsonb_array_elements(batch) e;
		-- slow enough (about 1000 events/s) that a crash or a kill
		-- reliably lands mid-stream
		PERFORM pg_sleep(0.02);
		RETURN jsonb_build_array(jsonb_build_object('op', 'set', 'path', '["count"]'::jsonb,
							 'value', seen + jsonb_array_length(batch)))
			|| (SELECT jsonb_agg(jsonb_build_object('op', 'set',
						'path', jsonb_build_array('seen', e ->> 'id'), 'value', true))
				  FROM jsonb_array_elements(batch) e);
	END $$;
	SELECT cluster.create_pump('work');
	SELECT cluster.create_handler('consumer', 'work', 'consume(jsonb)', batch_size => 20);
});

my $n = 0;
sub publish
{
	my ($transactions, $per) = @_;
	for (1 .. $transactions)
	{
		my $from = $n + 1;
		$n += $per;
		$node->safe_psql('postgres', qq{
			SELECT cluster.publish_batch('work',
				(SELECT jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i),
													 'key', 'k' || (i % 7)))
				   FROM generate_series($from, $n) i))});
	}
}

sub check_exactly_once
{
	my ($what) = @_;
	ok(defined poll_until($node,
			"SELECT lag_events = 0 FROM cluster.handlers WHERE name = 'consumer'", 't', 120),
		"$what: the handler caught up");
	my $committed = $node->safe_psql('postgres',
		"SELECT count(*) FROM cluster.events WHERE stream = 'work'");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM sink'), $committed,
		"$what: one side effect per committed event ($committed)");
	is($node->safe_psql('postgres', 'SELECT count(DISTINCT event_id) FROM sink'), $committed,
		"$what: no event handled twice");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM sink s LEFT JOIN cluster.events e ON e.id = s.event_id WHERE e.id IS NULL"),
		'0', "$what: nothing handled that was not committed");
	is($node->safe_psql('postgres',
			"SELECT (s ->> 'count')::bigint = $committed AND "
			  . "(SELECT count(*) FROM jsonb_object_keys(s -> 'seen')) = $committed "
			  . "FROM cluster.handler_state('consumer') s"),
		't', "$what: every state patch applied exactly once");
}

# crash mid-stream: immediate stop while the handler is part-way
publish(10, 200);
ok(defined poll_until($node,
		"SELECT processed > 0 FROM cluster.handlers WHERE name = 'consumer'", 't'),
	'the pump started');
$node->stop('immediate');
$node->start;
my ($done_before) = $node->safe_psql('postgres', 'SELECT count(*) FROM sink');
cmp_ok($done_before, '<', 2000, "the crash hit mid-stream ($done_before of 2000 handled)");
publish(5, 100);
check_exactly_once('after a crash');

# leader terminated mid-stream: a standby takes over from the cursor
publish(10, 200);
ok(defined poll_until($node,
		"SELECT count(*) > 2500 FROM sink", 't'),
	'the pump is working on the new events');
my ($pid) = leader($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $handled = $node->safe_psql('postgres', 'SELECT count(*) FROM sink');
cmp_ok($handled, '<', 4500, "the leader was terminated mid-stream ($handled of 4500 handled)");
publish(5, 100);
check_exactly_once('after the leader was terminated');
my ($new_pid, $fence) = leader($node);
isnt($new_pid, $pid, 'another engine leads');

# An event committed behind an unrelated open transaction does not wait
# for it (snapshot steps), and the open transaction's own event goes out
# when it commits; the fallback poll is an hour here.
$node->append_conf('postgresql.conf', "cluster.poll_interval = '1h'");
$node->reload;
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN');
$blocker->query_safe('SELECT pg_current_xact_id()');
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM sink');
publish(1, 1);
ok(defined poll_until($node, 'SELECT count(*) FROM sink', $before + 1, 30),
	'an event committed behind an open transaction is handled while it is open');
$blocker->query_safe("SELECT cluster.publish('work', jsonb_build_object('n', -1))");
$blocker->query_safe('COMMIT');
$blocker->quit;
ok(defined poll_until($node, 'SELECT count(*) FROM sink', $before + 2, 30),
	'the open transaction\'s own event is handled once it commits');
check_exactly_once('after waiting for an open transaction');

# A step of 100,000 events, read in many batches against one target,
# while 200 prepared transactions are in progress (in the xip of every
# snapshot), half of which published: through a leader terminated
# mid-step, every event is handled exactly once, a prepared
# transaction's only after COMMIT PREPARED, a rolled-back one's never.
$node->safe_psql('postgres', q{
	CREATE TABLE big_sink (event_id bigint NOT NULL);
	-- about 25,000 events/s: the termination lands mid-step
	CREATE FUNCTION consume_big(events cluster.event[]) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO big_sink SELECT e.id FROM unnest(events) e;
		PERFORM pg_sleep(0.02);
	END $$;
	SELECT cluster.create_pump('big');
	SELECT cluster.create_handler('big', 'big', 'consume_big(cluster.event[])', batch_size => 500);
});
$node->safe_psql('postgres', join('', map {
	my $publish = $_ % 2
	  ? "SELECT cluster.publish('big', jsonb_build_object('prepared', $_));"
	  : 'SELECT pg_current_xact_id();';
	"BEGIN; $publish PREPARE TRANSACTION 'big$_';\n" } 1 .. 200));
$node->safe_psql('postgres', q{
	INSERT INTO cluster.events (stream, payload)
	SELECT 'big', jsonb_build_object('n', i) FROM generate_series(1, 100000) i});
ok(defined poll_until($node, 'SELECT count(*) > 20000 FROM big_sink', 't', 120),
	'a step of 100,000 events is being handled');
($pid) = leader($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$handled = $node->safe_psql('postgres', 'SELECT count(*) FROM big_sink');
cmp_ok($handled, '<', 100000, "the leader was terminated mid-step ($handled of 100,000 handled)");
ok(defined poll_until($node, 'SELECT count(*) FROM big_sink', '100000', 120),
	'the new leader handles the rest of the step');
$node->safe_psql('postgres', join('', map {
	($_ % 4 == 1 ? 'ROLLBACK' : 'COMMIT') . " PREPARED 'big$_';\n" } 1 .. 200));
# 50 of the 100 that published committed
ok(defined poll_until($node, 'SELECT count(*) FROM big_sink', '100050', 60),
	'the prepared transactions\' events are handled once they commit');
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT s.event_id) || ' ' || count(e.id) || ' ' ||
		   (SELECT count(*) FROM cluster.events WHERE stream = 'big')
	  FROM big_sink s LEFT JOIN cluster.events e ON e.id = s.event_id AND e.stream = 'big'}),
	'100050 100050 100050', 'each event of the step and of the committed prepared transactions handled exactly once');
is($node->safe_psql('postgres', "SELECT lag_events FROM cluster.handlers WHERE name = 'big'"),
	'0', 'nothing is left behind');

$node->stop;
done_testing();
