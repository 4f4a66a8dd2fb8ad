# The pump through a crash (immediate stop) and through the leader being
# terminated, both mid-stream: every committed event's SQL side effect
# happens exactly once, and so does every state patch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('pump');
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

$node->stop;
done_testing();
