# A listening leader is reachable by anyone on the network, token or not:
# what such a client costs is bounded.  With the engines' descriptor limit
# lowered to 200, 300 connections held open without a word are hung up
# beyond the leader's reserve; the leader keeps its lease, the server
# keeps room for its files, and nothing is logged in a loop.  Requests
# with oversized headers get at most a burst of log lines and a count.
# Once the idle connections go, a worker with a token is served.
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
my $node = cluster_node('limits', conf => "cluster.worker_listen = '$listen'\n");
$node->start;

# the engines start after CREATE EXTENSION and inherit the postmaster's limit
my $postmaster = $node->{_pid};
system('prlimit', "--pid=$postmaster", '--nofile=200:200') == 0 or BAIL_OUT('prlimit failed');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION cluster;
	SELECT cluster.create_pump('jobs');
	SELECT cluster.create_handler('jobs', 'jobs', batch_size => 10);
	SELECT cluster.alter_coordinator('default', listen => '$listen');
});
$node->wait_for_log(qr/cluster leader listens at "\Q$listen\E"/);
my ($pid, $fence) = leader($node);
my $limit = (grep { /^Max open files/ } split /\n/, slurp_file("/proc/$pid/limits"))[0];
like($limit, qr/^Max open files\s+200\s+200\b/, 'the leader runs with a limit of 200 descriptors');

sub leader_fds { my @fds = glob("/proc/$pid/fd/*"); return scalar @fds; }
sub lws_lines
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @lines = ($log =~ /^.*libwebsockets:.*$/mg);
	return scalar @lines;
}

# 300 connections that never say a word
my $offset = -s $node->logfile;
my @idle;
for (1 .. 300)
{
	my $s = IO::Socket::INET->new(PeerAddr => $listen, Timeout => 5);
	push @idle, $s if $s;
}
ok(scalar(@idle) > 0, scalar(@idle) . ' connections opened');
my $renewed = $node->safe_psql('postgres', "SELECT last_renewal FROM cluster.engines WHERE pid = $pid");
ok(defined poll_until($node, "SELECT last_renewal > '$renewed' FROM cluster.engines WHERE pid = $pid", 't', 30),
	'the leader renews its lease meanwhile');
my $fds = leader_fds();
cmp_ok($fds, '<=', 200 - 32, "the leader holds $fds descriptors: room is left for the server's files");
my $lines = lws_lines($offset);
cmp_ok($lines, '<=', 21, "libwebsockets logged $lines lines, no loop");
unlike(slurp_file($node->logfile, $offset), qr/out of file descriptors/, 'the server never ran out of descriptors');
is(join(' ', leader($node)), "$pid $fence", 'the same leader, with the same fence');
close $_ for @idle;

# oversized headers, one request after another: a burst of lines and a count
$offset = -s $node->logfile;
for (1 .. 60)
{
	my $s = IO::Socket::INET->new(PeerAddr => $listen, Timeout => 5) or next;
	print $s "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " . ('y' x 9000) . "\r\n\r\n";
	my $answer = <$s>;
	close $s;
}
$lines = lws_lines($offset);
cmp_ok($lines, '<=', 21, "60 requests with oversized headers: $lines lines logged");

# the idle connections gone, a worker with a token is served
my $token = $node->safe_psql('postgres', "SELECT cluster.issue_worker_token('jobs')");
my $out = "$PostgreSQL::Test::Utils::tmp_check/worker_limits.out";
my $w = IPC::Run::start(
	[ 'node', 'test/workers/flowcore-worker.js', 0, '-', '--connect', "ws://$listen/", '--token', $token ],
	'>', $out, '2>&1');
$node->safe_psql('postgres', "SELECT count(cluster.publish('jobs', jsonb_build_object('n', i))) FROM generate_series(1, 20) i");
ok(defined poll_until($node, "SELECT processed FROM cluster.handlers WHERE name = 'jobs'", '20'),
	'a worker that dials in with its token gets every event')
  or diag(slurp_file($out));

$w->kill_kill;
$node->stop;
done_testing();
