# The protocol's answers: an ack's state patch is applied with the cursor
# commit; a fail counts an attempt and dead-letters after max_attempts;
# a duplicate ack, an answer to a delivery never sent and a message of an
# unknown type get a warning naming the worker (the one never sent also a
# close); the other workers go on; a worker joining does not send the
# deliveries in flight round again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('protocol');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	SELECT cluster.create_pump('p');
	SELECT cluster.create_handler('patched', 'p', batch_size => 5);
	SELECT cluster.create_handler('refused', 'p', batch_size => 5, max_attempts => 2);
});
sub register
{
	my ($handler, $port) = @_;
	return $node->safe_psql('postgres',
		"SELECT cluster.register_worker('$handler', 'ws://127.0.0.1:$port/')");
}
sub caught_up
{
	return poll_until($node,
		"SELECT lag_events = 0 FROM cluster.handlers WHERE name = '$_[0]'", 't', 60);
}

my (undef, $patch_port) = start_worker('patch', '--answer', 'patch');
my (undef, $fail_port) = start_worker('fail', '--answer', 'fail');
register('patched', $patch_port);
register('refused', $fail_port);
ok(defined poll_until($node, 'SELECT count(*) FILTER (WHERE connected) FROM cluster.workers', '2'),
	'both workers connected');
$node->safe_psql('postgres',
	"SELECT count(cluster.publish('p', jsonb_build_object('n', i))) FROM generate_series(1, 20) i");

ok(defined caught_up('patched'), 'the patching worker acked everything');
is($node->safe_psql('postgres',
		"SELECT (s ->> 'seen')::int, (SELECT count(*) FROM jsonb_object_keys(s -> 'ids')) "
		  . "FROM cluster.handler_state('patched') s"),
	'20|20', "the acks' patches were applied, once each");

ok(defined caught_up('refused'), 'the refusing worker has failed everything out');
is($node->safe_psql('postgres',
		"SELECT count(*), min(attempts), max(attempts), min(last_error) FROM cluster.dead_letters"),
	'20|2|2|worker refuses 5 events', 'each event failed twice, then was dead-lettered with the error');
is($node->safe_psql('postgres',
		"SELECT failed >= 8 AND last_error LIKE 'worker refuses%' FROM cluster.workers WHERE handler = 'refused'"),
	't', 'cluster.workers counts the fails');

# untrusted answers
for my $mode ('dup', 'foreign', 'type')
{
	my $offset = -s $node->logfile;
	my (undef, $port, $log) = start_worker($mode, '--answer', $mode);
	$node->safe_psql('postgres', "SELECT cluster.create_handler('h_$mode', 'p', batch_size => 5)");
	my $id = register("h_$mode", $port);
	my $expect = {
		dup => qr/worker $id of handler "h_dup" answered delivery "[0-9.]+", which is no longer in flight; ignored/,
		foreign => qr/closing worker $id of handler "h_foreign" .*delivery "not-a-delivery", which was never sent/,
		type => qr/worker $id of handler "h_type" sent a message of unknown type "gossip"; ignored/,
	}->{$mode};
	$node->wait_for_log($expect, $offset);
	pass("$mode: the leader logged a warning naming the worker");
	if ($mode ne 'foreign')
	{
		ok(defined caught_up("h_$mode"), "$mode: the worker still acked everything");
	}
	$node->safe_psql('postgres', "SELECT cluster.unregister_worker('$id')");
}
ok(defined caught_up('patched'), 'the patching worker was not disturbed');

# a worker joining, a token issued, a grant given and a coordinator's new
# lease_ttl make the leader reread its workers or nothing, not reload its
# handlers: a delivery in flight stays where it is and is not sent again
my (undef, $silent_port) = start_worker('silent', '--never-answer');
$node->safe_psql('postgres', q{
	SELECT cluster.create_pump('quiet');
	SELECT cluster.create_handler('held', 'quiet', ack_timeout => '1 h');
});
my $silent = register('held', $silent_port);
ok(defined poll_until($node, "SELECT connected FROM cluster.workers WHERE id = '$silent'", 't'),
	'a worker that never answers is connected');
$node->safe_psql('postgres', "SELECT cluster.publish('quiet', '{}')");
ok(defined poll_until($node, "SELECT in_flight || '/' || delivered FROM cluster.workers WHERE id = '$silent'", '1/1'),
	'it holds the one delivery');
my (undef, $joiner_port) = start_worker('joiner');
my $joiner = register('held', $joiner_port);
$node->safe_psql('postgres', q{
	SELECT cluster.issue_worker_token('held');
	CREATE ROLE someone;
	SELECT cluster.grant_worker('held', 'someone');
	SELECT cluster.alter_coordinator('default', lease_ttl => '11 s');
});
ok(defined poll_until($node, "SELECT connected FROM cluster.workers WHERE id = '$joiner'", 't'),
	'a second worker joined');
is($node->safe_psql('postgres', "SELECT in_flight || '/' || delivered FROM cluster.workers WHERE id = '$silent'"),
	'1/1', 'the delivery in flight stayed with the first worker, sent once');
is($node->safe_psql('postgres', "SELECT delivered FROM cluster.workers WHERE id = '$joiner'"),
	'0', 'and was not sent to the joiner');

$node->stop;
done_testing();
