# Fences never go down: across a clean restart and a crash (immediate stop),
# for the engines' leases and for applications' leases.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('fences');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cluster');
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'a leader');
$node->safe_psql('postgres', q{
	SELECT cluster.acquire_lease('app', 'a', '1 hour');
	SELECT cluster.release_lease('app', 'a');
	SELECT cluster.acquire_lease('app', 'b', '1 hour');
});

my $before = $node->safe_psql('postgres',
	"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'");
for my $mode ('fast', 'immediate')
{
	$node->stop($mode);
	$node->start;
	ok(defined poll_until($node,
			"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $before",
			'1'),
		"after a $mode stop the new leader's fence is above $before");
	my $after = $node->safe_psql('postgres',
		"SELECT fence FROM cluster.leases WHERE key = 'coordinator/default'");
	cmp_ok($after, '>', $before, "the stored fence grew across the $mode stop");
	$before = $after;
	is($node->safe_psql('postgres',
			"SELECT cluster.acquire_lease('app', 'c-$mode', '1 hour') IS NULL"),
		't', "the application's lease survived the $mode stop");
}
is($node->safe_psql('postgres', "SELECT fence FROM cluster.leases WHERE key = 'app'"),
	'2', "the application's fence is unchanged");

$node->stop;
done_testing();
