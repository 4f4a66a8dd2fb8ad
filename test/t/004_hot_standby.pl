# On a hot standby server the engines are idle; after promotion one leads
# with a fence higher than any the primary used, also those the standby
# never received (the new timeline lifts fences to (timeline - 1) << 32).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $primary = cluster_node('primary', init => { allows_streaming => 1 });
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION cluster');
ok(defined poll_until($primary,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'the primary has a leader');
# Terminate the primary's leader twice: each time another leads with fence + 1.
sub replace_leader_twice
{
	my ($what) = @_;
	for (1 .. 2)
	{
		my ($pid, $fence) = leader($primary);
		$primary->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
		ok(defined poll_until($primary,
				"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence = $fence + 1",
				'1'),
			"leader replaced on the primary$what");
	}
}

# a few changes of leader, so that the fence is not 1
replace_leader_twice('');
my $primary_fence = $primary->safe_psql('postgres',
	"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'");

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

ok(defined poll_until($standby,
		"SELECT string_agg(role, ',') FROM cluster.engines", 'idle,idle'),
	'on the hot standby both engines are idle');
is($standby->safe_psql('postgres',
		"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'"),
	$primary_fence, 'the fence replicated');

# the extension dropped and created again on the primary: the standby's
# engines go, and come back once the creation replays, though nothing on
# the standby wakes its launcher (it looks again every second)
$primary->safe_psql('postgres', 'DROP EXTENSION cluster');
$primary->wait_for_catchup($standby);
ok(defined poll_until($standby,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cluster engine'", '0'),
	'DROP EXTENSION replayed: the standby has no engine');
$primary->safe_psql('postgres', 'CREATE EXTENSION cluster');
$primary->wait_for_catchup($standby);
my $took = poll_until($standby, "SELECT string_agg(role, ',') FROM cluster.engines", 'idle,idle');
ok(defined $took, 'CREATE EXTENSION replayed: the standby\'s engines are back, idle');
note(sprintf('the standby\'s engines were back %.2f s after the creation replayed', $took // -1));
cmp_ok($took // 99, '<', 5, 'within seconds, not at the next fallback poll');
ok(defined poll_until($primary,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'the primary leads again');
$primary_fence = $primary->safe_psql('postgres',
	"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'");
$primary->wait_for_catchup($standby);

# the primary goes on alone: fences the standby never receives (as with
# asynchronous replication at a failover)
$standby->stop;
replace_leader_twice(', unreplicated');
my $lost_fence = $primary->safe_psql('postgres',
	"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'");
cmp_ok($lost_fence, '>', $primary_fence, 'the primary handed out fences the standby lacks');
$primary->stop('immediate');
$standby->start;
$standby->promote;
ok(defined poll_until($standby,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $lost_fence AND fence > (1::bigint << 32)",
		'1'),
	"after promotion one engine leads with a fence above $lost_fence: its new timeline lifts it above 2^32");
# the other engine notices the promotion at its next check (every 100 ms)
ok(defined poll_until($standby,
		"SELECT string_agg(role, ',' ORDER BY role) FROM cluster.engines", 'leader,standby'),
	'the other one stands by');

$standby->stop;
done_testing();
