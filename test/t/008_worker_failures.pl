# Failure behaviour of the mesh: the SQL function processes batches while
# no worker is reachable; a secret is presented as a Bearer token (and a
# worker refuses a leader without it); a worker that never answers has its
# deliveries timed out and handed to another; an oversized message closes
# the connection; wss:// is verified against cluster.ca_file.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

# a CA and a certificate for 127.0.0.1, for the wss:// worker
my $tls = test_certificate('worker');

my $node = cluster_node('failures', conf => "cluster.ca_file = '$tls/ca.pem'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE TABLE local (id bigint);
	CREATE FUNCTION locally(batch jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO local SELECT (e ->> 'id')::bigint FROM jsonb_array_elements(batch) e
	$$;
	SELECT cluster.create_pump('jobs');
	SELECT cluster.create_handler('fallback', 'jobs', 'locally(jsonb)', ack_timeout => '1 s');
	SELECT cluster.create_handler('timeouts', 'jobs', ack_timeout => '1 s', max_attempts => 10);
});

sub publish
{
	$node->safe_psql('postgres',
		"SELECT count(cluster.publish('jobs', jsonb_build_object('n', i))) FROM generate_series(1, $_[0]) i");
}
sub caught_up
{
	my ($handler) = @_;
	return poll_until($node,
		"SELECT lag_events = 0 FROM cluster.handlers WHERE name = '$handler'", 't', 60);
}

# no worker: the SQL function handles the events here
publish(20);
ok(defined caught_up('fallback'), 'no worker: the SQL function caught up');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM local'), '20',
	'the SQL function handled every event');

# a worker that wants a secret refuses a leader without it
my ($w, $port, $log) = start_worker('secret', '--secret', 'hunter2');
my $id = $node->safe_psql('postgres',
	"SELECT cluster.register_worker('fallback', 'ws://127.0.0.1:$port/')");
ok(defined poll_until($node,
		"SELECT NOT connected AND last_error IS NOT NULL FROM cluster.workers WHERE id = '$id'", 't'),
	'without the secret the worker refuses the connection');
note($node->safe_psql('postgres', "SELECT last_error FROM cluster.workers WHERE id = '$id'"));
publish(10);
ok(defined caught_up('fallback'), 'meanwhile the SQL function goes on');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM local'), '30',
	'and handles the new events');

# registered with its secret, it gets the next events
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('fallback', 'ws://127.0.0.1:$port/', secret => 'hunter2')");
ok(defined poll_until($node, "SELECT connected FROM cluster.workers WHERE id = '$id'", 't'),
	'with the secret the leader connects');
publish(10);
ok(defined caught_up('fallback'), 'the worker caught up');
is(scalar(keys %{ logged_ids($log) }), 10, 'the worker acked the new events');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM local'), '30',
	'and the SQL function handled none of them');

# a worker that never answers: its deliveries time out and count attempts;
# a worker that joins later gets them
my (undef, $silent_port) = start_worker('silent', '--never-answer');
my $silent = $node->safe_psql('postgres',
	"SELECT cluster.register_worker('timeouts', 'ws://127.0.0.1:$silent_port/')");
ok(defined poll_until($node,
		"SELECT failed > 0 AND last_error LIKE '%no answer within ack_timeout%' "
		  . "FROM cluster.workers WHERE id = '$silent'", 't'),
	'deliveries to the silent worker timed out');
ok(defined poll_until($node,
		"SELECT retrying > 0 FROM cluster.handlers WHERE name = 'timeouts'", 't'),
	'their events wait for a retry');
my (undef, $good_port, $good_log) = start_worker('good');
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('timeouts', 'ws://127.0.0.1:$good_port/')");
$node->safe_psql('postgres',
	"SELECT cluster.unregister_worker('$silent')");
ok(defined caught_up('timeouts'), 'the other worker caught up');
is(scalar(keys %{ logged_ids($good_log) }), 40, 'and acked every event');
is($node->safe_psql('postgres',
		"SELECT dead_letters FROM cluster.handlers WHERE name = 'timeouts'"),
	'0', 'nothing was dead-lettered');

# a message over 16 MB closes the connection; the events go elsewhere
my $offset = -s $node->logfile;
my (undef, $huge_port) = start_worker('huge', '--huge');
$node->safe_psql('postgres', q{
	SELECT cluster.create_handler('big', 'jobs', ack_timeout => '5 s');
});
my $huge = $node->safe_psql('postgres',
	"SELECT cluster.register_worker('big', 'ws://127.0.0.1:$huge_port/')");
$node->wait_for_log(qr/lost the connection to worker $huge of handler "big".*\n.*exceeded 16 MB/,
	$offset);
pass('an oversized message closed the connection');
$node->safe_psql('postgres', "SELECT cluster.unregister_worker('$huge')");
my (undef, $tls_port, $tls_log) = start_worker('tls', '--tls-cert', "$tls/worker.pem",
	'--tls-key', "$tls/worker.key");
my $tls_id = $node->safe_psql('postgres',
	"SELECT cluster.register_worker('big', 'wss://127.0.0.1:$tls_port/')");
ok(defined caught_up('big'), 'a wss:// worker verified against cluster.ca_file caught up');
is(scalar(keys %{ logged_ids($tls_log) }), 40, 'it acked every event over TLS');
ok($node->safe_psql('postgres', "SELECT connected FROM cluster.workers WHERE id = '$tls_id'"),
	'it shows as connected');

# the only worker of a handler with a function dies holding deliveries:
# they come back at once and the SQL function handles them
my ($slowpoke, $slow_port) = start_worker('slowpoke', '--slow', '600000');
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('late');
	SELECT cluster.create_handler('lastone', 'late', 'locally(jsonb)');
});
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('lastone', 'ws://127.0.0.1:$slow_port/')");
ok(defined poll_until($node,
		"SELECT connected FROM cluster.workers WHERE handler = 'lastone'", 't'),
	'the only worker of "lastone" is connected');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('late', jsonb_build_object('n', i))) FROM generate_series(1, 5) i");
ok(defined poll_until($node,
		"SELECT in_flight > 0 FROM cluster.workers WHERE handler = 'lastone'", 't'),
	'it holds the deliveries');
$slowpoke->signal('KILL');
ok(defined caught_up('lastone'), 'after it died the handler caught up');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM local WHERE id IN (SELECT id FROM cluster.events WHERE stream = 'late')"),
	'5', 'the SQL function handled the events the worker had');

$node->stop;
done_testing();
