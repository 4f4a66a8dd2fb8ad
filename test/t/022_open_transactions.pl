# Open transactions don't hold back a pump.  A pump reads by snapshot
# steps: each read hands out the events whose transactions became visible
# since its position, so a transaction that stays open (in another
# database, idle in transaction, prepared, a hostile role's, hundreds of
# prepared ones) delays only its own events, never those committed after
# it.  Events published inside such transactions are handled once they
# commit, exactly once; a rolled-back prepared transaction's never; two
# transactions on a key are handled in commit order.  Through all of it
# the same engine leads, and the handler ends with nothing left to do.
#
# A latency here is measured from just before the publishing statement
# (autocommit) or the COMMIT is sent, to the first poll, every 10 ms, that
# sees the sink row: an upper bound of the time from commit to handled.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use ClusterTest;

# 200 prepared transactions at once (part 6), and a few more.  The
# fallback poll stays at its default of 10 s: a latency below 1 s comes
# from the wakeup at the publishing commit, not from a poll.
my $node = cluster_node('open', conf => "max_prepared_transactions = 250\ncluster.poll_interval = '10s'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE DATABASE other;
	CREATE EXTENSION cluster;
	CREATE TABLE unrelated (note text);
	-- the order the function saw its events in: seq
	CREATE TABLE sink (
		seq bigserial PRIMARY KEY,
		id bigint NOT NULL,
		key text,
		tag text);
	CREATE FUNCTION take(events cluster.event[]) RETURNS void LANGUAGE sql AS $$
		INSERT INTO sink (id, key, tag)
		SELECT e.id, e.key, e.payload ->> 'tag' FROM unnest(events) WITH ORDINALITY e ORDER BY e.ordinality
	$$;
	SELECT cluster.create_pump('work');
	SELECT cluster.create_handler('taker', 'work', 'take(cluster.event[])');
	CREATE ROLE mallory LOGIN;
	CREATE SCHEMA mallory AUTHORIZATION mallory;
});
$node->safe_psql('other', q{
	CREATE TABLE t (n int);
	CREATE SCHEMA mallory AUTHORIZATION mallory;
});
ok(defined poll_until($node, "SELECT count(*) FROM cluster.engines WHERE role = 'leader'", '1'),
	'a leader');

# a session that publishes (autocommit) and one that watches the sink
my $pub = session('postgres');
my $watch = session('postgres');

# every event that must be handled, once, and those that never may be
my (%expected, %never);

# A background session, its timeout (60 s) counted per query.
sub session
{
	my ($db, @as) = @_;
	my $s = $node->background_psql($db, timeout => 60, @as ? (extra_params => [ '-U', $as[0] ]) : ());
	$s->set_query_timer_restart;
	return $s;
}

# A string as an SQL literal.
sub quote
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Publish one event in its own transaction; returns its id.
sub publish
{
	my ($tag, $key) = @_;
	$key = defined $key ? quote($key) : 'NULL';
	my $id = $pub->query_safe('SELECT cluster.publish(\'work\', jsonb_build_object(\'tag\', ' . quote($tag) . "), key => $key)");
	$expected{$id} = 1;
	return $id;
}

# Seconds from $t0 to the first poll (every 10 ms) that sees all of @ids
# in the sink, or undef once $cap seconds have passed.
sub seen_after
{
	my ($t0, $cap, @ids) = @_;
	my $list = join(',', @ids);
	while (time - $t0 < $cap)
	{
		return time - $t0
		  if $watch->query_safe("SELECT count(DISTINCT id) FROM sink WHERE id IN ($list)") == @ids;
		usleep(10_000);
	}
	return undef;
}

sub latency_ok
{
	my ($took, $what) = @_;
	ok(defined $took && $took < 1,
		"$what: handled within 1 s of the commit ("
		  . (defined $took ? sprintf('%.3f s', $took) : 'not within 2 s') . ')');
}

# An event committed now is handled within a second.
sub handled_within_a_second
{
	my ($what) = @_;
	my $t0 = time;
	my $id = publish($what);
	latency_ok(seen_after($t0, 2, $id), $what);
	return $id;
}

# The events are handled (a generous wait: not a latency check), once each.
sub handled_once
{
	my ($what, @ids) = @_;
	my $list = join(',', @ids);
	ok(defined poll_until($node, "SELECT count(DISTINCT id) FROM sink WHERE id IN ($list)", scalar(@ids), 30),
		"$what: handled");
	is($node->safe_psql('postgres', "SELECT count(*) FROM sink WHERE id IN ($list)"), scalar(@ids),
		"$what: each exactly once");
}

my ($pid, $fence) = leader($node);
sub same_leader
{
	my ($part) = @_;
	is(join(' ', leader($node)), "$pid $fence", "$part: the same engine leads, with the same fence");
}

# the events before any blocker: the pump is running, and the measure
# works
handled_once('an event before anything is open', publish('before'));
handled_within_a_second('0: with no transaction open');

# --- 1. open transactions of every kind delay nothing committed after them ---
# (a) a write transaction in another database
my $other = session('other');
$other->query_safe('BEGIN');
$other->query_safe('INSERT INTO t VALUES (1)');
my $xid_other = $other->query_safe('SELECT pg_current_xact_id()');
# (b) idle in transaction in this database, having written an unrelated row
my $idle = session('postgres');
$idle->query_safe('BEGIN');
$idle->query_safe("INSERT INTO unrelated VALUES ('idle')");
my $idle_pid = $idle->query_safe('SELECT pg_backend_pid()');
# (c) a prepared transaction that wrote an unrelated row
$node->safe_psql('postgres', "BEGIN; INSERT INTO unrelated VALUES ('prepared'); PREPARE TRANSACTION 'pure'");

is($node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $idle_pid"),
	'idle in transaction', '1: a session is idle in transaction');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'pure'"), '1',
	'1: a transaction is prepared');
is($node->safe_psql('postgres', "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= '$xid_other'::xid8"), 't',
	'1: the other database\'s transaction holds back the xmin of every snapshot');
handled_within_a_second("1: behind a write in another database, one idle in transaction, a prepared one ($_)")
  for 1 .. 3;
same_leader('1');

# --- 2. events published inside open transactions: handled once committed ---
# the idle transaction publishes too (its xid is older than what was handled)
my $in_idle = $idle->query_safe("SELECT cluster.publish('work', '{\"tag\": \"in idle\"}')");
# a write transaction in this database
my $write = session('postgres');
$write->query_safe('BEGIN');
my $in_write = $write->query_safe("SELECT cluster.publish('work', '{\"tag\": \"in write\"}')");
# a prepared one that publishes, and one that publishes and will be rolled back
my $in_prepared = $node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO unrelated VALUES ('prepared, publishing');
	SELECT cluster.publish('work', '{"tag": "in prepared"}');
	PREPARE TRANSACTION 'publishing'});
my $in_rolled_back = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT cluster.publish('work', '{"tag": "rolled back"}');
	PREPARE TRANSACTION 'rolled_back'});
$expected{$_} = 1 for $in_idle, $in_write, $in_prepared;
$never{$in_rolled_back} = 1;
is($node->safe_psql('postgres', "SELECT count(*) FROM sink WHERE id IN ($in_idle, $in_write, $in_prepared, $in_rolled_back)"),
	'0', '2: nothing of a transaction in progress is handled');
# (a point-1 check: these in-progress publishers hold nothing back either)
handled_within_a_second('1: behind open transactions that published');

# committed while the other database's and the pure prepared transaction
# stay open: their events are handled at once too
my $t0 = time;
$write->query_safe('COMMIT');
$idle->query_safe('COMMIT');
latency_ok(seen_after($t0, 2, $in_write, $in_idle),
	'2: the events of the write and of the idle transaction, while older ones stay open');
# COMMIT PREPARED wakes nobody: the leader, which has handled events and
# moved its cursor since it last saw the transaction in progress, looks
# again within a second all the same (the 1 s poll, plus the round)
my $t1 = time;
$node->safe_psql('postgres', "COMMIT PREPARED 'publishing'");
my $prepared_took = seen_after($t1, 5, $in_prepared);
ok(defined $prepared_took && $prepared_took < 2,
	'2: the event of a transaction committed with COMMIT PREPARED is handled within 2 s ('
	  . (defined $prepared_took ? sprintf('%.3f s', $prepared_took) : 'not within 5 s') . ')');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'rolled_back'");
$other->query_safe('COMMIT');
$node->safe_psql('postgres', "COMMIT PREPARED 'pure'");
handled_once('2: the events of the write, the idle and the prepared transaction', $in_write, $in_idle, $in_prepared);
same_leader('2');

# --- 3. a rolled-back prepared transaction contributes nothing ---
my $later = publish('after the rollback');
handled_once('3: an event committed after the rollback', $later);
cmp_ok($in_rolled_back, '<', $later, '3: the rolled-back event came before it');
is($node->safe_psql('postgres', "SELECT count(*) FROM sink WHERE id = $in_rolled_back OR tag = 'rolled back'"), '0',
	'3: the rolled-back prepared transaction\'s event never reached the sink');
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'taker'", '0', 30),
	'3: nothing is left to do');
same_leader('3');

# --- 4. a hostile plain role holding transactions open delays nobody ---
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_auth_members WHERE member = 'mallory'::regrole"), '0',
	'4: mallory is a member of no role');
my $m_here = session('postgres', 'mallory');
$m_here->query_safe('CREATE TABLE mallory.t (n int)');
$m_here->query_safe('BEGIN');
$m_here->query_safe('INSERT INTO mallory.t VALUES (1)');
my $m_there = session('other', 'mallory');
$m_there->query_safe('CREATE TABLE mallory.t (n int)');
$m_there->query_safe('BEGIN');
$m_there->query_safe('INSERT INTO mallory.t VALUES (1)');
# an xid without writing anything
my $m_xid = session('postgres', 'mallory');
$m_xid->query_safe('BEGIN');
my $xid_mallory = $m_xid->query_safe('SELECT pg_current_xact_id()');
$node->safe_psql('postgres', "BEGIN; INSERT INTO mallory.t VALUES (2); PREPARE TRANSACTION 'mallory'",
	extra_params => [ '-U', 'mallory' ]);
is($node->safe_psql('postgres', "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= '$xid_mallory'::xid8"), 't',
	'4: mallory\'s transactions hold back the xmin of every snapshot');
handled_within_a_second("4: behind mallory's open transactions ($_)") for 1 .. 2;
$m_here->query_safe('COMMIT');
$m_there->query_safe('COMMIT');
$m_xid->query_safe('COMMIT');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'mallory'");
$_->quit for $m_here, $m_there, $m_xid;
same_leader('4');

# --- 5. two transactions on a key: handled in commit order ---
my $first = session('postgres');
$first->query_safe('BEGIN');
my $id_first = $first->query_safe("SELECT cluster.publish('work', '{\"tag\": \"began first\"}', key => 'same')");
my $xid_first = $first->query_safe('SELECT pg_current_xact_id()');
my $second = session('postgres');
$second->query_safe('BEGIN');
my $id_second = $second->query_safe("SELECT cluster.publish('work', '{\"tag\": \"began second\"}', key => 'same')");
my $xid_second = $second->query_safe('SELECT pg_current_xact_id()');
$expected{$_} = 1 for $id_first, $id_second;
is($node->safe_psql('postgres', "SELECT '$xid_first'::xid8 < '$xid_second'::xid8 AND $id_first < $id_second"), 't',
	'5: the transaction that began first has the older xid and the lower id');
# the second commits and is handled before the first commits: were both
# committed when the pump next reads, one step would hold both, in (txid,
# id) order
$t0 = time;
$second->query_safe('COMMIT');
my $took = seen_after($t0, 5, $id_second);
ok(defined $took,
	'5: the event of the transaction that committed first is handled while the other is open ('
	  . (defined $took ? sprintf('%.3f s', $took) : 'not within 5 s') . ')');
$first->query_safe('COMMIT');
$_->quit for $first, $second;
handled_once('5: both events of the key', $id_first, $id_second);
is($node->safe_psql('postgres',
		"SELECT string_agg(tag, ', ' ORDER BY seq) FROM sink WHERE id IN ($id_first, $id_second)"),
	'began second, began first', '5: the event of the transaction that committed first was handled first');
same_leader('5');

# --- 6. hundreds of prepared transactions in progress ---
my $script = '';
for my $i (1 .. 200)
{
	$script .= "BEGIN;\n"
	  . ($i % 2
		? "INSERT INTO unrelated VALUES ('many $i');\n"
		: "SELECT cluster.publish('work', jsonb_build_object('tag', 'many $i'), key => 'many $i');\n")
	  . "PREPARE TRANSACTION 'many_$i';\n";
}
my @many = split /\n/, $node->safe_psql('postgres', $script);
is(scalar(@many), 100, '6: 100 of them published an event');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'many_%'"), '200',
	'6: 200 transactions are prepared');
is($node->safe_psql('postgres', "SELECT count(*) FROM sink WHERE id IN (" . join(',', @many) . ")"), '0',
	'6: none of their events is handled while they are prepared');
handled_within_a_second("6: behind 200 prepared transactions ($_)") for 1 .. 2;
$node->safe_psql('postgres', join('', map { "COMMIT PREPARED 'many_$_';\n" } 1 .. 200));
$expected{$_} = 1 for @many;
handled_once('6: the events of the 100 that published, once they committed', @many);
same_leader('6');

# --- the end: everything handled exactly once, nothing else ---
ok(defined poll_until($node, "SELECT lag_events FROM cluster.handlers WHERE name = 'taker'", '0', 30),
	'lag_events returns to 0');
is($node->safe_psql('postgres', "SELECT coalesce(last_error, '') || dead_letters FROM cluster.handlers WHERE name = 'taker'"),
	'0', 'no error, no dead letter');
my @want = sort { $a <=> $b } keys %expected;
is($node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM sink'),
	join(',', @want), 'the sink holds every committed event exactly once (' . scalar(@want) . '), nothing else');
is($node->safe_psql('postgres', 'SELECT count(*) FROM sink WHERE id IN (' . join(',', keys %never) . ')'),
	'0', 'and no event of a rolled-back transaction')
  if %never;
same_leader('the end');

# --- 7. retention deletes only what every handler's cursor holds ---
# Pump "ret" keeps events 1 s; handler r1 handles everything, r2 is
# paused, and a transaction that published one event stays open.  A new
# leader runs retention on its first pass, so each takeover below runs
# it; that it has run shows as an old event of pump "ret_probe" (created
# after "ret", so retention comes to it after "ret") gone.
$node->safe_psql('postgres', q{
	CREATE TABLE ret_sink (handler text, id bigint);
	CREATE FUNCTION ret_r1(events cluster.event[]) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO ret_sink SELECT 'r1', e.id FROM unnest(events) e $$;
	CREATE FUNCTION ret_r2(events cluster.event[]) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO ret_sink SELECT 'r2', e.id FROM unnest(events) e $$;
	SELECT cluster.create_pump('ret', retention => '1 s');
	SELECT cluster.create_handler('r1', 'ret', 'ret_r1(cluster.event[])');
	SELECT cluster.create_handler('r2', 'ret', 'ret_r2(cluster.event[])');
	SELECT cluster.pause_handler('r2');
	CREATE FUNCTION ret_nothing(events cluster.event[]) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
	SELECT cluster.create_pump('ret_probe', retention => '1 s');
	SELECT cluster.create_handler('p1', 'ret_probe', 'ret_nothing(cluster.event[])');
});
my $holder = session('postgres');
$holder->query_safe("BEGIN; SELECT cluster.publish('ret', '{\"held\": true}')");
$node->safe_psql('postgres', "SELECT count(cluster.publish('ret', jsonb_build_object('n', i))) FROM generate_series(1, 5) i");
ok(defined poll_until($node, "SELECT count(*) FROM ret_sink WHERE handler = 'r1'", '5'), '7: r1 handled the 5 events');
ok(defined poll_until($node,
		"SELECT bool_and(created_at < now() - interval '1.5 s') FROM cluster.events WHERE stream = 'ret'", 't'),
	'7: they are older than the retention');
sub takeover_and_one_more
{
	my ($what) = @_;
	my $probe = $node->safe_psql('postgres', "SELECT cluster.publish('ret_probe', '{}')");
	ok(defined poll_until($node,
			"SELECT lag_events = 0 AND (SELECT created_at < now() - interval '1.5 s' FROM cluster.events WHERE id = $probe) "
			  . "FROM cluster.handlers WHERE name = 'p1'", 't'),
		"7: a probe event, handled and older than the retention ($what)");
	my ($leader_pid) = leader($node);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($leader_pid)");
	ok(defined poll_until($node,
			"SELECT count(*) FROM cluster.engines WHERE role = 'leader' AND pid <> $leader_pid", '1'),
		"7: another leader ($what)");
	ok(defined poll_until($node, "SELECT count(*) FROM cluster.events WHERE id = $probe", '0'),
		"7: its retention has run ($what)");
	my $marker = $node->safe_psql('postgres', "SELECT cluster.publish('ret', '{\"marker\": true}')");
	ok(defined poll_until($node, "SELECT count(*) FROM ret_sink WHERE handler = 'r1' AND id = $marker", '1'),
		"7: r1 handles a new event ($what)");
	return $marker;
}
my $m1 = takeover_and_one_more('r2 paused');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.events WHERE stream = 'ret' AND payload ? 'n'"), '5',
	'7: nothing r2 has not passed is deleted');
$node->safe_psql('postgres', "SELECT cluster.resume_handler('r2')");
ok(defined poll_until($node, "SELECT count(*) FROM ret_sink WHERE handler = 'r2'", '6'),
	'7: r2 handled the 5 and the marker');
ok(defined poll_until($node,
		"SELECT bool_and(created_at < now() - interval '1.5 s') FROM cluster.events WHERE stream = 'ret'", 't'),
	'7: all older than the retention');
my $m2 = takeover_and_one_more('r2 caught up');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM cluster.events WHERE stream = 'ret' AND (payload ? 'n' OR id = $m1)"), '0',
	'7: what both handlers passed is deleted');
# the transaction that stayed open commits while r2 is paused: its old
# event, below every cursor's xmax but in progress at their snapshots,
# outlives a retention run until r2 has it too
$node->safe_psql('postgres', "SELECT cluster.pause_handler('r2')");
$holder->query_safe('COMMIT');
$holder->quit;
my $held = $node->safe_psql('postgres', "SELECT id FROM cluster.events WHERE stream = 'ret' AND payload ? 'held'");
ok(defined poll_until($node, "SELECT count(*) FROM ret_sink WHERE handler = 'r1' AND id = $held", '1'),
	'7: r1 handles the event of the transaction that stayed open once it commits');
takeover_and_one_more('the old event committed, r2 paused');
is($node->safe_psql('postgres', "SELECT count(*) FROM cluster.events WHERE id = $held"), '1',
	'7: retention keeps it while r2 has not passed it');
$node->safe_psql('postgres', "SELECT cluster.resume_handler('r2')");
ok(defined poll_until($node, "SELECT count(*) FROM ret_sink WHERE handler = 'r2' AND id = $held", '1'),
	'7: r2 handles it, once');

$pub->quit;
$watch->quit;
$write->quit;
$idle->quit;
$other->quit;
$node->stop;
done_testing();
