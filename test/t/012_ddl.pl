# Ordinary DDL never stops the coordinator.  While a second pump on the
# same coordinator keeps flowing: dropping an outbox table, a mapped column
# or a handler's function is refused with the pump or handler named, and
# CASCADE drops the pump or leaves the handler without a function, visibly;
# a source its owner can no longer read or reach stops that
# handler alone with last_error, and it recovers (last_error cleared) once
# fixed; roles that own pumps or handlers can't be dropped, REASSIGN OWNED
# and DROP OWNED treat them as owned objects.  The leader keeps its pid and
# fence throughout, and the status views never fail.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('ddl');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE ROLE alice LOGIN;
	GRANT cluster_admin TO alice;
	GRANT CREATE ON SCHEMA public TO alice;
	CREATE TABLE seen (pump text, n int);
	GRANT INSERT ON seen TO alice;
	CREATE FUNCTION note_steady(batch jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO seen SELECT 'steady', (e -> 'payload' ->> 'n')::int FROM jsonb_array_elements(batch) e
	$$;
	SELECT cluster.create_pump('steady');
	SELECT cluster.create_handler('steady', 'steady', 'note_steady(jsonb)');
	SET ROLE alice;
	CREATE TABLE outbox (id bigserial PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
						 payload jsonb NOT NULL, k text);
	CREATE INDEX ON outbox (txid, id);
	CREATE FUNCTION note_outbox(batch jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.seen SELECT 'outbox', (e -> 'payload' ->> 'n')::int FROM jsonb_array_elements(batch) e
	$$;
	SELECT cluster.create_pump('ob', source => 'outbox', key_column => 'k');
	SELECT cluster.create_handler('ob', 'ob', 'note_outbox(jsonb)', max_attempts => 2);
	RESET ROLE;
});
ok(defined poll_until($node, "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'a leader');
my ($pid, $fence) = leader($node);

# one more batch through the steady pump, and all of it handled
my $steady = 0;
sub steady_flows
{
	my ($when) = @_;
	$steady += 10;
	$node->safe_psql('postgres',
		"SELECT count(cluster.publish('steady', jsonb_build_object('n', i))) FROM generate_series($steady - 9, $steady) i");
	ok(defined poll_until($node, "SELECT count(*) FROM seen WHERE pump = 'steady'", $steady),
		"$when: the other pump flows");
}

sub outbox_events
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO outbox (payload, k) SELECT jsonb_build_object('n', i), 'k' || i FROM generate_series($from, $to) i");
}

sub refused
{
	my ($sql, $detail, $what) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$what: refused");
	like($err, qr/ERROR:  cannot drop .* because other objects depend on it\nDETAIL:  \Q$detail\E/,
		"$what: the error names the pump or handler");
	like($err, qr/HINT:  .*CASCADE/, "$what: and hints at CASCADE");
}

outbox_events(1, 10);
ok(defined poll_until($node, "SELECT count(*) FROM seen WHERE pump = 'outbox'", '10'),
	'the outbox pump flows');

refused('DROP TABLE outbox', 'cluster pump "ob" reads it.', 'DROP TABLE of an outbox');
refused('ALTER TABLE outbox DROP COLUMN k', 'cluster pump "ob" reads it.', 'DROP COLUMN of a mapped column');
refused('DROP FUNCTION note_outbox(jsonb)', 'cluster handler "ob" calls it.', 'DROP FUNCTION of a handler\'s function');
$node->safe_psql('postgres', 'ALTER TABLE outbox ADD COLUMN extra int; ALTER TABLE outbox DROP COLUMN extra');
pass('a column no pump maps comes and goes');
steady_flows('after the refused drops');

# a function dropped with CASCADE: the handler waits, its events are not dead-lettered
my ($ret, $out, $err) = $node->psql('postgres', 'DROP FUNCTION note_outbox(jsonb) CASCADE');
is($ret, 0, 'DROP FUNCTION ... CASCADE works');
like($err, qr/NOTICE:  cluster handler "ob" no longer has a function/, 'and says what it did to the handler');
outbox_events(11, 20);
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'ob'", '10'),
	'without a function, the handler\'s events wait');
is($node->safe_psql('postgres', "SELECT dead_letters FROM cluster.handlers WHERE name = 'ob'"), '0',
	'none of them dead-lettered');
$node->safe_psql('postgres', q{
	SET ROLE alice;
	CREATE FUNCTION note_outbox2(batch jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.seen SELECT 'outbox', (e -> 'payload' ->> 'n')::int FROM jsonb_array_elements(batch) e
	$$;
	SELECT cluster.alter_handler('ob', function => 'note_outbox2(jsonb)');
});
ok(defined poll_until($node, "SELECT count(*) FROM seen WHERE pump = 'outbox'", '20'),
	'with a new function, they are handled');

# the owner can't read its source any more: that handler stops, visibly
$node->safe_psql('postgres', 'ALTER TABLE outbox OWNER TO CURRENT_USER');
outbox_events(21, 30);
ok(defined poll_until($node,
		"SELECT last_error LIKE '%permission denied%' FROM cluster.handlers WHERE name = 'ob'", 't'),
	'source unreadable: last_error says why');
steady_flows('while a handler can\'t read its source');
$node->safe_psql('postgres', 'ALTER TABLE outbox OWNER TO alice');
ok(defined poll_until($node,
		"SELECT (SELECT count(*) FROM seen WHERE pump = 'outbox') || ' ' || (last_error IS NULL) FROM cluster.handlers WHERE name = 'ob'", '30 true'),
	'readable again: handled, and last_error cleared');
is($node->safe_psql('postgres', "SELECT dead_letters FROM cluster.handlers WHERE name = 'ob'"), '0',
	'nothing dead-lettered meanwhile');

# the source moved where its owner has no USAGE: at the next load the pump
# can't be prepared; that handler alone is left out, and tried again until fixed
$node->safe_psql('postgres', q{
	CREATE SCHEMA sealed;
	ALTER TABLE outbox SET SCHEMA sealed;
	SELECT cluster.alter_handler('steady', batch_size => 50);
});
$node->safe_psql('postgres',
	"INSERT INTO sealed.outbox (payload, k) SELECT jsonb_build_object('n', i), 'k' || i FROM generate_series(31, 40) i");
ok(defined poll_until($node,
		"SELECT last_error LIKE '%permission denied for schema sealed%' FROM cluster.handlers WHERE name = 'ob'", 't'),
	'source out of reach at load: last_error says why');
steady_flows('while a pump can\'t be loaded');
$node->safe_psql('postgres', 'GRANT USAGE ON SCHEMA sealed TO alice');
ok(defined poll_until($node, "SELECT count(*) FROM seen WHERE pump = 'outbox'", '40', 60),
	'within reach again: the handler is loaded again and catches up');
$node->safe_psql('postgres', 'ALTER TABLE sealed.outbox SET SCHEMA public');

# CASCADE drops the pump with its handlers
($ret, $out, $err) = $node->psql('postgres', 'DROP TABLE outbox CASCADE');
is($ret, 0, 'DROP TABLE ... CASCADE works');
like($err, qr/NOTICE:  drop cascades to cluster pump "ob" and its 1 handler\(s\)/, 'and says so');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.pumps WHERE name = 'ob'"), '0', 'the pump is gone');
is($node->safe_psql('postgres', "SELECT string_agg(name, ',') FROM cluster.handlers"), 'steady',
	'cluster.handlers works and shows the other handler');
steady_flows('after the cascade');

# roles: owned pumps and handlers keep a role; REASSIGN OWNED and DROP OWNED treat them as owned
$node->safe_psql('postgres', q{
	CREATE ROLE bob;
	SET ROLE alice;
	SELECT cluster.create_pump('alices');
	SELECT cluster.create_handler('alices', 'alices');
	SELECT cluster.grant_worker('alices', 'cluster_worker');
	RESET ROLE;
});
($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE alice');
like($err, qr/ERROR:  role "alice" cannot be dropped because some objects depend on it\nDETAIL:  owner of cluster pump "alices" in database postgres/,
	'DROP ROLE of a pump owner is refused, naming the pump');
# a role without alice's privileges gains nothing through the role commands
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN; GRANT cluster_admin TO mallory');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; DROP OWNED BY alice');
like($err, qr/permission denied to drop objects/, 'mallory: DROP OWNED BY alice is refused');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; REASSIGN OWNED BY alice TO mallory');
like($err, qr/permission denied to reassign objects/, 'mallory: REASSIGN OWNED BY alice is refused');
is($node->safe_psql('postgres',
		"SELECT (SELECT owner FROM cluster.pumps WHERE name = 'alices') || ',' || (SELECT count(*) FROM cluster.grants WHERE object_name = 'alices')"),
	'alice,1', 'alice\'s pump and grant are untouched');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE mallory; DROP ROLE alice');
like($err, qr/ERROR:  (role "alice" cannot be dropped|permission denied to drop role)/,
	'mallory: DROP ROLE alice is refused');
$node->safe_psql('postgres', 'DROP ROLE mallory');

$node->safe_psql('postgres', 'REASSIGN OWNED BY alice TO bob');
is($node->safe_psql('postgres',
		"SELECT (SELECT owner FROM cluster.pumps WHERE name = 'alices') || ',' || (SELECT owner FROM cluster.handlers WHERE name = 'alices')"),
	'bob,bob', 'REASSIGN OWNED moved the pump and the handler');
$node->safe_psql('postgres', 'DROP OWNED BY alice; DROP ROLE alice');
pass('then alice could be dropped');
$node->safe_psql('postgres', 'DROP OWNED BY bob');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.pumps WHERE name = 'alices'"), '0',
	'DROP OWNED dropped bob\'s pump and handler');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.grants WHERE object_name = 'alices'"), '0',
	'and the grants on them');
$node->safe_psql('postgres', 'DROP ROLE bob');
pass('and bob could be dropped');
steady_flows('after the role changes');

# a cursor from another cluster's transaction ids (a restore elsewhere):
# that handler stops with why, instead of skipping new events
$node->safe_psql('postgres', q{
	CREATE FUNCTION noop(batch jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
	SELECT cluster.create_handler('restored', 'steady', 'noop(jsonb)');
	UPDATE cluster.handler SET state = jsonb_set(state, '{cursor}', '{"snapshot": "99999999999:99999999999:"}'), epoch = epoch + 1
	 WHERE name = 'restored';
});
ok(defined poll_until($node,
		"SELECT last_error LIKE '%is ahead of this server''s transaction ids%' FROM cluster.handlers WHERE name = 'restored'", 't'),
	'a cursor ahead of the server\'s transaction ids: last_error says so');
steady_flows('while a handler\'s cursor is from elsewhere');
$node->safe_psql('postgres', "SELECT cluster.reset_handler('restored', 'end')");
steady_flows('after the reset');
ok(defined poll_until($node, "SELECT last_error IS NULL FROM cluster.handlers WHERE name = 'restored'", 't'),
	'reset, it handles events again and last_error clears');

is(join(' ', leader($node)), "$pid $fence", 'the same engine leads with the same fence');
unlike(slurp_file($node->logfile), qr/terminated by signal|exited with exit code [1-9]/,
	'no engine exited');
$node->stop;
done_testing();
