# sourced: the unprivileged user that runs the PostgreSQL test instances
TESTER=${CLUSTER_TESTER:-cluster_tester}

ensure_tester() {
	id -u "$TESTER" >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin "$TESTER"
}
