# pg_dump and pg_restore (by a superuser) of a database with the extension,
# into another database of the same server: pumps, handlers, cursors,
# state, dead letters and grants carry over; nothing already handled is
# handled again; the copy gets its own engines with a fence above the
# dumped one; a restored worker registration whose heartbeat is old is not
# dialled.  The source database goes on unaffected.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('dump', conf => "cluster.database = ''\ncluster.poll_interval = '1s'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src; CREATE DATABASE dst');

$node->safe_psql('src', q{
	CREATE EXTENSION cluster;
	CREATE TABLE seen (n int);
	CREATE FUNCTION note(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT FROM jsonb_array_elements(batch) e WHERE (e -> 'payload' ->> 'fail')::boolean) THEN
			RAISE EXCEPTION 'failing on purpose';
		END IF;
		INSERT INTO seen SELECT (e -> 'payload' ->> 'n')::int FROM jsonb_array_elements(batch) e;
		RETURN (SELECT jsonb_agg(jsonb_build_object('op', 'set', 'value', true,
						'path', jsonb_build_array('seen', x -> 'payload' ->> 'n')))
				  FROM jsonb_array_elements(batch) x);
	END $$;
	CREATE TABLE outbox (id bigserial PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
						 payload jsonb NOT NULL);
	CREATE INDEX ON outbox (txid, id);
	SELECT cluster.create_pump('ob', source => 'outbox');
	SELECT cluster.create_handler('h', 'ob', 'note(jsonb)', max_attempts => 1);
	SELECT cluster.register_worker('h', 'ws://127.0.0.1:1/');
	INSERT INTO outbox (payload) SELECT jsonb_build_object('n', i, 'fail', i = 3) FROM generate_series(1, 10) i;
});
ok(defined poll_until_in($node, 'src', "SELECT processed || '/' || dead_letters FROM cluster.handlers", '9/1'),
	'source: nine handled, one dead-lettered');
my $fence = $node->safe_psql('src', "SELECT max(fence) FROM cluster.leases");
my $state = $node->safe_psql('src', "SELECT cluster.handler_state('h')");

my $dump = "$PostgreSQL::Test::Utils::tmp_check/src.dump";
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src')], 'pg_dump of the source');
$node->command_ok(['pg_restore', '-d', $node->connstr('dst'), $dump], 'pg_restore into another database');

ok(defined poll_until_in($node, 'dst', "SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $fence", '1'),
	"the copy has its own leader, with a fence above the dumped $fence");
is($node->safe_psql('dst', "SELECT processed || '/' || dead_letters || ' ' || cursor FROM cluster.handlers"),
	$node->safe_psql('src', "SELECT processed || '/' || dead_letters || ' ' || cursor FROM cluster.handlers"),
	'counters, dead letters and cursor carried over');
is($node->safe_psql('dst', "SELECT cluster.handler_state('h')"), $state, 'the state carried over');
is($node->safe_psql('dst', "SELECT count(*) FROM seen"), '9', 'nothing was handled again in the copy');

$node->safe_psql('dst', "INSERT INTO outbox (payload) SELECT jsonb_build_object('n', i) FROM generate_series(11, 15) i");
ok(defined poll_until_in($node, 'dst', "SELECT count(*) FROM seen", '14'), 'new events in the copy are handled there');
is($node->safe_psql('src', "SELECT count(*) FROM seen"), '9', 'and not in the source');
$node->safe_psql('dst', "SELECT cluster.replay_dead_letters('h')");
ok(defined poll_until_in($node, 'dst', "SELECT dead_letters FROM cluster.handlers", '1'),
	'the restored dead letter replays (and fails again, as it must)');
is($node->safe_psql('dst', "SELECT bool_or(connected) FROM cluster.workers"), 'f',
	'the restored worker registration is not shown as connected');

$node->safe_psql('src', "INSERT INTO outbox (payload) VALUES ('{\"n\": 99}')");
ok(defined poll_until_in($node, 'src', "SELECT count(*) FROM seen WHERE n = 99", '1'), 'the source goes on');
$node->stop;
done_testing();
