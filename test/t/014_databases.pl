# Every database where the extension is created gets its engines: the
# launcher (connected to no database) keeps a scheduler in each.  Views
# show only their own database; a database without the extension costs no
# running process; CREATE and DROP EXTENSION later are followed;
# cluster.database restricts the databases, and one it names that doesn't
# exist is skipped quietly.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('databases', conf => "cluster.database = ''\ncluster.poll_interval = '1s'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE a; CREATE DATABASE b; CREATE DATABASE c');

sub schedulers_in
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('cluster scheduler', 'cluster engine') AND datname = '$db'");
}

for my $db ('a', 'b')
{
	$node->safe_psql($db, q{
		CREATE EXTENSION cluster;
		CREATE TABLE seen (n int);
		CREATE FUNCTION note(batch jsonb) RETURNS void LANGUAGE sql AS
			$$ INSERT INTO seen SELECT (e -> 'payload' ->> 'n')::int FROM jsonb_array_elements(batch) e $$;
		SELECT cluster.create_pump('orders');
		SELECT cluster.create_handler('orders', 'orders', 'note(jsonb)');
	});
	ok(defined poll_until_in($node, $db, "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
		"database $db: a leader");
}
for my $db ('a', 'b')
{
	$node->safe_psql($db, "SELECT count(cluster.publish('orders', jsonb_build_object('n', i))) FROM generate_series(1, 20) i");
	ok(defined poll_until_in($node, $db, 'SELECT count(*) FROM seen', '20'), "database $db: its events are handled");
	is($node->safe_psql($db, "SELECT count(*) FROM cluster.engines"), '2',
		"database $db: cluster.engines shows its own two engines only");
	is($node->safe_psql($db, "SELECT string_agg(name, ',') FROM cluster.handlers WHERE in_flight = 0"), 'orders',
		"database $db: cluster.handlers shows its own handler");
}
my $a_leader = $node->safe_psql('a', "SELECT pid || ' ' || fence FROM cluster.engines WHERE role = 'leader'");

ok(defined poll_until_in($node, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('cluster scheduler', 'cluster engine') AND datname IN ('c', 'postgres')", '0'),
	'databases without the extension have no scheduler or engine running');
unlike(slurp_file($node->logfile), qr/FATAL/, 'and nothing failed');

# created later: followed at commit
$node->safe_psql('c', 'CREATE EXTENSION cluster');
ok(defined poll_until_in($node, 'c', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'CREATE EXTENSION in a third database: it gets a leader');

# dropped: its engines and scheduler go, the others stay
$node->safe_psql('b', 'DROP EXTENSION cluster');
ok(defined poll_until_in($node, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('cluster scheduler', 'cluster engine') AND datname = 'b'", '0'),
	'DROP EXTENSION: that database\'s scheduler and engines stop');
$node->safe_psql('postgres', 'DROP DATABASE b');
pass('and the database can be dropped');

# DROP DATABASE by a role that doesn't own it: refused, and its engines stay
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN CREATEDB');
my ($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; DROP DATABASE a');
like($err, qr/must be owner of database a/, 'mallory: DROP DATABASE a is refused');
is($node->safe_psql('a', "SELECT pid || ' ' || fence FROM cluster.engines WHERE role = 'leader'"), $a_leader,
	'database a: its leader did not make way for it');

# DROP DATABASE of a database whose engines run: they make way, no FORCE needed
$node->safe_psql('postgres', 'CREATE DATABASE d');
$node->safe_psql('d', 'CREATE EXTENSION cluster');
ok(defined poll_until_in($node, 'd', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'), 'database d: a leader');
$node->safe_psql('postgres', 'DROP DATABASE d');
pass('DROP DATABASE of a database with running engines works');
is(schedulers_in('d'), '0', 'and nothing of ours is left there');

# restricted: a database cluster.database names that doesn't exist is skipped;
# names are taken as written (no case folding)
$node->safe_psql('postgres', 'CREATE DATABASE "Mixed"');
$node->safe_psql('Mixed', 'CREATE EXTENSION cluster');
ok(defined poll_until_in($node, 'Mixed', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'database "Mixed": a leader');
$node->safe_psql('postgres', "ALTER SYSTEM SET cluster.database = 'a, nosuchdb, Mixed'");
$node->reload;
ok(defined poll_until_in($node, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('cluster scheduler', 'cluster engine') AND datname = 'c'", '0'),
	'cluster.database = \'a, nosuchdb, Mixed\': the engines of c stop');
is($node->safe_psql('a', "SELECT pid || ' ' || fence FROM cluster.engines WHERE role = 'leader'"), $a_leader,
	'database a: the same engine leads with the same fence throughout');
$node->safe_psql('a', "SELECT cluster.publish('orders', '{\"n\": 21}')");
ok(defined poll_until_in($node, 'a', 'SELECT count(*) FROM seen', '21'), 'database a: events still flow');
is($node->safe_psql('Mixed', "SELECT count(*) FROM cluster.engines WHERE role = 'leader'"), '1',
	'database "Mixed", named as written, keeps its leader');
unlike(slurp_file($node->logfile), qr/FATAL:  (?!terminating background worker)|database "nosuchdb" does not exist/,
	'the missing database costs no error (the only FATALs are the workers stopped on purpose)');

$node->stop;
done_testing();
