# pg_dump and pg_restore (by a superuser) of a database with the extension,
# into another database of the same server: pumps, handlers, cursors,
# state, dead letters and grants carry over; nothing already handled is
# handled again; the copy gets its own engines with a fence above the
# dumped one; worker registrations (live connections with secrets) are not
# part of the dump.  The source database goes on unaffected.
#
# Then the same by the databases' owner, who is not a superuser: its dump
# holds no worker secret, its restore into a database where a superuser
# created the extension (and whose engines already lead) keeps the fences
# growing, and the privileges it needs let no one else in.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('dump', conf => "cluster.database = ''\ncluster.poll_interval = '1s'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src; CREATE DATABASE dst');

my $app = q{
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
	SELECT cluster.register_worker('h', 'ws://127.0.0.1:1/', secret => 's3cret');
	INSERT INTO outbox (payload) SELECT jsonb_build_object('n', i, 'fail', i = 3) FROM generate_series(1, 10) i;
};
$node->safe_psql('src', "CREATE EXTENSION cluster; $app");
ok(defined poll_until_in($node, 'src', "SELECT processed || '/' || dead_letters FROM cluster.handlers", '9/1'),
	'source: nine handled, one dead-lettered');
my $fence = $node->safe_psql('src', "SELECT max(fence) FROM cluster.leases");
my $state = $node->safe_psql('src', "SELECT cluster.handler_state('h')");

my $dump = "$PostgreSQL::Test::Utils::tmp_check/src.dump";
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src')], 'pg_dump of the source');
$node->command_ok(['pg_restore', '-d', $node->connstr('dst'), $dump], 'pg_restore into another database');

# the copy "to" of "from", restored: its own leader above the dumped fence,
# the handler's progress and state as they were, nothing handled again
sub restored_as_dumped
{
	my ($from, $to) = @_;
	my $progress = "SELECT processed || '/' || dead_letters || ' ' || cursor FROM cluster.handlers";

	ok(defined poll_until_in($node, $to, "SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $fence", '1'),
		"$to has its own leader, with a fence above the dumped $fence");
	is($node->safe_psql($to, $progress), $node->safe_psql($from, $progress),
		"$to: counters, dead letters and cursor carried over");
	is($node->safe_psql($to, "SELECT cluster.handler_state('h')"), $state, "$to: the state carried over");
	is($node->safe_psql($to, "SELECT count(*) FROM seen"), '9', "$to: nothing was handled again");
}
restored_as_dumped('src', 'dst');

$node->safe_psql('dst', "INSERT INTO outbox (payload) SELECT jsonb_build_object('n', i) FROM generate_series(11, 15) i");
ok(defined poll_until_in($node, 'dst', "SELECT count(*) FROM seen", '14'), 'new events in the copy are handled there');
is($node->safe_psql('src', "SELECT count(*) FROM seen"), '9', 'and not in the source');
$node->safe_psql('dst', "SELECT cluster.replay_dead_letters('h')");
ok(defined poll_until_in($node, 'dst', "SELECT dead_letters FROM cluster.handlers", '1'),
	'the restored dead letter replays (and fails again, as it must)');
is($node->safe_psql('dst', "SELECT count(*) FROM cluster.workers"), '0',
	'worker registrations are not restored: workers register with the copy');

$node->safe_psql('src', "INSERT INTO outbox (payload) VALUES ('{\"n\": 99}')");
ok(defined poll_until_in($node, 'src', "SELECT count(*) FROM seen WHERE n = 99", '1'), 'the source goes on');

# --- by the owner of the databases, who is not a superuser
$node->safe_psql('postgres', q{
	CREATE ROLE dbo LOGIN IN ROLE cluster_admin;
	CREATE ROLE carol LOGIN IN ROLE cluster_admin;
	CREATE ROLE nosy LOGIN;
	CREATE DATABASE app OWNER dbo;
	CREATE DATABASE app2 OWNER dbo;
});
$node->safe_psql('app', 'CREATE EXTENSION cluster');
$node->safe_psql('app', "SET ROLE dbo; $app SELECT cluster.grant_worker('h', 'carol')");
ok(defined poll_until_in($node, 'app', "SELECT processed || '/' || dead_letters FROM cluster.handlers", '9/1'),
	'app: nine handled, one dead-lettered');
# a takeover, so that the dumped fence is above the one app2's engines start with
my $old = $node->safe_psql('app', "SELECT fence FROM cluster.engines WHERE role = 'leader'");
$node->safe_psql('app', "SELECT pg_terminate_backend(pid) FROM cluster.engines WHERE role = 'leader'");
ok(defined poll_until_in($node, 'app', "SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND fence > $old", '1'),
	'app: a new leader after a takeover');
$fence = $node->safe_psql('app', "SELECT max(fence) FROM cluster.leases");
$state = $node->safe_psql('app', "SELECT cluster.handler_state('h')");

my $err;
my $as = sub { my ($role, $db) = @_; $node->connstr($db) . " user=$role" };
$node->command_fails_like(['pg_dump', '-d', $as->('nosy', 'app'), '-f', '/dev/null'],
	qr/permission denied/, 'a role that does not own the database cannot dump the extension\'s tables');
my $plain = "$PostgreSQL::Test::Utils::tmp_check/app.sql";
$node->command_ok(['pg_dump', '--enable-row-security', '--inserts', '-f', $plain, '-d', $as->('dbo', 'app')],
	'pg_dump by the database owner');
my $text = slurp_file($plain);
ok($text =~ /INSERT INTO cluster\.handler / && $text =~ /INSERT INTO cluster\.lease /,
	'the dump holds the handlers and leases');
ok($text !~ /s3cret/ && $text !~ /INSERT INTO cluster\.worker /, 'and no worker registration or secret');

$dump = "$PostgreSQL::Test::Utils::tmp_check/app.dump";
$node->command_ok(['pg_dump', '--enable-row-security', '--inserts', '-Fc', '-f', $dump, '-d', $as->('dbo', 'app')],
	'pg_dump -Fc by the database owner');
$node->safe_psql('app2', 'CREATE EXTENSION cluster');
ok(defined poll_until_in($node, 'app2', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'app2 leads before the restore');
# a non-superuser can neither create the schema nor comment on the extension
my $list = "$PostgreSQL::Test::Utils::tmp_check/app.list";
my ($toc) = run_command(['pg_restore', '-l', $dump]);
open(my $fh, '>', $list) or die;
print $fh grep { !/ SCHEMA - cluster | COMMENT - EXTENSION cluster / } split /^/, $toc;
close $fh;
$node->command_ok(['pg_restore', '--enable-row-security', '--exit-on-error', '-L', $list, '-d', $as->('dbo', 'app2'), $dump],
	'pg_restore by the database owner, without an error');
restored_as_dumped('app', 'app2');
is($node->safe_psql('app2', "SELECT grantee FROM cluster.grants"), 'carol', 'the consent carried over');
$node->safe_psql('app2', "INSERT INTO outbox (payload) VALUES ('{\"n\": 11}')");
ok(defined poll_until_in($node, 'app2', "SELECT count(*) FROM seen", '10'), 'new events in app2 are handled');

# what the owner's privileges could be used for, and aren't
$node->safe_psql('app2', "SET ROLE carol; SELECT cluster.create_pump('carols', retention => '1 day')");
$node->psql('app2', "SET ROLE dbo; INSERT INTO cluster.pump_grant (pump_id, grantee, granted_by)
	SELECT id, 'nosy', 'carol' FROM cluster.pump WHERE name = 'carols'", stderr => \$err);
like($err, qr/permission denied to grant on cluster pump "carols"/,
	'the database owner cannot forge consent for a pump it does not own');
$node->psql('app2', "SET ROLE carol; INSERT INTO cluster.lease VALUES ('coordinator/default', 'x', 1e18, now(), now())",
	stderr => \$err);
like($err, qr/permission denied for table lease/, 'a cluster_admin who does not own the database cannot write leases');
$node->psql('app2', "SET ROLE dbo; INSERT INTO cluster.coordinator (name, lease_ttl, standby_engines)
	VALUES ('greedy', '1 s', 1000)", stderr => \$err);
like($err, qr/coordinator_standby_engines/, 'a coordinator written directly keeps create_coordinator\'s limits');
is($node->safe_psql('app2', "SELECT count(*) FROM cluster.dead_letters"), '1', 'the owner sees its dead letters');
is($node->safe_psql('app2', "SET ROLE carol; SELECT count(*) FROM cluster.dead_letters"), '0',
	'another cluster_admin does not');

$node->stop;
done_testing();
