# Workers on other hosts: two workers in network namespaces of their own,
# reached through veth pairs and real routing, with netem delay and loss; a
# partition (link down) in the middle of a stream.  Nothing is lost,
# duplicates stay within what was in flight, the partitioned worker's keys
# go to the other worker within the documented time (its deliveries time
# out after ack_timeout and it turns unhealthy) and come back once it heals.
#
# Runs as root (namespaces and links need it); the server and the workers
# run as the test user.  Where namespaces can't be made, it says so and
# skips.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use File::Path qw(rmtree make_path);
use Cwd qw(abs_path);

my $tester = $ENV{CLUSTER_TESTER} // 'cluster_tester';
plan skip_all => 'needs root to create network namespaces' if $> != 0;
if (system('ip netns add cl_probe >/dev/null 2>&1') != 0)
{
	plan skip_all => 'this machine cannot create network namespaces (ip netns add failed)';
}
system('ip netns del cl_probe');

my $root = abs_path('.');
my $dir = "$root/" . ($ENV{OUT} // 'test/out') . '/netns';
rmtree($dir);
make_path($dir);
system("chown $tester '$dir'") == 0 or die;
my $port = 54381;
my $ack_timeout = 2;
my @workers;

sub run { my $cmd = shift; system($cmd) == 0 or die "failed: $cmd\n"; }
sub as_tester { return "runuser -u $tester -- " . shift; }
sub psql
{
	my ($sql) = @_;
	my $out = `runuser -u $tester -- psql -XAtq -h '$dir' -p $port -d postgres -v ON_ERROR_STOP=1 -c "$sql" 2>&1`;
	die "psql failed: $sql\n$out" if $?;
	chomp $out;
	return $out;
}
sub poll
{
	my ($sql, $want, $timeout) = @_;
	my $start = time;
	while (time - $start < ($timeout // 60))
	{
		return time - $start if psql($sql) eq $want;
		usleep(50_000);
	}
	return undef;
}

# the hosts: two namespaces, a veth pair each, 10.231.N.1 here and .2 there
sub cleanup
{
	kill 'TERM', @workers if @workers;
	system(as_tester("pg_ctl -D '$dir/data' -m immediate -w stop >/dev/null 2>&1"));
	for my $n (1, 2)
	{
		system("ip link del cl_h$n >/dev/null 2>&1");
		system("ip netns del cl_w$n >/dev/null 2>&1");
	}
}
END { cleanup(); }
cleanup();
my $netem = 1;
for my $n (1, 2)
{
	run("ip netns add cl_w$n");
	run("ip link add cl_h$n type veth peer name cl_n$n");
	run("ip link set cl_n$n netns cl_w$n");
	run("ip addr add 10.231.$n.1/24 dev cl_h$n");
	run("ip link set cl_h$n up");
	run("ip netns exec cl_w$n ip addr add 10.231.$n.2/24 dev cl_n$n");
	run("ip netns exec cl_w$n ip link set cl_n$n up");
	run("ip netns exec cl_w$n ip link set lo up");
	# a real network: delay and a little loss both ways, where the kernel
	# has netem (sch_netem); else the test says so and goes on without
	$netem = 0
	  if system("tc qdisc add dev cl_h$n root netem delay 5ms 2ms loss 0.5% 2>/dev/null") != 0
	  || system("ip netns exec cl_w$n tc qdisc add dev cl_n$n root netem delay 5ms 2ms loss 0.5% 2>/dev/null") != 0;
}
pass('two hosts in network namespaces, behind veth pairs');
diag('netem is not available in this kernel (tc qdisc ... netem failed): no delay or loss on the links')
  unless $netem;

# the database server, as the test user
my $bindir = `pg_config --bindir`;
chomp $bindir;
$ENV{PATH} = "$bindir:$ENV{PATH}";
run(as_tester("initdb -D '$dir/data' -A trust >/dev/null"));
open(my $conf, '>>', "$dir/data/postgresql.conf") or die;
print $conf <<EOC;
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'cluster'
max_worker_processes = 16
cluster.worker_hosts = '10.231.0.0/16'
EOC
close $conf;
run(as_tester("pg_ctl -D '$dir/data' -l '$dir/server.log' -w start >/dev/null"));
psql('CREATE EXTENSION cluster');
psql("SELECT cluster.create_pump('stream')");
psql("SELECT cluster.create_handler('stream', 'stream', batch_size => 10, ack_timeout => '$ack_timeout s', max_in_flight => 400)");

# a worker on each host
for my $n (1, 2)
{
	my $pid = fork // die;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$dir/w$n.out");
		open(STDERR, '>&', \*STDOUT);
		exec('ip', 'netns', 'exec', "cl_w$n", 'runuser', '-u', $tester, '--',
			'node', "$root/test/workers/flowcore-worker.js", 7000, "$dir/w$n.log", '--host', "10.231.$n.2");
	}
	push @workers, $pid;
	my $start = time;
	usleep(50_000) until (-s "$dir/w$n.out" && `cat '$dir/w$n.out'` =~ /listening/) || time - $start > 30;
	psql("SELECT cluster.register_worker('stream', 'ws://10.231.$n.2:7000/', capacity => 2)");
}
ok(defined poll("SELECT count(*) FROM cluster.workers WHERE connected", '2'),
	'the leader reaches both workers through the veth links');

sub logged
{
	my ($n) = @_;
	my %ids;
	return \%ids unless -e "$dir/w$n.log";
	open(my $f, '<', "$dir/w$n.log") or die;
	while (<$f>) { my ($id, $key) = split; $ids{$id} = $key; }
	return \%ids;
}

# a stream: 40 events every 100 ms over 20 keys, in the background
my $published = 0;
sub publish_some
{
	psql("SELECT count(cluster.publish('stream', jsonb_build_object('n', i), key => 'k' || (i % 20))) FROM generate_series(1, 40) i");
	$published += 40;
}
publish_some() for 1 .. 10;
ok(defined poll("SELECT lag_events FROM cluster.handlers WHERE name = 'stream'", '0'),
	'the first 400 events pass');
my %w1_keys = map { $_ => 1 } values %{ logged(1) };
ok(scalar(keys %w1_keys) > 0 && scalar(keys %w1_keys) < 20, 'the keys are split between the hosts');

# partition host 1 in the middle of the stream
publish_some() for 1 .. 3;
my $cut = time;
run('ip link set cl_h1 down');
my $moved;
while (!defined $moved && time - $cut < 60)
{
	publish_some();
	my $w2 = logged(2);
	$moved = time - $cut if grep { $w1_keys{$_} } values %$w2;
	usleep(100_000);
}
ok(defined $moved, 'host 1 partitioned: its keys go to host 2');
note(sprintf('keys moved %.1f s after the partition (ack_timeout %d s)', $moved // -1, $ack_timeout));
cmp_ok($moved // 999, '<', 3 * $ack_timeout + 2, 'within the documented time: after ack_timeout, not the poll interval');
ok(defined poll("SELECT unhealthy_until IS NOT NULL FROM cluster.workers WHERE address = 'ws://10.231.1.2:7000/'", 't', 30),
	'cluster.workers shows host 1 unhealthy');
publish_some() for 1 .. 5;
ok(defined poll("SELECT lag_events FROM cluster.handlers WHERE name = 'stream'", '0', 60),
	'the stream passes with host 1 cut off');

# heal: host 1 takes its keys back
run('ip link set cl_h1 up');
my $healed = time;
my $before = scalar(keys %{ logged(1) });
my $back;
while (!defined $back && time - $healed < 90)
{
	publish_some();
	$back = time - $healed if scalar(keys %{ logged(1) }) > $before;
	usleep(200_000);
}
ok(defined $back, 'host 1 healed: it gets events again');
note(sprintf('host 1 got events again %.1f s after the link came back', $back // -1));
ok(defined poll("SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = 'stream'", 't', 60),
	'every event passed');

# nothing lost, duplicates within what was in flight
my $ids = psql("SELECT string_agg(id::text, ',') FROM cluster.events WHERE stream = 'stream'");
my %count;
for my $n (1, 2)
{
	open(my $f, '<', "$dir/w$n.log") or next;
	while (<$f>) { my ($id) = split; $count{$id}++; }
}
my @missing = grep { !$count{$_} } split /,/, $ids;
is(scalar(@missing), 0, "nothing lost: each of the $published events acked by a worker");
my $dups = grep { $_ > 1 } values %count;
# what host 1 held when it was cut: capacity 2 x batch_size 10, and what
# the healed host answered late after its deliveries had timed out
cmp_ok($dups, '<=', 2 * 2 * 10, "duplicates ($dups) within what was in flight");

done_testing();
