# sourced by the benchmarks: a throwaway instance in $dir on $port
# (set dir and port first); stopped when the shell exits.
bindir=$(pg_config --bindir)
export PATH="$bindir:$PATH"
rm -rf "$dir"
mkdir -p "$dir"
initdb -D "$dir/data" -A trust >/dev/null
cat >>"$dir/data/postgresql.conf" <<EOC
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'cluster'
cluster.database = 'postgres'
max_worker_processes = 32
# the conditions the targets were set in (issue 10): publishers do not
# wait for the WAL flush, so a figure is the extension's, not the disk's
synchronous_commit = off
${extra_conf:-}
EOC
pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
trap 'pg_ctl -D "$dir/data" -m fast -w stop >/dev/null' EXIT
psql() { command psql -X -h "$dir" -p "$port" -d postgres -v ON_ERROR_STOP=1 "$@"; }
# figure NAME VALUE: keep a figure for bench/charts, in the run's figures.tsv
figure() { printf '%s\t%s\n' "$1" "$2" >>"$(dirname "$dir")/figures.tsv"; }
