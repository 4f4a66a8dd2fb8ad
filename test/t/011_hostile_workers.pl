# Hostile workers: each misbehaves in one way (deep nesting, a huge error,
# acks of events or deliveries that don't exist, binary frames, bad JSON,
# oversized patches), on node's ws and on Debian's python3-websockets.
# Each check asserts what the worker itself saw: a close frame with the
# expected code and reason (1006 would mean none came).  Meanwhile a good
# worker of another handler gets every event, and the same engine leads
# with the same fence throughout.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $node = cluster_node('hostile_workers');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	SELECT cluster.create_pump('orders');
	SELECT cluster.create_handler('good', 'orders', batch_size => 10);
});

my @started;
END { $_->kill_kill for grep { $_->pumpable } @started; }

# Start a hostile worker for a new handler (by default h_<impl>_<mode> of
# "orders"); returns the file it records its closes in.
sub hostile
{
	my ($impl, $mode, %opt) = @_;
	my $handler = $opt{handler} // "h_${impl}_$mode" =~ s/-/_/gr;
	my $pump = $opt{pump} // 'orders';
	my $settings = $opt{settings} // "ack_timeout => '5 s', max_attempts => 2";
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $closes = "$PostgreSQL::Test::Utils::tmp_check/closes_$handler";
	my $out = "$closes.out";
	my @cmd = $impl eq 'ws'
	  ? ('node', 'test/workers/hostile-worker.js', $port, $closes, $mode)
	  : ('/usr/bin/python3', 'test/workers/hostile_worker.py', $port, $closes, $mode);
	push @started, IPC::Run::start(\@cmd, '>', $out, '2>&1');
	my $start = time;
	usleep(20_000) until (-s $out && slurp_file($out) =~ /listening/) || time - $start > 30;
	$node->safe_psql('postgres', qq{
		SELECT cluster.create_handler('$handler', '$pump', batch_size => 10, $settings);
		SELECT cluster.register_worker('$handler', 'ws://127.0.0.1:$port/');
	});
	return $closes;
}

my $good = start_worker_logged('good');
sub start_worker_logged
{
	my ($h, $port, $log) = start_worker('good_worker');
	$node->safe_psql('postgres', "SELECT cluster.register_worker('good', 'ws://127.0.0.1:$port/')");
	return $log;
}

my %expect = (
	'ws deep' => qr/^1007 the message is nested more than 64 levels deep$/m,
	'ws deep-patch' => qr/^1007 the message is nested more than 64 levels deep$/m,
	'ws foreign-ids' => qr/^1008 an answer names event 999999999, which is not in delivery/m,
	'ws guess' => qr/^1008 answer to delivery ".*", which was never sent$/m,
	'ws binary' => qr/^1003 binary frames are not part of the protocol$/m,
	'ws bad-json' => qr/^1007 invalid JSON: /m,
	'ws many-ops' => qr/^1007 the patch has more than 1000 operations$/m,
	'ws deep-path' => qr/^1007 a patch path has more than 32 keys$/m,
	'ws ping-flood' => qr/^1008 it sends pings faster than it reads the answers$/m,
	'py bad-json' => qr/^1007 invalid JSON: /m,
	'py binary' => qr/^1003 binary frames are not part of the protocol$/m,
	'py deep' => qr/^1007 the message is nested more than 64 levels deep$/m,
	'py foreign-ids' => qr/^1008 an answer names event 999999999, which is not in delivery/m,
);
my %closes;
for my $case (sort keys %expect)
{
	my ($impl, $mode) = split / /, $case;
	$closes{$case} = hostile($impl, $mode);
}
my $huge = hostile('ws', 'huge-error');
my $chatty = hostile('ws', 'unknown-flood');
my $workers = scalar(keys %expect) + 3;
ok(defined poll_until($node, 'SELECT count(*) FILTER (WHERE connected) FROM cluster.workers', $workers),
	"the leader connected to all $workers workers");
my ($pid, $fence) = leader($node);

$node->safe_psql('postgres',
	"SELECT count(cluster.publish('orders', jsonb_build_object('n', i), key => 'k' || i)) FROM generate_series(1, 50) i");

for my $case (sort keys %expect)
{
	my $file = $closes{$case};
	my $start = time;
	usleep(50_000) until -s $file || time - $start > 60;
	like(-e $file ? slurp_file($file) : '(no close)', $expect{$case},
		"$case: the worker saw the close frame with its code and reason");
}

# a fail with a 10 MB error: stored cut to about 1 kB, dead-lettered after its attempts
ok(defined poll_until($node,
		"SELECT dead_letters = 50 FROM cluster.handlers WHERE name = 'h_ws_huge_error'", 't', 120),
	'huge error: the events failed their attempts and were dead-lettered');
is($node->safe_psql('postgres',
		"SELECT max(octet_length(last_error)) <= 1100 FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'h_ws_huge_error'"),
	't', 'huge error: each stored error is cut to about 1 kB');

# a worker that repeats a harmless oddity costs at most 10 warnings per connection
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'h_ws_unknown_flood'", '0'),
	'unknown-flood: its acks went through');
my $chatty_id = $node->safe_psql('postgres', "SELECT id FROM cluster.workers WHERE handler = 'h_ws_unknown_flood'");
my $log = slurp_file($node->logfile);
my $warned = () = $log =~ /worker \Q$chatty_id\E of handler "h_ws_unknown_flood" sent a message of unknown type/g;
is($warned, 10, 'unknown-flood: 10 warnings for 500 unknown messages');
like($log, qr/further warnings about worker \Q$chatty_id\E of handler "h_ws_unknown_flood" are suppressed until it reconnects/,
	'unknown-flood: and a word that the rest are suppressed');

ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'good'", '0'),
	'the good worker\'s handler passed every event');
my $ids = logged_ids($good);
is(scalar(keys %$ids), 50, 'the good worker acked all 50 events');
# one answer settles every event: an ack whose "failed" names the odd events
my $odd = hostile('ws', 'fail-odd');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('orders', jsonb_build_object('n', i), key => 'p' || i)) FROM generate_series(1, 20) i");
ok(defined poll_until($node,
		"SELECT processed || '/' || dead_letters FROM cluster.handlers WHERE name = 'h_ws_fail_odd'", '35/35', 60),
	'fail-odd: the even events were done, the odd ones dead-lettered after two attempts');
is($node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT (d.event -> 'payload' ->> 'n')::int % 2 || ':' || (d.last_error = 'odd ' || (d.event -> 'payload' ->> 'n')), ',') "
		  . "FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'h_ws_fail_odd'"),
	'1:true', 'fail-odd: each dead letter is an odd event with its own error');
my %seen;
for (split /\n/, slurp_file("$odd.log"))
{
	my ($id, $what) = split / /;
	$seen{$id}{$what}++;
}
is(scalar(grep { ($_->{ok} // 0) > 1 } values %seen), 0, 'fail-odd: no innocent event was handed out twice');

# a patch that passes the check but can't be applied fails its delivery,
# not the round: the handler goes on
$node->safe_psql('postgres', "SELECT cluster.create_pump('arrays')");
hostile('ws', 'array-key', handler => 'arrays', pump => 'arrays',
	settings => 'max_attempts => 1');
$node->safe_psql('postgres', "SELECT cluster.publish('arrays', jsonb_build_object('n', i)) FROM generate_series(1, 3) i");
ok(defined poll_until($node, "SELECT lag_events || '/' || dead_letters FROM cluster.handlers WHERE name = 'arrays'", '0/3'),
	'array-key: each delivery failed with its patch, the handler went on');
like($node->safe_psql('postgres',
		"SELECT DISTINCT d.last_error FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'arrays'"),
	qr/path element at position \d+ is not an integer/, 'array-key: the dead letters carry the patch\'s error');
is($node->safe_psql('postgres', "SELECT cluster.handler_state('arrays')"), '{}',
	'array-key: nothing of the failed patches is in the state');

# dead letters of a handler served only by workers are replayed through them
$node->safe_psql('postgres',
	"SELECT cluster.unregister_worker(id) FROM cluster.workers WHERE handler = 'h_ws_fail_odd'");
my (undef, $replay_port, $replay_log) = start_worker('replayer');
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('h_ws_fail_odd', 'ws://127.0.0.1:$replay_port/')");
is($node->safe_psql('postgres', "SELECT cluster.replay_dead_letters('h_ws_fail_odd')"), '35',
	'replay: 35 dead letters marked');
ok(defined poll_until($node, "SELECT dead_letters FROM cluster.handlers WHERE name = 'h_ws_fail_odd'", '0'),
	'replay: a worker took them all, no function needed');
my @replayed = map { (split / /)[0] } split /\n/, slurp_file($replay_log);
is(scalar(@replayed), 35, 'replay: the worker got each of the 35 once');
is(join(',', @replayed), join(',', sort { $a <=> $b } @replayed), 'replay: in the order they were dead-lettered');

# batches bounded in bytes; an event larger than any batch is dead-lettered at once
$node->safe_psql('postgres', "SELECT cluster.create_pump('big')");
my $small = hostile('ws', 'fail-odd', handler => 'bytes', pump => 'big',
	settings => 'max_batch_bytes => 4096');
$node->safe_psql('postgres', q{
	SELECT cluster.publish('big', jsonb_build_object('n', 2 * i, 'pad', repeat('x', 1000)), key => 'b' || i)
	  FROM generate_series(1, 20) i;
	SELECT cluster.publish('big', jsonb_build_object('n', 100, 'pad', repeat('y', 10000)));
});
ok(defined poll_until($node, "SELECT processed || '/' || dead_letters FROM cluster.handlers WHERE name = 'bytes'", '20/1'),
	'max_batch_bytes: 20 events of 1 kB handed out, the 10 kB one dead-lettered');
like($node->safe_psql('postgres',
		"SELECT d.last_error FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'bytes'"),
	qr/^the event is \d+ bytes, more than the handler's max_batch_bytes \(4096\)$/,
	'max_batch_bytes: the dead letter says why');
my (%events, %per_delivery);
for (split /\n/, slurp_file("$small.log"))
{
	my ($id, $what, $delivery) = split / /;
	$events{$id}++;
	$per_delivery{$delivery}++;
}
is(scalar(keys %events), 20, 'max_batch_bytes: the worker got the 20 events');
cmp_ok((sort { $b <=> $a } values %per_delivery)[0], '<=', 3,
	'max_batch_bytes: no delivery had more than the 3 events of 1 kB that fit in 4 kB');

# a slow worker beside a fast one: its timed-out events move to the fast
# one without an attempt, and it gets no keys while it is unhealthy
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('slowly');
	SELECT cluster.create_handler('slowly', 'slowly', batch_size => 5,
								  ack_timeout => '1 s', max_attempts => 3);
});
my (undef, $slow_port) = start_worker('slow', '--slow', '2000');
my (undef, $fast_port, $fast_log) = start_worker('fast');
$node->safe_psql('postgres', qq{
	SELECT cluster.register_worker('slowly', 'ws://127.0.0.1:$slow_port/');
	SELECT cluster.register_worker('slowly', 'ws://127.0.0.1:$fast_port/');
});
ok(defined poll_until($node, "SELECT count(*) FILTER (WHERE connected) FROM cluster.workers WHERE handler = 'slowly'", '2'),
	'slow and fast worker connected');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('slowly', jsonb_build_object('n', i), key => 's' || i)) FROM generate_series(1, 200) i");
ok(defined poll_until($node,
		"SELECT unhealthy_until IS NOT NULL FROM cluster.workers WHERE handler = 'slowly' AND address LIKE '%:$slow_port/'", 't', 30),
	'the slow worker shows as unhealthy in cluster.workers');
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'slowly'", '0', 120),
	'every event of the slow worker\'s handler was done');
is($node->safe_psql('postgres', "SELECT dead_letters FROM cluster.handlers WHERE name = 'slowly'"),
	'0', 'no event was dead-lettered while a healthy worker was there');

# an event that kills every connection it reaches: the first loss is free,
# every further one an attempt, so it is dead-lettered; the events lost with
# it go out alone (nothing else in flight to that worker) and are done,
# never blamed for it
$node->safe_psql('postgres', "SELECT cluster.create_pump('poisoned')");
my $poison = hostile('ws', 'poison', handler => 'poisoned', pump => 'poisoned');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('poisoned', jsonb_build_object('n', i, 'poison', i = 7))) FROM generate_series(1, 20) i");
ok(defined poll_until($node,
		"SELECT processed || '/' || dead_letters FROM cluster.handlers WHERE name = 'poisoned'", '19/1', 60),
	'poison: 19 events done, the poison one dead-lettered');
is($node->safe_psql('postgres',
		"SELECT (d.event -> 'payload' ->> 'n') || ': ' || d.last_error FROM cluster.dead_letters d JOIN cluster.handler h ON h.id = d.handler_id WHERE h.name = 'poisoned'"),
	'7: the connection to the worker was lost while it held the event (3 times)',
	'poison: the dead letter is the poison event, with why');
%seen = ();
$seen{(split / /)[0]}++ for split /\n/, slurp_file("$poison.log");
is(scalar(keys %seen), 19, 'poison: the worker acked each of the 19 others');

# an answer for an earlier leader's fence is late, not hostile: ignored
my $old = hostile('ws', 'old-fence', handler => 'late', pump => 'poisoned');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('poisoned', jsonb_build_object('n', i))) FROM generate_series(21, 30) i");
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'late'", '0'),
	'old-fence: its real acks went through');
ok(!-e $old, 'old-fence: its connection was never closed');
like(slurp_file($node->logfile), qr/worker \S+ of handler "late" answered for fence \d+, the leader's is \d+; ignored/,
	'old-fence: a WARNING says the answer was ignored');

is(join(' ', leader($node)), "$pid $fence", 'the same engine leads with the same fence');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cluster.handlers WHERE name LIKE 'h_%' AND dead_letters > 0 AND name NOT IN ('h_ws_huge_error', 'h_ws_fail_odd')"),
	'0', 'no violation cost an event an attempt');

$node->stop;
done_testing();
