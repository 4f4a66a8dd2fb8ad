# An engine that exits with an error is restarted by its scheduler after
# 1 s, doubling; once the error is gone it leads again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('backoff');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	SELECT cluster.drop_coordinator('default');
});

# Make every attempt to lead fail: the engine errors out and exits.
my $original = $node->safe_psql('postgres',
	"SELECT pg_get_functiondef('cluster._engine_take(int, text)'::regprocedure)");
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION cluster._engine_take(coordinator_id int, holder text)
	RETURNS TABLE (fence bigint, ttl_ms int) LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'injected failure';
	END $$;
});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"SELECT cluster.create_coordinator('flaky', standby_engines => 0)");

for my $delay (1000, 2000, 4000)
{
	$node->wait_for_log(
		qr/cluster engine 0 of coordinator "flaky" exited; restarting it in $delay ms/,
		$log_offset);
	pass("restart scheduled after $delay ms");
	$log_offset = -s $node->logfile;
}
like(slurp_file($node->logfile), qr/ERROR:  injected failure/,
	'the engine logged its error');
cmp_ok($node->safe_psql('postgres',
		"SELECT restarts FROM cluster.engines WHERE coordinator = 'flaky'"),
	'>=', 3, 'cluster.engines counts the restarts');

# Repair: the next restart leads.
$node->safe_psql('postgres', $original);
ok(defined poll_until($node,
		"SELECT role FROM cluster.engines WHERE coordinator = 'flaky'", 'leader', 30),
	'after the repair the restarted engine leads');

$node->stop;
done_testing();
