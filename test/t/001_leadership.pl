# Leadership: election, takeover after the leader is terminated, standbys
# started and stopped with their coordinators, a leader that can't renew
# steps down by itself, a stuck leader is replaced after its TTL.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ClusterTest;

my $node = cluster_node('leadership');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cluster');

# the default coordinator: one leader (fence 1), one standby
ok(defined poll_until($node,
		"SELECT string_agg(role, ',' ORDER BY role) FROM cluster.engines",
		'leader,standby'),
	'default coordinator has a leader and a standby');
my ($pid, $fence) = leader($node);
is($fence, 1, 'first leader has fence 1');
is($node->safe_psql('postgres',
		"SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity "
		  . "WHERE backend_type LIKE 'cluster %'"),
	'cluster engine,cluster engine,cluster launcher,cluster scheduler',
	'launcher, scheduler and engines are recognisable in pg_stat_activity');
is($node->safe_psql('postgres',
		"SELECT leader_pid || ' ' || fence FROM cluster.coordinators WHERE name = 'default'"),
	"$pid 1", 'cluster.coordinators says who leads');

# terminate the leader: the standby leads within a second with fence + 1
my $start = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $took = poll_until($node,
	"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence = 2 AND pid <> $pid",
	'1', 5);
ok(defined $took, 'a standby took over with fence 2');
my $takeover = time - $start;
cmp_ok($takeover, '<', 1.0, 'takeover within 1 second');
note(sprintf('takeover took %.1f ms', $takeover * 1000));

# the launcher restarts the terminated engine as a standby
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE coordinator = 'default' AND role = 'standby' AND restarts = 1",
		'1'),
	'terminated engine restarted as a standby');

# coordinators come and go within a second
$start = time;
$node->safe_psql('postgres',
	"SELECT cluster.create_coordinator('billing', lease_ttl => '3 s', standby_engines => 2)");
ok(defined poll_until($node,
		"SELECT string_agg(role, ',' ORDER BY role) FROM cluster.engines WHERE coordinator = 'billing'",
		'leader,standby,standby', 5),
	'new coordinator: one leader, two standbys');
cmp_ok(time - $start, '<', 1.0, 'its engines started within a second');

$start = time;
$node->safe_psql('postgres', "SELECT cluster.drop_coordinator('billing')");
ok(defined poll_until($node,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cluster engine billing'",
		'0', 5),
	'dropped coordinator: its engines stopped');
cmp_ok(time - $start, '<', 1.0, 'within a second');

# a leader whose lease is taken from under it steps down by itself
$node->safe_psql('postgres',
	"SELECT cluster.create_coordinator('solo', lease_ttl => '3 s', standby_engines => 0)");
ok(defined poll_until($node,
		"SELECT role || fence FROM cluster.engines WHERE coordinator = 'solo'", 'leader1'),
	'solo coordinator leads with fence 1');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"UPDATE cluster.lease SET holder = 'intruder', fence = fence + 1 WHERE key = 'coordinator/solo'");
$node->wait_for_log(qr/stepping down as leader of coordinator "solo"/, $log_offset);
ok(defined poll_until($node,
		"SELECT role || fence FROM cluster.engines WHERE coordinator = 'solo'", 'leader3'),
	'the engine stepped down and took the lease again with a higher fence');

# a leader stuck past its deadline (SIGSTOP) steps down when it resumes
($pid, $fence) = leader($node, 'solo');
$log_offset = -s $node->logfile;
kill 'STOP', $pid;
ok(defined poll_until($node,
		"SELECT NOT live FROM cluster.leases WHERE key = 'coordinator/solo'", 't'),
	'the stopped leader let its lease expire');
kill 'CONT', $pid;
$node->wait_for_log(qr/stepping down as leader of coordinator "solo".*\n.*lease expired/,
	$log_offset);
ok(defined poll_until($node,
		"SELECT role || fence FROM cluster.engines WHERE coordinator = 'solo'",
		'leader' . ($fence + 1)),
	'after resuming it stepped down and led again with fence + 1');

# a stuck leader with a standby: the standby terminates it after the TTL
$node->safe_psql('postgres',
	"SELECT cluster.create_coordinator('pair', lease_ttl => '2 s', standby_engines => 1)");
ok(defined poll_until($node,
		"SELECT string_agg(role, ',' ORDER BY role) FROM cluster.engines WHERE coordinator = 'pair'",
		'leader,standby'),
	'pair coordinator has a leader and a standby');
($pid, $fence) = leader($node, 'pair');
$log_offset = -s $node->logfile;
kill 'STOP', $pid;
$node->wait_for_log(qr/terminating the leader of coordinator \d+ \(pid $pid\)/, $log_offset);
kill 'CONT', $pid;
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE coordinator = 'pair' AND role = 'leader' "
		  . "AND fence = $fence + 1 AND pid <> $pid",
		'1'),
	'the standby replaced the stuck leader with fence + 1');

# SIGTERM stops an engine within a second (pg_terminate_backend above);
# SIGHUP reloads settings without a restart
$node->append_conf('postgresql.conf', "cluster.poll_interval = '5s'");
$node->reload;
ok(defined poll_until($node, 'SHOW cluster.poll_interval', '5s'), 'settings reload');
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE coordinator = 'default' AND role = 'leader'", '1'),
	'engines keep running across a reload');

$node->stop;

# loaded other than through shared_preload_libraries: a clear error
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
my ($ret, $stdout, $stderr) = $plain->psql('postgres', 'CREATE EXTENSION cluster');
isnt($ret, 0, 'CREATE EXTENSION fails without shared_preload_libraries');
like($stderr, qr/cluster must be loaded via shared_preload_libraries/, 'with a clear message');
$plain->stop;

done_testing();
