# The worker mesh with workers that speak only the Flowcore data-pump
# protocol: three workers of one handler and one of another; a worker
# killed with SIGKILL mid-batch; the leader terminated mid-stream; a slow
# worker; workers that send a forged fence or bad JSON.  Every committed
# event is acked at least once, duplicates stay within what was in flight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;
use Time::HiRes qw(time);

my $node = cluster_node('mesh');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	SELECT cluster.create_pump('orders');
	SELECT cluster.create_handler('mail', 'orders', batch_size => 10, ack_timeout => '5 s');
	SELECT cluster.create_handler('search', 'orders', batch_size => 10, ack_timeout => '5 s');
});

my (%workers, %logs);
sub worker
{
	my ($name, $handler, @opts) = @_;
	my ($h, $port, $log) = start_worker($name, @opts);
	$workers{$name} = $h;
	$logs{$handler}{$name} = $log;
	return $node->safe_psql('postgres',
		"SELECT cluster.register_worker('$handler', 'ws://127.0.0.1:$port/', capacity => 2)");
}
worker("m$_", 'mail') for 1 .. 2;
my $m3 = worker('m3', 'mail', '--slow', '200');
worker('s1', 'search');
ok(defined poll_until($node, 'SELECT count(*) FILTER (WHERE connected) FROM cluster.workers', '4'),
	'the leader connected to the four workers');

my $published = 0;
sub publish
{
	my ($n) = @_;
	for (1 .. 4)
	{
		$node->safe_psql('postgres',
			"SELECT count(cluster.publish('orders', jsonb_build_object('n', i), key => 'k' || (i % 50))) "
			  . "FROM generate_series(1, $n / 4) i");
	}
	$published += $n;
}

sub all_acked
{
	my ($what, $max_dup) = @_;
	ok(defined poll_until($node,
			"SELECT bool_and(lag_events = 0 AND in_flight = 0) FROM cluster.handlers", 't', 120),
		"$what: both handlers passed every event");
	my @committed = split /\n/, $node->safe_psql('postgres',
		"SELECT id FROM cluster.events WHERE stream = 'orders' ORDER BY id");
	is(scalar(@committed), $published, "$what: $published events committed");
	for my $handler ('mail', 'search')
	{
		my $ids = logged_ids(values %{ $logs{$handler} });
		my @missing = grep { !$ids->{$_} } @committed;
		is(scalar(@missing), 0, "$what: every event acked by a $handler worker");
		my $dups = grep { $_ > 1 } values %$ids;
		cmp_ok($dups, '<=', $max_dup, "$what: $dups duplicates for $handler");
	}
}

publish(200);
all_acked('three workers and one', 0);

# per-key order: each key went to one worker, in id order
my %key_worker;
my $ordered = 1;
for my $name (sort keys %{ $logs{mail} })
{
	my %last;
	# a worker that was given no key has written no log
	next unless -e $logs{mail}{$name};
	for my $line (split /\n/, slurp_file($logs{mail}{$name}))
	{
		my ($id, $key) = split / /, $line;
		$ordered = 0 if defined $last{$key} && $id < $last{$key};
		$last{$key} = $id;
		$key_worker{$key}{$name} = 1;
	}
}
ok($ordered, 'per-key order held in every mail worker');
is(scalar(grep { keys %{ $key_worker{$_} } > 1 } keys %key_worker), 0,
	'each key went to one mail worker');

# SIGKILL a worker while it holds deliveries (m3 is slow)
publish(200);
ok(defined poll_until($node,
		"SELECT in_flight > 0 FROM cluster.workers WHERE id = '$m3'", 't'),
	'the slow worker holds deliveries');
$workers{m3}->signal('KILL');
$workers{m3}->finish;
all_acked('after a worker was killed', 2 * 10);
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.workers WHERE handler = 'mail' AND NOT connected", '1'),
	'the killed worker shows as not connected');

# terminate the leader mid-stream
publish(200);
my ($pid) = leader($node);
my $start = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(defined poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid", '0', 5),
	'SIGTERM stopped the leader, busy with its workers');
cmp_ok(time - $start, '<', 1.0, 'within a second');
all_acked('after the leader was terminated', 2 * 2 * 10 * 3);

# untrusted answers: a fence ahead of the leader's, bad JSON; the others go on
my $offset = -s $node->logfile;
worker('stale', 'search', '--bad-fence');
worker('broken', 'search', '--bad-json');
publish(200);
$node->wait_for_log(qr/closing worker .* of handler "search" .*: fence \d+ is ahead/, $offset);
$node->wait_for_log(qr/closing worker .* of handler "search" .*: invalid JSON/, $offset);
all_acked('with misbehaving workers', 2 * 2 * 10 * 3);

# with key ordering a key is in one delivery at a time: a backlog over 8
# keys is spread over the worker's 4 free slots (2 keys each), so that its
# deliveries overlap instead of one batch holding every key
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('spread');
	SELECT cluster.create_handler('spread', 'spread', batch_size => 100);
	SELECT count(cluster.publish('spread', jsonb_build_object('n', i), key => 'k' || (i % 8)))
	  FROM generate_series(1, 400) i;
});
my ($spread, $spread_port, $spread_log) = start_worker('spread', '--slow', '1000');
$workers{spread} = $spread;
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('spread', 'ws://127.0.0.1:$spread_port/', capacity => 4)");
ok(defined poll_until($node,
		"SELECT in_flight FROM cluster.workers WHERE handler = 'spread'", '4'),
	'a backlog over 8 keys: four deliveries in flight at once');
ok(defined poll_until($node,
		"SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'spread'", 't'),
	'the spread backlog was passed');
my (%spread_last, $spread_ordered);
$spread_ordered = 1;
for my $line (split /\n/, slurp_file($spread_log))
{
	my ($id, $key) = split / /, $line;
	$spread_ordered = 0 if defined $spread_last{$key} && $id < $spread_last{$key};
	$spread_last{$key} = $id;
}
ok($spread_ordered, 'per-key order held across the overlapping deliveries');
is(scalar(keys %{ logged_ids($spread_log) }), 400, 'each of the 400 events acked');

$_->kill_kill for values %workers;
$node->stop;
done_testing();
