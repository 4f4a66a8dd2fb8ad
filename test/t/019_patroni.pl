# Failover on the HA stack people run: Debian's patroni and etcd manage a
# primary and a synchronous replica; a worker is connected and events
# flow; the primary's host (Patroni and postmaster) dies mid-stream;
# Patroni promotes the replica, whose engines lead with a higher fence and
# dial the same worker, and every committed event is handled: none lost,
# duplicates within what was in flight or acked since the last commit that
# reached the replica.  Prints the time from the kill to the new primary's
# leader and to the worker's connection to it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use ClusterTest;

for my $bin ('/usr/bin/patroni', '/usr/bin/etcd')
{
	plan skip_all => "$bin is not installed (make setup installs it)" unless -x $bin;
}
my $base = $PostgreSQL::Test::Utils::tmp_check . '/patroni';
mkdir $base;
my %port = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(etcd peer api1 api2 pg1 pg2);
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $user = getpwuid($<);
my @procs;
# Patroni first, then the servers it started: a killed Patroni leaves its
# postmaster running, holding its port until it finds its data directory
# gone, and the next test's server could not bind it
END
{
	$_->kill_kill for grep { $_->pumpable } @procs;
	for my $n (1, 2)
	{
		system("pg_ctl -D '$base/n$n' -m immediate -w stop >/dev/null 2>&1")
		  if -e "$base/n$n/postmaster.pid";
	}
}

push @procs, IPC::Run::start(
	[ 'etcd', '--name', 'e1', '--data-dir', "$base/etcd",
	  '--listen-client-urls', "http://127.0.0.1:$port{etcd}",
	  '--advertise-client-urls', "http://127.0.0.1:$port{etcd}",
	  '--listen-peer-urls', "http://127.0.0.1:$port{peer}",
	  '--initial-advertise-peer-urls', "http://127.0.0.1:$port{peer}",
	  '--initial-cluster', "e1=http://127.0.0.1:$port{peer}" ],
	'>', "$base/etcd.log", '2>&1');

sub patroni_config
{
	my ($n) = @_;
	my $file = "$base/n$n.yml";
	open(my $f, '>', $file) or die;
	print $f <<EOC;
scope: cluster-test
name: n$n
restapi:
  listen: 127.0.0.1:$port{"api$n"}
  connect_address: 127.0.0.1:$port{"api$n"}
etcd3:
  hosts: 127.0.0.1:$port{etcd}
bootstrap:
  dcs:
    ttl: 5
    loop_wait: 1
    retry_timeout: 2
    master_start_timeout: 0
    synchronous_mode: true
    postgresql:
      use_pg_rewind: false
      parameters:
        shared_preload_libraries: cluster
        cluster.database: postgres
        max_worker_processes: 20
        hot_standby: 'on'
        wal_level: replica
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - auth: trust
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$port{"pg$n"}
  connect_address: 127.0.0.1:$port{"pg$n"}
  data_dir: $base/n$n
  pgpass: $base/n$n.pgpass
  bin_dir: $bindir
  authentication:
    superuser:
      username: $user
    replication:
      username: $user
  parameters:
    unix_socket_directories: $base
EOC
	close $f;
	return $file;
}
sub psql_on
{
	my ($n, $sql) = @_;
	my $out = `psql -XAtq -h 127.0.0.1 -p $port{"pg$n"} -d postgres -c "$sql" 2>/dev/null`;
	chomp $out;
	return $? == 0 ? $out : undef;
}
sub poll_on
{
	my ($n, $sql, $want, $timeout) = @_;
	my $start = time;
	while (time - $start < ($timeout // 120))
	{
		my $got = psql_on($n, $sql);
		return time - $start if defined $got && $got eq $want;
		usleep(50_000);
	}
	return undef;
}

my %patroni;
for my $n (1, 2)
{
	$patroni{$n} = IPC::Run::start([ 'patroni', patroni_config($n) ], '>', "$base/patroni$n.log", '2>&1');
	push @procs, $patroni{$n};
	ok(defined poll_on($n, 'SELECT pg_is_in_recovery()', $n == 1 ? 'f' : 't'),
		$n == 1 ? 'Patroni bootstraps the primary' : 'and a replica that streams from it');
}
ok(defined poll_on(1, "SELECT sync_state FROM pg_stat_replication", 'sync'), 'the replica is synchronous');

psql_on(1, 'CREATE EXTENSION cluster');
psql_on(1, "SELECT cluster.create_pump('stream')");
psql_on(1, "SELECT cluster.create_handler('stream', 'stream', batch_size => 10)");
my ($w, $wport, $wlog) = start_worker('ha');
psql_on(1, "SELECT cluster.register_worker('stream', 'ws://127.0.0.1:$wport/')");
ok(defined poll_on(1, 'SELECT connected FROM cluster.workers', 't'), "the primary's leader dials the worker");
ok(defined poll_on(2, "SELECT string_agg(role, ',') FROM cluster.engines", 'idle,idle'),
	"the replica's engines are idle");
my $fence = psql_on(1, "SELECT fence FROM cluster.engines WHERE role = 'leader'");

sub publish
{
	my ($n, $count) = @_;
	psql_on($n, "SELECT count(cluster.publish('stream', jsonb_build_object('i', i), key => 'k' || (i % 7))) "
		  . "FROM generate_series(1, $count) i");
}
publish(1, 200);
ok(defined poll_on(1, "SELECT lag_events FROM cluster.handlers WHERE name = 'stream'", '0'), 'events flow');

# mid-stream: more events, then the primary's host dies: its Patroni and
# its postmaster are killed (a Patroni left alive would restart the
# postmaster in place, holding the leader key)
publish(1, 100);
my $pid = (split /\n/, slurp_file("$base/n1/postmaster.pid"))[0];
my $killed = time;
$patroni{1}->signal('KILL');
kill 'KILL', $pid;
ok(defined poll_on(2, "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1', 60),
	'Patroni promotes the replica and its engines lead');
my $led = time - $killed;
ok(defined poll_on(2, 'SELECT connected FROM cluster.workers', 't', 60),
	"the new primary's leader dials the same worker");
my $dialled = time - $killed;
note(sprintf('kill -> leader on the new primary %.2f s, -> worker connected %.2f s', $led, $dialled));
cmp_ok(psql_on(2, "SELECT fence FROM cluster.engines WHERE role = 'leader'"), '>', $fence,
	'with a higher fence');
publish(2, 100);
ok(defined poll_on(2, "SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'stream'", 't'),
	'the new primary passes every event');

my $committed = psql_on(2, "SELECT string_agg(id::text, ',') FROM cluster.events WHERE stream = 'stream'");
my $ids = logged_ids($wlog);
my @missing = grep { !$ids->{$_} } split /,/, $committed;
is(scalar(@missing), 0, 'every committed event was handled: none lost');
my $dups = grep { $_ > 1 } values %$ids;
# the engines commit rounds asynchronously (synchronous_commit = off): what
# was acked since the last commit that reached the replica is handled
# again, here at most the burst published just before the kill, besides
# what was in flight (capacity 4 x batch 10)
cmp_ok($dups, '<=', 100 + 4 * 10,
	"duplicates ($dups) within what was in flight or acked since the last replicated commit");

done_testing();
