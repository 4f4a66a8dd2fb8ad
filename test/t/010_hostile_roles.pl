# Hostile roles against the engines, which are superuser: a plain login
# role, a cluster_worker member, and a second cluster_admin attacking the
# objects of another (alice).  Each way in is tried for real; each check
# asserts that nothing was gained: no role attribute changed, no row read or
# deleted that the attacker could not read or delete itself, no foreign
# registration, and the same engine leading with the same fence.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $node = cluster_node('hostile');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION cluster;
	CREATE ROLE mallory LOGIN;
	CREATE ROLE wanda LOGIN IN ROLE cluster_worker;
	CREATE ROLE alice LOGIN IN ROLE cluster_admin;
	CREATE ROLE bob LOGIN IN ROLE cluster_admin;
	GRANT CREATE ON SCHEMA public TO alice, bob;
	GRANT CREATE ON DATABASE postgres TO bob;
});

# Run SQL as a role; returns (stdout, stderr) and never dies.
sub as
{
	my ($role, $sql) = @_;
	my ($out, $err);
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return ($out, $err);
}

sub as_ok
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

sub denied
{
	my ($role, $sql, $what, $pattern) = @_;
	my ($out, $err) = as($role, $sql);
	like($err, $pattern // qr/permission denied/, "$role: $what is refused");
}

sub superusers
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles "
		  . "WHERE rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication");
}
my $privileged = superusers();

# alice: an outbox only she can read, a pump, a handler, a sink
as_ok('alice', q{
	CREATE TABLE alice_outbox (id bigint GENERATED ALWAYS AS IDENTITY, payload jsonb NOT NULL,
		txid xid8 NOT NULL DEFAULT pg_current_xact_id(), created_at timestamptz NOT NULL DEFAULT now());
	CREATE TABLE alice_sink (id bigint);
	CREATE FUNCTION alice_consume(batch jsonb) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO alice_sink SELECT (e ->> 'id')::bigint FROM jsonb_array_elements(batch) e $$;
	SELECT cluster.create_pump('alice_pump', 'alice_outbox', created_at_column => 'created_at');
	SELECT cluster.create_handler('alice_h', 'alice_pump', 'alice_consume(jsonb)');
	INSERT INTO alice_outbox (payload) SELECT jsonb_build_object('secret', i) FROM generate_series(1, 5) i;
});
ok(defined poll_until($node, 'SELECT count(*) FROM alice_sink', '5'),
	'alice\'s handler runs as alice');
my ($pid, $fence) = leader($node);

# --- a plain role ---------------------------------------------------------
denied('mallory', "SELECT cluster.create_pump('m', 'alice_outbox')", 'creating a pump');
denied('mallory', "SELECT cluster.register_worker('alice_h', 'ws://127.0.0.1:1/')", 'registering a worker');
denied('mallory', "SELECT * FROM cluster.handlers", 'reading the handlers');
# the coordinators' lock can't be taken from SQL: the built-in key spaces differ
my ($out) = as('mallory', "SELECT pg_try_advisory_lock(1668052339, 1)");
is($out, 't', 'mallory: a lock on the coordinator\'s old key is just a lock');
is(join(' ', leader($node)), "$pid $fence", 'the leader is unmoved');

# --- a cluster_worker member ----------------------------------------------
# the SECURITY DEFINER _lag that read FROM a caller-built row is gone
denied('wanda', "SELECT cluster._lag(ROW(1, 'x', 1, 'pg_authid'::regclass, 'id', 'txid', 'payload', NULL, NULL, NULL, '1 day', 'wanda', now())::cluster.pump, '[\"0\",\"0\"]')",
	'the old _lag with a forged pump row', qr/does not exist/);
# lag and timestamps of a table it can't read are not shown
my $hid = $node->safe_psql('postgres', "SELECT id FROM cluster.handler WHERE name = 'alice_h'");
is(as_ok('wanda', "SELECT coalesce(events::text, 'hidden') FROM cluster._lag($hid)"), 'hidden',
	'wanda: the lag of an outbox it can\'t read is hidden');
is(as_ok('wanda', "SELECT coalesce(lag_events::text, 'hidden') FROM cluster.handlers WHERE name = 'alice_h'"),
	'hidden', 'wanda: cluster.handlers hides it too');
is(as_ok('alice', "SELECT lag_events FROM cluster.handlers WHERE name = 'alice_h'"), '0',
	'alice sees her own lag');
# worker registration needs alice's consent
denied('wanda', "SELECT cluster.register_worker('alice_h', 'ws://127.0.0.1:1/')",
	'registering a worker for alice\'s handler');
my $alice_worker = as_ok('alice', "SELECT cluster.register_worker('alice_h', 'ws://127.0.0.1:1/')");
denied('wanda', "SELECT cluster.unregister_worker('$alice_worker')", 'unregistering alice\'s worker');
denied('wanda', "SELECT cluster.worker_heartbeat('$alice_worker')", 'heartbeating alice\'s worker');
denied('wanda', "SELECT cluster._register_worker('alice_h', 'ws://127.0.0.1:2/', NULL, 1, 'alice')",
	'the internal registration with a forged caller');
denied('wanda', "SELECT cluster._unregister_worker('$alice_worker', 'alice')",
	'the internal unregistration with a forged caller');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.worker"), '1',
	'only alice\'s worker is registered');
# with consent it may; an address outside cluster.worker_hosts never
as_ok('alice', "SELECT cluster.grant_worker('alice_h', 'wanda')");
ok(as_ok('wanda', "SELECT cluster.register_worker('alice_h', 'ws://127.0.0.1:3/')") ne '',
	'wanda: registers once alice granted it');
denied('wanda', "SELECT cluster.register_worker('alice_h', 'ws://169.254.169.254/latest/')",
	'dialling a metadata service', qr/may not dial worker address/);
denied('wanda', "SELECT cluster.register_worker('alice_h', 'ws://db.internal:5432/')",
	'dialling an internal host by name', qr/may not dial worker address/);
denied('wanda', "SELECT cluster.grant_worker('alice_h', 'mallory')", 'granting on alice\'s handler');
as_ok('alice', "SELECT cluster.revoke_worker('alice_h', 'wanda'); SELECT cluster.unregister_worker('$alice_worker')");
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.worker"), '0',
	'revoking unregistered wanda\'s worker');
denied('wanda', "SELECT * FROM cluster.dead_letters", 'reading dead letters');
denied('wanda', "UPDATE cluster.handler SET state = state || '{\"cursor\": [\"0\", \"0\"]}' WHERE id = $hid",
	'moving a cursor the way the leader commits it');

# --- a second cluster_admin -------------------------------------------------
# alice's events: no pump, no handler, no direct row gets them to bob
as_ok('bob', q{
	CREATE TABLE bob_sink (id bigint, payload jsonb);
	CREATE FUNCTION bob_consume(batch jsonb) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO bob_sink SELECT (e ->> 'id')::bigint, e -> 'payload' FROM jsonb_array_elements(batch) e $$;
});
denied('bob', "SELECT cluster.create_pump('bob_steal', 'alice_outbox')", 'a pump over alice\'s outbox');
denied('bob', "SELECT cluster.create_handler('bob_steal', 'alice_pump', 'bob_consume(jsonb)')",
	'a handler of alice\'s pump');
denied('bob', "INSERT INTO cluster.handler (name, pump_id, function, owner, ordering, batch_size, max_attempts, ack_timeout, max_in_flight) "
	  . "SELECT 'bob_steal', id, 'bob_consume(jsonb)', 'bob', 'key', 10, 1, '1 s', 10 FROM cluster.pump WHERE name = 'alice_pump'",
	'a direct handler row on alice\'s pump');
denied('bob', "INSERT INTO cluster.pump (name, coordinator_id, source, retention, owner) "
	  . "SELECT 'bob_steal', 1, 'alice_outbox', '1 s', 'bob'",
	'a direct pump row over alice\'s outbox');
as_ok('bob', "SELECT cluster.create_pump('bob_pump'); SELECT cluster.create_handler('bob_h', 'bob_pump', 'bob_consume(jsonb)')");
denied('bob', "UPDATE cluster.handler SET pump_id = (SELECT id FROM cluster.pump WHERE name = 'alice_pump') WHERE name = 'bob_h'",
	'moving its handler onto alice\'s pump');
denied('bob', "SELECT cluster.handler_state('alice_h')", 'reading alice\'s handler state');
denied('bob', "SELECT cluster._position_before($hid, now())", 'positioning in alice\'s outbox');
denied('bob', "SELECT cluster.grant_pump('alice_pump', 'bob')", 'granting itself alice\'s pump');
is(as_ok('bob', "SELECT coalesce(lag_events::text, 'hidden') FROM cluster.handlers WHERE name = 'alice_h'"),
	'hidden', 'bob: the lag of alice\'s outbox is hidden');

# a pump over a view whose WHERE calls bob's function: read as bob
as_ok('bob', q{
	CREATE TABLE bob_outbox (id bigint GENERATED ALWAYS AS IDENTITY, payload jsonb NOT NULL,
		txid xid8 NOT NULL DEFAULT pg_current_xact_id());
	CREATE FUNCTION bob_escalate() RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE bob SUPERUSER;
		RETURN true;
	END $$;
	CREATE VIEW bob_view AS SELECT * FROM bob_outbox WHERE bob_escalate();
	SELECT cluster.create_pump('bob_view_pump', 'bob_view');
	SELECT cluster.create_handler('bob_view_h', 'bob_view_pump', 'bob_consume(jsonb)');
	INSERT INTO bob_outbox (payload) VALUES ('{}');
});
ok(defined poll_until($node,
		"SELECT last_error ~ 'permission denied to alter role|must be superuser' FROM cluster.handlers WHERE name = 'bob_view_h'", 't'),
	'a view source runs its function as bob: ALTER ROLE fails, visibly in last_error');

# a handler function that leaves a session-level search_path behind, so that
# the leader's next operator would resolve in bob's schema
as_ok('bob', q{
	CREATE SCHEMA bob_evil;
	CREATE FUNCTION bob_evil.eq(int, int) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE bob SUPERUSER;
		RETURN $1 OPERATOR(pg_catalog.=) $2;
	END $$;
	CREATE OPERATOR bob_evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = bob_evil.eq);
	CREATE OPERATOR bob_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texteq);
	CREATE TABLE bob_paths (path text);
	CREATE FUNCTION bob_sp(batch jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.bob_paths VALUES (current_setting('search_path'));
		PERFORM set_config('search_path', 'bob_evil, pg_catalog', false);
		PERFORM set_config('statement_timeout', '1', false);
	END $$;
	SELECT cluster.create_pump('bob_sp_pump');
	SELECT cluster.create_handler('bob_sp_h', 'bob_sp_pump', 'bob_sp(jsonb)', batch_size => 1);
	SELECT cluster.publish('bob_sp_pump', jsonb_build_object('n', i)) FROM generate_series(1, 3) i;
});
ok(defined poll_until($node, "SELECT processed FROM cluster.handlers WHERE name = 'bob_sp_h'", '3'),
	'the search_path handler ran three times');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT path, ';') FROM bob_paths"),
	'"$user", public, pg_temp', 'each call starts with the default search_path: nothing outlived a call');
as_ok('alice', "INSERT INTO alice_outbox (payload) VALUES ('{\"after\": true}')");
ok(defined poll_until($node, 'SELECT count(*) FROM alice_sink', '6'),
	'the leader goes on after bob\'s calls');

# a handler function that releases every advisory lock of the engine
as_ok('bob', q{
	CREATE FUNCTION bob_unlock(batch jsonb) RETURNS void LANGUAGE sql AS
		$$ SELECT pg_advisory_unlock_all() $$;
	SELECT cluster.create_pump('bob_unlock_pump');
	SELECT cluster.create_handler('bob_unlock_h', 'bob_unlock_pump', 'bob_unlock(jsonb)');
	SELECT cluster.publish('bob_unlock_pump', '{}');
});
ok(defined poll_until($node, "SELECT processed FROM cluster.handlers WHERE name = 'bob_unlock_h'", '1'),
	'the unlocking handler ran');
$node->wait_for_log(qr/took its coordinator's advisory lock again/);
is(join(' ', leader($node)), "$pid $fence", 'the leader took its lock again: same engine, same fence');

# dead letters are events: bob doesn't see alice's
as_ok('alice', q{
	CREATE FUNCTION alice_fail(batch jsonb) RETURNS void LANGUAGE plpgsql AS
		$$ BEGIN RAISE EXCEPTION 'no'; END $$;
	SELECT cluster.create_pump('alice_stream');
	SELECT cluster.create_handler('alice_fail_h', 'alice_stream', 'alice_fail(jsonb)', max_attempts => 1);
	SELECT cluster.publish('alice_stream', '{"card": "4111"}');
});
ok(defined poll_until($node, "SELECT dead_letters FROM cluster.handlers WHERE name = 'alice_fail_h'", '1'),
	'alice has a dead letter');
is(as_ok('bob', 'SELECT count(*) FROM cluster.dead_letters'), '0', 'bob: sees none of alice\'s dead letters');
is(as_ok('alice', 'SELECT count(*) FROM cluster.dead_letters'), '1', 'alice sees hers');

is(superusers(), $privileged, 'no role gained an attribute');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bob_sink WHERE payload ? \'secret\''), '0',
	'bob received none of alice\'s events');
is(join(' ', leader($node)), "$pid $fence", 'the same engine leads with the same fence');

# --- rights lost while in use ----------------------------------------------
# a granted handler gets alice's events until she revokes the grant; then it
# stops with last_error, and no event is failed or dead-lettered for it
as_ok('alice', "SELECT cluster.grant_pump('alice_pump', 'bob')");
as_ok('bob', "SELECT cluster.create_handler('bob_granted', 'alice_pump', 'bob_consume(jsonb)')");
ok(defined poll_until($node, "SELECT count(*) FROM bob_sink WHERE payload ? 'secret'", '5'),
	'with alice\'s grant, bob\'s handler gets her events');
as_ok('alice', "SELECT cluster.revoke_pump('alice_pump', 'bob'); INSERT INTO alice_outbox (payload) VALUES ('{\"late\": 1}')");
ok(defined poll_until($node,
		"SELECT last_error FROM cluster.handlers WHERE name = 'bob_granted'",
		'role bob may not read cluster pump "alice_pump"'),
	'revoked: bob\'s handler stops with last_error');
ok(defined poll_until($node, 'SELECT count(*) FROM alice_sink', '7'), 'alice\'s own handler goes on');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bob_sink WHERE payload ? 'late'") . '/'
	  . $node->safe_psql('postgres', "SELECT dead_letters FROM cluster.handlers WHERE name = 'bob_granted'"),
	'0/0', 'bob got nothing after the revoke, and nothing was dead-lettered');

# a function whose EXECUTE is revoked
as_ok('alice', q{
	CREATE FUNCTION alice_lent(batch jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	REVOKE EXECUTE ON FUNCTION alice_lent(jsonb) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION alice_lent(jsonb) TO bob;
});
as_ok('bob', "SELECT cluster.create_handler('bob_lent', 'bob_pump', 'alice_lent(jsonb)')");
as_ok('alice', "REVOKE EXECUTE ON FUNCTION alice_lent(jsonb) FROM bob");
as_ok('bob', "SELECT cluster.publish('bob_pump', '{}')");
ok(defined poll_until($node,
		"SELECT last_error ~ '^role bob may not execute the function of cluster handler \"bob_lent\"' FROM cluster.handlers WHERE name = 'bob_lent'", 't'),
	'a revoked EXECUTE stops the handler with last_error');
is($node->safe_psql('postgres', "SELECT processed || '/' || dead_letters FROM cluster.handlers WHERE name = 'bob_lent'"),
	'0/0', 'and fails no event');

# an owner who lost SELECT on the source
as_ok('alice', "GRANT SELECT ON alice_outbox TO bob");
as_ok('bob', q{
	INSERT INTO cluster.pump (name, coordinator_id, source, retention)
	SELECT 'bob_reader', id, 'alice_outbox', '1 day' FROM cluster.coordinator WHERE name = 'default';
	SELECT cluster.create_handler('bob_reader_h', 'bob_reader', 'bob_consume(jsonb)');
});
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'bob_reader_h'", '0'),
	'bob\'s pump reads a table alice let him read');
as_ok('alice', "REVOKE SELECT ON alice_outbox FROM bob; INSERT INTO alice_outbox (payload) VALUES ('{}')");
ok(defined poll_until($node,
		"SELECT last_error FROM cluster.handlers WHERE name = 'bob_reader_h'", 'permission denied for table alice_outbox'),
	'a revoked SELECT stops the pump\'s handler with last_error');
is(join(' ', leader($node)), "$pid $fence", 'through all of it, the same engine leads with the same fence');

# --- retention as the owner ------------------------------------------------
# bob may read alice's outbox but not delete from it: its retention keeps the rows
# (a pump row written directly, as create_pump would need TRIGGER on the table)
as_ok('alice', "GRANT SELECT ON alice_outbox TO bob");
my $offset = -s $node->logfile;
as_ok('bob', q{
	INSERT INTO cluster.pump (name, coordinator_id, source, retention, created_at_column)
	SELECT 'bob_retention', id, 'alice_outbox', '1 s', 'created_at' FROM cluster.coordinator
	 WHERE name = 'default';
	SELECT cluster.create_handler('bob_retention_h', 'bob_retention', 'bob_consume(jsonb)');
});
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'bob_retention_h'", '0'),
	'bob\'s handler passed alice\'s events');
# retention runs when a leader starts: terminate this one (mallory still
# holds a lock on the coordinator's old key, which must not matter)
my $mallory = $node->background_psql('postgres', extra_params => [ '-U', 'mallory' ]);
$mallory->query_safe('SELECT pg_advisory_lock(1668052339, 1)');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(defined poll_until($node,
		"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND pid <> $pid", '1'),
	'a standby leads although mallory holds a lock on the old key');
$node->wait_for_log(qr/retention of cluster pump "bob_retention" keeps its events: role bob may not delete from public.alice_outbox/, $offset);
is($node->safe_psql('postgres', 'SELECT count(*) FROM alice_outbox'), '8',
	'alice\'s rows are all there');
$mallory->quit;

# bob writes his own handler's cursor (its row is his to update): a
# snapshot listing 200,000 transactions in progress, more than any of this
# server's, is refused at load; only his handler stops, alice's flows on
my ($pid2, $fence2) = leader($node);
as_ok('bob', q{
	UPDATE cluster.handler SET epoch = epoch + 1,
		state = jsonb_set(state, '{cursor}', jsonb_build_object('snapshot',
			'3:200003:' || (SELECT string_agg(x::text, ',') FROM generate_series(3, 200002) x)))
	 WHERE name = 'bob_retention_h';
});
ok(defined poll_until($node,
		"SELECT last_error LIKE '%lists 200000 transactions in progress, more than this server can have%' "
	  . "FROM cluster.handlers WHERE name = 'bob_retention_h'", 't'),
	'bob: a cursor with more transactions in progress than the server can have stops his handler, and says why');
my $alice_before = $node->safe_psql('postgres', 'SELECT count(*) FROM alice_sink');
as_ok('alice', q{INSERT INTO alice_outbox (payload) VALUES ('{"after": "bob"}')});
ok(defined poll_until($node, 'SELECT count(*) FROM alice_sink', $alice_before + 1),
	'alice\'s handler goes on meanwhile');
is(join(' ', leader($node)), "$pid2 $fence2", 'the same engine leads, with the same fence');
is(superusers(), $privileged, 'still no role gained an attribute');

$node->stop;
done_testing();
