# Helpers shared by the TAP tests: a node with the extension loaded, and
# polling for a condition (never a fixed sleep).
package ClusterTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Exporter 'import';
use IPC::Run;

our @EXPORT = qw(cluster_node poll_until poll_until_in engines leader start_worker logged_ids test_certificate);

# A node with the extension preloaded, its engines allowed in "postgres"
# (the test creates the extension).
sub cluster_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', <<'EOC');
shared_preload_libraries = 'cluster'
max_worker_processes = 20
cluster.database = 'postgres'
EOC
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	return $node;
}

# Poll a query in "postgres" until it returns the expected value; returns
# the seconds it took, or undef on timeout.
sub poll_until
{
	my ($node, $query, $expected, $timeout) = @_;
	return poll_until_in($node, 'postgres', $query, $expected, $timeout);
}

# The same, in another database.
sub poll_until_in
{
	my ($node, $db, $query, $expected, $timeout) = @_;
	$timeout //= $PostgreSQL::Test::Utils::timeout_default;
	my $start = time;
	while (time - $start < $timeout)
	{
		my $got = $node->safe_psql($db, $query);
		return time - $start if $got eq $expected;
		usleep(20_000);
	}
	return undef;
}

# Rows of cluster.engines for a coordinator, as "pid|role|fence" strings.
sub engines
{
	my ($node, $coordinator) = @_;
	$coordinator //= 'default';
	return $node->safe_psql('postgres',
		"SELECT pid || '|' || role || '|' || coalesce(fence, 0) FROM cluster.engines "
		  . "WHERE coordinator = '$coordinator' ORDER BY ordinal");
}

# (pid, fence) of the leader engine of a coordinator, or () when none.
sub leader
{
	my ($node, $coordinator) = @_;
	$coordinator //= 'default';
	my $row = $node->safe_psql('postgres',
		"SELECT pid || ' ' || fence FROM cluster.engines "
		  . "WHERE coordinator = '$coordinator' AND role = 'leader'");
	return () if $row eq '' || $row =~ /\n/;
	return split / /, $row;
}

# the workers die with the test
my @started;
END { $_->kill_kill for grep { $_->pumpable } @started; }

# Start a test worker (test/workers/flowcore-worker.js) on a free port;
# returns (IPC::Run handle, port, log file).
sub start_worker
{
	my ($name, @opts) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log = "$PostgreSQL::Test::Utils::tmp_check/worker_$name.log";
	my $out = "$PostgreSQL::Test::Utils::tmp_check/worker_$name.out";
	unlink $log;
	my $h = IPC::Run::start(
		[ 'node', 'test/workers/flowcore-worker.js', $port, $log, @opts ],
		'>', $out, '2>&1');
	# listening: poll its output
	my $start = time;
	while (time - $start < $PostgreSQL::Test::Utils::timeout_default)
	{
		last if -s $out && slurp_file($out) =~ /listening/;
		usleep(20_000);
	}
	push @started, $h;
	return ($h, $port, $log);
}


# Event ids a worker logged, as a hash id => times.
sub logged_ids
{
	my %ids;
	for my $log (@_)
	{
		next unless -e $log;
		$ids{ (split / /)[0] }++ for split /\n/, slurp_file($log);
	}
	return \%ids;
}

# A CA and a certificate it signed for 127.0.0.1, in tmp_check/tls:
# returns the directory, holding ca.pem and NAME.pem / NAME.key.
sub test_certificate
{
	my ($name) = @_;
	my $tls = "$PostgreSQL::Test::Utils::tmp_check/tls";
	mkdir $tls;
	PostgreSQL::Test::Utils::system_or_bail('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
		'-days', '2', '-subj', '/CN=cluster test CA', '-keyout', "$tls/ca.key", '-out', "$tls/ca.pem",
		'-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
	PostgreSQL::Test::Utils::system_or_bail('openssl', 'req', '-newkey', 'rsa:2048', '-nodes',
		'-subj', '/CN=127.0.0.1', '-keyout', "$tls/$name.key", '-out', "$tls/$name.csr");
	PostgreSQL::Test::Utils::append_to_file("$tls/ext.cnf", "subjectAltName=IP:127.0.0.1\n");
	PostgreSQL::Test::Utils::system_or_bail('openssl', 'x509', '-req', '-in', "$tls/$name.csr",
		'-CA', "$tls/ca.pem", '-CAkey', "$tls/ca.key", '-CAcreateserial', '-days', '2',
		'-out', "$tls/$name.pem", '-extfile', "$tls/ext.cnf");
	return $tls;
}

1;
