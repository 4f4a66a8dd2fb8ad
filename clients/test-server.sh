# Sourced by clients/node/test/run and clients/python/test/run: a throwaway
# server with the extension whose default coordinator listens for workers
# on loopback, at a port that was free when the run began.
#
#   start_test_server DIR
#
# initdb's DIR/data, starts the server (log DIR/server.log, socket in DIR),
# creates the extension, sets the default coordinator's listen and waits
# until the leader listens there.  It exports PGHOST, PGPORT, PGDATABASE
# and CLUSTER_LISTEN, and stops the server when the calling script exits.
#
#   CLIENT_TEST_PORT         the server's port (default: a free one)
#   CLIENT_TEST_LISTEN_PORT  the leader's port (default: CLIENT_TEST_PORT + 1
#                            if CLIENT_TEST_PORT is set, else a free one)
#   CLIENT_TEST_LISTEN_TIMEOUT  seconds to wait for the leader (default 60)

# Two loopback ports free at this moment, different from each other: both
# are bound at once (port 0: the kernel chooses), read, then let go.
free_ports() {
	python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
'
}

# Poll the server log until the leader says it listens at $1, for at most
# $2 seconds; fail at once if the server is gone.
wait_until_listening() {
	endpoint=$1
	deadline=$(($(date +%s) + $2))
	while ! grep -qF "cluster leader listens at \"$endpoint\" for workers" "$test_server_dir/server.log"; do
		if ! pg_ctl -D "$test_server_dir/data" status >/dev/null 2>&1; then
			echo "$0: the server stopped before its leader listened at $endpoint; the end of $test_server_dir/server.log:" >&2
			tail -n 40 "$test_server_dir/server.log" >&2
			return 1
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "$0: the leader did not listen at $endpoint for workers within $2 s; the end of $test_server_dir/server.log:" >&2
			tail -n 40 "$test_server_dir/server.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

# At exit: after a failure, point at the server log and at any crash in it;
# stop the server, immediately if a fast shutdown does not end in 30 s.
stop_test_server() {
	status=$?
	log=$test_server_dir/server.log
	if [ "$status" != 0 ] && [ -f "$log" ]; then
		echo "$0: failed (exit $status); the server log is $log" >&2
		grep -E 'terminated by signal|PANIC' "$log" >&2 || true
	fi
	if pg_ctl -D "$test_server_dir/data" status >/dev/null 2>&1; then
		pg_ctl -D "$test_server_dir/data" -m fast -w -t 30 stop >/dev/null ||
			pg_ctl -D "$test_server_dir/data" -m immediate -w stop >/dev/null
	fi
	exit "$status"
}

start_test_server() {
	test_server_dir=$1
	bindir=$(pg_config --bindir)
	export PATH="$bindir:$PATH"
	if [ -n "${CLIENT_TEST_PORT:-}" ]; then
		port=$CLIENT_TEST_PORT
		listen_port=${CLIENT_TEST_LISTEN_PORT:-$((port + 1))}
	else
		set -- $(free_ports)
		port=$1
		listen_port=${CLIENT_TEST_LISTEN_PORT:-$2}
	fi
	listen="127.0.0.1:$listen_port"
	rm -rf "$test_server_dir"
	mkdir -p "$test_server_dir"
	initdb -D "$test_server_dir/data" -A trust >/dev/null
	cat >>"$test_server_dir/data/postgresql.conf" <<EOC
port = $port
listen_addresses = ''
unix_socket_directories = '$test_server_dir'
shared_preload_libraries = 'cluster'
max_worker_processes = 16
cluster.worker_listen = '$listen'
EOC
	# stop the server however the script ends (the EXIT trap runs on these
	# signals only through the exit they call)
	trap stop_test_server EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	pg_ctl -D "$test_server_dir/data" -l "$test_server_dir/server.log" -w start >/dev/null
	export PGHOST="$test_server_dir" PGPORT="$port" PGDATABASE=postgres
	psql -XAtq -v ON_ERROR_STOP=1 -c "CREATE EXTENSION cluster" \
		-c "SELECT cluster.alter_coordinator('default', listen => '$listen')" >/dev/null
	wait_until_listening "$listen" "${CLIENT_TEST_LISTEN_TIMEOUT:-60}"
	echo "$0: server on port $port (socket in $test_server_dir), leader listening at $listen"
	export CLUSTER_LISTEN="ws://$listen/"
}
