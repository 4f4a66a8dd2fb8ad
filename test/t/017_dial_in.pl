# Workers that dial in: the leader listens where a superuser allowed it, a
# worker with a token is served like a dialled one (both kinds on one
# handler, every event acked, per-key order), a wrong, revoked or expired
# token gets HTTP 401 and nothing else, a revoked token's connection is
# closed, and after a takeover the new leader listens and the worker that
# dialed in is served again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IO::Socket::INET;
use ClusterTest;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $listen = "127.0.0.1:$port";
my $node = cluster_node('dialin', conf => "cluster.worker_listen = '$listen'\n");
$node->start;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION cluster;
	SELECT cluster.create_pump('jobs');
	SELECT cluster.create_handler('jobs', 'jobs', batch_size => 10);
	SELECT cluster.create_pump('other');
	SELECT cluster.create_handler('other', 'other');
	SELECT cluster.alter_coordinator('default', listen => '$listen');
});
$node->wait_for_log(qr/cluster leader listens at "\Q$listen\E"/);

my (%procs, %logs, %outs);
# the workers that dial in die with the test, even when it fails
END { $_->kill_kill for grep { $_->pumpable } values %procs; }
sub dial_in
{
	my ($name, $token, @opts) = @_;
	my $log = "$PostgreSQL::Test::Utils::tmp_check/worker_$name.log";
	my $out = "$PostgreSQL::Test::Utils::tmp_check/worker_$name.out";
	unlink $log, $out;
	$procs{$name} = IPC::Run::start(
		[ 'node', 'test/workers/flowcore-worker.js', 0, $log,
		  '--connect', "ws://$listen/", '--token', $token, @opts ],
		'>', $out, '2>&1');
	$logs{$name} = $log;
	$outs{$name} = $out;
}
sub output_matches
{
	my ($name, $re) = @_;
	my $start = time;
	while (time - $start < $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if -e $outs{$name} && slurp_file($outs{$name}) =~ $re;
		usleep(20_000);
	}
	return 0;
}
sub token
{
	my ($handler, @args) = @_;
	my $extra = @args ? ', ' . join(', ', @args) : '';
	return $node->safe_psql('postgres', "SELECT cluster.issue_worker_token('$handler'$extra)");
}

my $published = 0;
sub publish
{
	my ($n) = @_;
	$node->safe_psql('postgres',
		"SELECT count(cluster.publish('jobs', jsonb_build_object('n', i), key => 'k' || (i % 20))) "
		  . "FROM generate_series(1, $n) i");
	$published += $n;
}
sub all_acked
{
	my ($what, @workers) = @_;
	ok(defined poll_until($node,
			"SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'jobs'", 't'),
		"$what: the handler passed every event");
	my $ids = logged_ids(map { $logs{$_} } @workers);
	is(scalar(keys %$ids), $published, "$what: each of the $published events acked by a worker");
}

# a worker that dials in, and one the leader dials, on one handler
my $token_a = token('jobs', "label => 'a'");
like($token_a, qr/^cwt_[0-9a-f]{64}$/, 'a token is issued');
dial_in('a', $token_a);
ok(output_matches('a', qr/^connected$/m), 'the worker with a token is accepted');
my ($b, $b_port, $b_log) = start_worker('b');
$logs{b} = $b_log;
$node->safe_psql('postgres',
	"SELECT cluster.register_worker('jobs', 'ws://127.0.0.1:$b_port/')");
ok(defined poll_until($node,
		"SELECT string_agg(dialed_in::text || ':' || connected::text || ':' || (address IS NOT NULL)::text, ',' ORDER BY dialed_in) "
		  . "FROM cluster.workers WHERE handler = 'jobs'", 'false:true:true,true:true:true'),
	'cluster.workers shows both, connected, the dialed-in one with its address');
publish(200);
all_acked('a worker dialed in and one dialled', 'a', 'b');
my %key_worker;
my $ordered = 1;
for my $name ('a', 'b')
{
	my %last;
	next unless -e $logs{$name};
	for my $line (split /\n/, slurp_file($logs{$name}))
	{
		my ($id, $key) = split / /, $line;
		$ordered = 0 if defined $last{$key} && $id < $last{$key};
		$last{$key} = $id;
		$key_worker{$key}{$name} = 1;
	}
}
ok($ordered, 'per-key order held in both');
is(scalar(grep { keys %{ $key_worker{$_} } > 1 } keys %key_worker), 0, 'each key went to one worker');
is(scalar(grep { $key_worker{$_}{a} } keys %key_worker) > 0
	  && scalar(grep { $key_worker{$_}{b} } keys %key_worker) > 0, 1,
	'both kinds of workers got keys');

# refusals: HTTP 401 and nothing else
dial_in('wrong', 'cwt_' . ('0' x 64));
ok(output_matches('wrong', qr/refused: HTTP 401/), 'a wrong token is refused with 401');
dial_in('other', token('other'));
ok(output_matches('other', qr/^connected$/m), "another handler's token is accepted");
my $expiring = token('jobs', "expires_in => '1 s'");
ok(defined poll_until($node,
		"SELECT bool_and(NOT valid) FROM cluster.worker_tokens WHERE expires_at IS NOT NULL", 't'),
	'the expiring token expired');
dial_in('expired', $expiring);
ok(output_matches('expired', qr/refused: HTTP 401/), 'an expired token is refused with 401');
unlike(slurp_file($outs{$_}), qr/^connected$/m, "the $_ worker never got a connection")
  for ('wrong', 'expired');

# raw requests: no token, a 100 kB one (never hashed), plain HTTP
sub raw_status
{
	my ($headers) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => $listen, Timeout => 10) or die "connect: $!";
	print $s "GET / HTTP/1.1\r\nHost: $listen\r\n$headers\r\n";
	my $line = <$s> // '';
	close $s;
	return $line =~ m{^HTTP/1\.1 (\d+)} ? $1 : "none ($line)";
}
my $upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
  . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
is(raw_status($upgrade), '401', 'an upgrade without a token: 401');
my $huge = raw_status($upgrade . "Authorization: Bearer " . ('x' x 100_000) . "\r\n");
isnt($huge, '101', "an upgrade with a 100 kB token is not accepted ($huge)");
is(raw_status(''), '400', 'a plain HTTP request: 400');

# revoking closes the connection; the worker is refused from then on
my $a_id = $node->safe_psql('postgres', "SELECT id FROM cluster.worker_tokens WHERE label = 'a'");
$node->safe_psql('postgres', "SELECT cluster.revoke_worker_token('$a_id')");
ok(output_matches('a', qr/closed: 1001 .*not valid.*\n(.*\n)*refused: HTTP 401/),
	'a revoked token: its connection is closed, and it is refused');
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.workers WHERE handler = 'jobs' AND dialed_in", '0'),
	'it is gone from cluster.workers');
publish(50);
all_acked('after the revocation', 'a', 'b');

# a worker that dialed in and breaks the protocol is closed like a dialled one
my $bad_token = token('jobs', "label => 'bad'");
dial_in('badjson', $bad_token, '--bad-json');
ok(output_matches('badjson', qr/^connected$/m), 'a hostile worker dials in');
publish(50);
ok(output_matches('badjson', qr/closed: 1007 /), 'its invalid JSON closes the connection with 1007');
my $bad_id = $node->safe_psql('postgres', "SELECT id FROM cluster.worker_tokens WHERE label = 'bad'");
$node->safe_psql('postgres', "SELECT cluster.revoke_worker_token('$bad_id')");
all_acked('after a hostile worker dialed in', 'a', 'b');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cluster.engines WHERE role = \'leader\''), '1',
	'the leader stayed');

# takeover: the new leader listens, the worker that dials in is served
my $token_c = token('jobs', "label => 'c'");
dial_in('c', $token_c);
ok(output_matches('c', qr/^connected$/m), 'a new worker dials in');
$node->safe_psql('postgres', "SELECT cluster.unregister_worker(id) FROM cluster.worker");
my ($pid, $fence) = leader($node);
my $offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->wait_for_log(qr/cluster engine is now leader of coordinator "default"/, $offset);
my $led = time;
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.workers WHERE handler = 'jobs' AND dialed_in AND connected", '1'),
	'the worker dialed in to the new leader');
my $took = time - $led;
note(sprintf('the worker that dials in was connected %.2f s after the new leader led', $took));
cmp_ok($took, '<', 3, 'within a few seconds of the new leader leading');
my ($new_pid, $new_fence) = leader($node);
cmp_ok($new_fence, '>', $fence, 'the new leader has a higher fence');
publish(100);
all_acked('after the takeover', 'a', 'b', 'c');

# pause is pause: a worker that dialed in stays connected while its
# handler is paused, is shown so, gets nothing, and is served again at
# resume on the same connection (no refusal, no reconnect)
my $token_p = token('other', "label => 'p'");
dial_in('p', $token_p);
ok(output_matches('p', qr/^connected$/m), 'a worker of "other" dials in');
my $p_id = "(SELECT id FROM cluster.worker_tokens WHERE label = 'p')";
ok(defined poll_until($node, "SELECT connected FROM cluster.workers WHERE id = $p_id", 't'),
	'it is connected');
$node->safe_psql('postgres', "SELECT cluster.pause_handler('other')");
$node->safe_psql('postgres', "SELECT count(cluster.publish('other', jsonb_build_object('n', i))) FROM generate_series(1, 5) i");
ok(defined poll_until($node, q{
		SELECT h.waiting_for || ' ' || h.lag_events || ' ' || w.connected || ' ' || w.handler_paused
		  FROM cluster.handlers h JOIN cluster.workers w ON w.handler = h.name
		 WHERE h.name = 'other' AND w.id = } . $p_id, 'paused 5 true true'),
	'paused: the worker stays connected and shown as paused; the events wait');
is(-e $logs{p} ? slurp_file($logs{p}) : '', '', 'it got nothing while paused');
$node->safe_psql('postgres', "SELECT cluster.resume_handler('other')");
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'other'", '0'),
	'resumed: the events go to it');
my $p_out = slurp_file($outs{p});
is(scalar(() = $p_out =~ /^connected$/mg), 1, 'on the connection it had all along');
unlike($p_out, qr/refused|closed/, 'it was never refused nor closed');
$procs{p}->kill_kill;

# with a certificate the leader serves wss:// only, at the next reload
my $tls = test_certificate('leader');
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"cluster.listen_cert_file = '$tls/leader.pem'\ncluster.listen_key_file = '$tls/leader.key'\n");
$node->reload;
$node->wait_for_log(qr/cluster leader listens at "\Q$listen\E" for workers that dial in \(TLS\)/,
	$offset);
pass('after a reload with a certificate the leader listens with TLS');
$procs{c}->kill_kill;
my $token_d = token('jobs', "label => 'd'");
$procs{d} = IPC::Run::start(
	[ 'node', 'test/workers/flowcore-worker.js', 0, "$PostgreSQL::Test::Utils::tmp_check/worker_d.log",
	  '--connect', "wss://$listen/", '--token', $token_d, '--ca', "$tls/ca.pem" ],
	'>', "$PostgreSQL::Test::Utils::tmp_check/worker_d.out", '2>&1');
$logs{d} = "$PostgreSQL::Test::Utils::tmp_check/worker_d.log";
$outs{d} = "$PostgreSQL::Test::Utils::tmp_check/worker_d.out";
ok(output_matches('d', qr/^connected$/m), 'a worker dials in over wss:// with the CA');
dial_in('plain', $token_d);
publish(100);
all_acked('over TLS', 'a', 'b', 'c', 'd', 'plain');
unlike(slurp_file($outs{plain}), qr/^connected$/m, 'a ws:// connection to the TLS port gets nowhere');

$_->kill_kill for values %procs;
$b->kill_kill;
$node->stop;
done_testing();
