# Each handler is its own unit: while a worker holds a delivery of handler
# "a", every kind of change to something else (handler "b" created,
# altered, paused, resumed, reset and dropped; pump "c" created and
# dropped; a token issued and revoked; grants given and taken back)
# reloads only what it concerns.  The delivery stays in flight, is sent
# once, and its slow ack settles it: nothing is redelivered, nothing is
# dead-lettered, and no answer is ignored.  A change to "a" itself does
# give its deliveries back, as before.  And an ack that comes after the
# ack_timeout still settles its events.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;
use Time::HiRes qw(time usleep);

my $node = cluster_node('isolation');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE ROLE dora;
	CREATE TABLE b_sink (id bigint);
	CREATE FUNCTION b_fn(events cluster.event[]) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO b_sink SELECT e.id FROM unnest(events) e $$;
	CREATE FUNCTION b_fn2(events cluster.event[]) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO b_sink SELECT -e.id FROM unnest(events) e $$;
	SELECT cluster.create_pump('orders');
	SELECT cluster.create_handler('a', 'orders', batch_size => 1, ack_timeout => '60 s');
});
# A test worker (start_worker's OPTS) registered for HANDLER with
# CAPACITY, and connected; returns its log.
sub registered_worker
{
	my ($name, $handler, $capacity, @opts) = @_;
	my (undef, $port, $log) = start_worker($name, @opts);
	$node->safe_psql('postgres',
		"SELECT cluster.register_worker('$handler', 'ws://127.0.0.1:$port/', capacity => $capacity)");
	ok(defined poll_until($node, "SELECT connected FROM cluster.workers WHERE handler = '$handler'", 't'),
		"the $name worker of \"$handler\" is connected");
	return $log;
}

# the worker holds each delivery 6 s before it acks
my $log = registered_worker('slow', 'a', 1, '--slow', '6000');

my $id = $node->safe_psql('postgres', "SELECT cluster.publish('orders', '{\"n\": 1}')");
ok(defined poll_until($node, "SELECT in_flight FROM cluster.handlers WHERE name = 'a'", '1'),
	'a delivery of a is in flight');
ok(defined poll_until($node, "SELECT waiting_for FROM cluster.handlers WHERE name = 'a'", 'answers', 5),
	'a says it waits for answers');
my $t0 = time;
my $log_offset = -s $node->logfile;

my @changes = (
	"SELECT cluster.create_handler('b', 'orders', 'b_fn(cluster.event[])')",
	"SELECT cluster.alter_handler('b', batch_size => 7)",
	"SELECT cluster.alter_handler('b', function => 'b_fn2(cluster.event[])')",
	"SELECT cluster.pause_handler('b')",
	"SELECT cluster.resume_handler('b')",
	"SELECT cluster.reset_handler('b', 'end')",
	"SELECT cluster.drop_handler('b')",
	"SELECT cluster.create_pump('c')",
	"SELECT cluster.create_handler('c1', 'c')",
	"SELECT cluster.grant_pump('c', 'dora')",
	"SELECT cluster.revoke_pump('c', 'dora')",
	"SELECT cluster.grant_worker('c1', 'dora')",
	"SELECT cluster.revoke_worker('c1', 'dora')",
	"SELECT cluster.drop_handler('c1')",
	"SELECT cluster.drop_pump('c')",
	"SELECT cluster.grant_worker('a', 'dora')",
	"SELECT cluster.revoke_worker('a', 'dora')",
	"SELECT count(cluster.issue_worker_token('a', label => 'spare'))",
	"SELECT cluster.revoke_worker_token(t.id::text) FROM cluster.worker_tokens t WHERE t.label = 'spare'",
);
$node->safe_psql('postgres', $_) for @changes;
# the leader reloads at each change; the last one is loaded once the
# view no longer lists handler b or pump c's handler as led
ok(defined poll_until($node, "SELECT count(*) FROM cluster.handlers WHERE name IN ('b', 'c1')", '0', 5),
	'every change is made');
is($node->safe_psql('postgres', "SELECT in_flight FROM cluster.handlers WHERE name = 'a'"), '1',
	"a's delivery is still in flight");
cmp_ok(time - $t0, '<', 5, 'every change was made while the worker still held the delivery');

ok(defined poll_until($node,
		"SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'a'", 't', 30),
	'the delivery is acked');
my $took = time - $t0;
cmp_ok($took, '<', 9, sprintf('a was settled by the worker\'s one answer (%.1f s after the changes began)', $took));
is(logged_ids($log)->{$id}, 1, 'the worker was sent the event once');
is($node->safe_psql('postgres',
		"SELECT delivered || ' ' || acked || ' ' || failed FROM cluster.workers WHERE handler = 'a' AND NOT dialed_in"),
	'1 1 0', 'one delivery, one ack, no failure');
is($node->safe_psql('postgres', "SELECT processed || ' ' || dead_letters FROM cluster.handlers WHERE name = 'a'"),
	'1 0', 'a processed it once, and dead-lettered nothing');
my $server_log = slurp_file($node->logfile, $log_offset);
unlike($server_log, qr/no longer in flight/, 'no answer was ignored');
unlike($server_log, qr/lost the connection/, 'no connection was lost');

# a change to a itself gives its deliveries back (and they go out again)
my $id2 = $node->safe_psql('postgres', "SELECT cluster.publish('orders', '{\"n\": 2}', key => 'k2')");
ok(defined poll_until($node, "SELECT in_flight FROM cluster.handlers WHERE name = 'a'", '1'),
	'a second delivery of a is in flight');
# another key, ready, while the worker's one slot is busy
$node->safe_psql('postgres', "SELECT cluster.publish('orders', '{\"n\": 3}', key => 'k3')");
ok(defined poll_until($node, "SELECT waiting_for || ' ' || in_flight FROM cluster.handlers WHERE name = 'a'", 'worker slots 2', 5),
	'a says it waits for a worker slot')
  or diag($node->safe_psql('postgres', "SELECT waiting_for, in_flight, retrying, lag_events FROM cluster.handlers WHERE name = 'a'"));
$node->safe_psql('postgres', "SELECT cluster.alter_handler('a', max_attempts => 9)");
ok(defined poll_until($node,
		"SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'a'", 't', 30),
	'after a change to a, its event is handled all the same');
cmp_ok(logged_ids($log)->{$id2}, '>=', 1, 'the worker acked it');

# what a handler without workers, and a paused one, wait for
$node->safe_psql('postgres', "SELECT cluster.create_handler('lonely', 'orders')");
ok(defined poll_until($node, "SELECT waiting_for FROM cluster.handlers WHERE name = 'lonely'", 'no worker connected', 10),
	'a handler without a function or a worker waits for a worker');
$node->safe_psql('postgres', "SELECT cluster.pause_handler('lonely')");
is($node->safe_psql('postgres', "SELECT waiting_for FROM cluster.handlers WHERE name = 'lonely'"), 'paused',
	'a paused one says so');
$node->safe_psql('postgres', "SELECT cluster.drop_handler('lonely')");

# A late ack still counts: a delivery whose ack_timeout (1 s) passed is
# settled by the ack its worker sends at 2.5 s, not by the retry's ack
# (the retry goes out after a 1 s backoff and would be acked at about
# 4.5 s); the event is neither dead-lettered nor retried again, and the
# ack is not ignored.
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('late');
	SELECT cluster.create_handler('late', 'late', batch_size => 1, ack_timeout => '1 s', max_attempts => 5);
});
registered_worker('late', 'late', 2, '--slow', '2500');
$log_offset = -s $node->logfile;
$t0 = time;
$node->safe_psql('postgres', "SELECT cluster.publish('late', '{\"n\": 1}')");
my $settled = poll_until($node, "SELECT processed FROM cluster.handlers WHERE name = 'late'", '1', 20);
ok(defined $settled, 'the event of "late" is processed');
cmp_ok(time - $t0, '<', 4,
	sprintf('it was settled by the late ack of its first delivery (%.1f s after publishing)', time - $t0));
ok(defined poll_until($node, "SELECT acked FROM cluster.workers WHERE handler = 'late'", '2', 20),
	'the retry is acked too');
is($node->safe_psql('postgres', "SELECT processed || ' ' || dead_letters || ' ' || retrying FROM cluster.handlers WHERE name = 'late'"),
	'1 0 0', 'processed once, no dead letter, nothing retrying');
unlike(slurp_file($node->logfile, $log_offset), qr/no longer in flight/, 'the late ack was not ignored');

# A late delivery is answered only by the worker it was sent to: worker A
# never answers its delivery, which times out and goes to worker B; B
# acks A's delivery (the one sent just before its own) and is closed for
# it: an answer counts only from the worker a delivery was sent to.
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('stolen');
	SELECT cluster.create_handler('stolen', 'stolen', batch_size => 1, ack_timeout => '1 s', max_attempts => 5);
});
registered_worker('silent', 'stolen', 1, '--never-answer');
my $stolen_id = $node->safe_psql('postgres', "SELECT cluster.publish('stolen', '{}')");
ok(defined poll_until($node, "SELECT in_flight FROM cluster.workers WHERE handler = 'stolen'", '1'),
	'its delivery is with the silent worker');
my $thief_port = PostgreSQL::Test::Cluster::get_free_port();
my $closes = "$PostgreSQL::Test::Utils::tmp_check/closes_thief";
my $thief_out = "$closes.out";
my $thief = IPC::Run::start([ 'node', 'test/workers/hostile-worker.js', $thief_port, $closes, 'neighbour' ],
	'>', $thief_out, '2>&1');
my $start = time;
usleep(20_000) until (-s $thief_out && slurp_file($thief_out) =~ /listening/) || time - $start > 30;
$node->safe_psql('postgres', "SELECT cluster.register_worker('stolen', 'ws://127.0.0.1:$thief_port/', capacity => 1)");
ok(defined poll_until($node, "SELECT count(*) FROM cluster.workers WHERE handler = 'stolen' AND connected", '2'),
	'a second worker of "stolen" is connected');
$start = time;
usleep(50_000) until (-e $closes && slurp_file($closes) =~ /\n/) || time - $start > 30;
like(-e $closes ? slurp_file($closes) : '', qr/^1008 answer to delivery "[0-9.]+" of another worker$/m,
	"the worker that acked another worker's late delivery is closed for it");
$thief->kill_kill;

$node->stop;
done_testing();
