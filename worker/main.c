/*-------------------------------------------------------------------------
 *
 * main.c
 *	  cluster-worker: the reference worker of the "cluster" extension.
 *
 * Contract.  cluster-worker serves one handler.  It listens for WebSocket
 * connections (ws://, or wss:// with --tls-cert/--tls-key), registers its
 * address over its own libpq connection with
 * cluster.register_worker(handler, address, secret, capacity), and calls
 * cluster.worker_heartbeat(id) every --heartbeat seconds, registering
 * again when that returns false.  Should that registration fail because
 * the handler, the extension or our right to serve the handler is gone,
 * the worker stops as on SIGTERM (without unregistering, and without
 * heartbeats) and exits with status 3.  The leader dials it, presenting
 * "Authorization: Bearer <secret>" when a secret was registered (else the
 * upgrade is refused with HTTP 401; the secret comes from --secret-file,
 * --secret or CLUSTER_WORKER_SECRET), and sends JSON text messages:
 *
 *	hello	logged
 *	events	a delivery: run it, then answer {"type":"ack","deliveryId":...},
 *			{"type":"ack","deliveryId":...,"failed":[{"eventId":...,
 *			"error":...},...]} or {"type":"fail","deliveryId":...,"error":...}
 *	ping	answered with {"type":"pong"}
 *	other	logged and ignored
 *
 * With --connect URL the worker dials the leader instead (a coordinator
 * that listens), presenting the worker token of --token-file or
 * CLUSTER_WORKER_TOKEN as "Authorization: Bearer"; nothing is registered,
 * there is no database connection, and after a close or a refusal it dials
 * again after 100 ms, doubling to 1 s (server.c).
 *
 * Invalid JSON closes the connection with status 1007, a message over
 * 16 MiB with 1009.  Up to --capacity deliveries run at once, across all
 * connections; a few more wait for a free slot, beyond that they fail.
 * With --exec each delivery is one "/bin/sh -c COMMAND" whose stdin holds
 * the delivery's events as JSON lines: exit status 0 acks, anything else
 * fails with the command's stderr.  A batch of several events that fails
 * runs again once per event (always so with --per-event), and the ack
 * lists in "failed" the events whose own run failed.  With --print the
 * events are written to stdout and acked at once.
 *
 * SIGTERM or SIGINT: new deliveries fail with "worker is shutting down",
 * those in flight finish and are answered, then the worker unregisters,
 * closes its connections with 1001 and exits 0.  A second signal kills the
 * running commands (their deliveries fail) and the exit status is 1.
 *
 * Structure.  cluster-worker is single-threaded: one libwebsockets service
 * loop, here, drives everything.  lws callbacks (server.c) only queue work
 * or answer at once; child processes (delivery.c) report through SIGCHLD
 * and a self-pipe that lws watches; libpq calls (registry.c) run between
 * two lws_service() calls, never inside a callback.  Each module calls
 * only those below it; server.c reports up through the callbacks that
 * main() hands it:
 *
 *	main.c		options, signals, the loop, the shutdown
 *	dispatch.c	acts on each leader message
 *	delivery.c	runs deliveries, answers them
 *	reply.c		sends an answer: encoded (protocol.c), queued (server.c)
 *	registry.c	the registration in the database
 *	server.c	the WebSocket server and the watched pipes, on lws
 *	protocol.c	the wire format, on jansson
 *	worker.c	the settings and the shared state
 *	alloc.c		allocation that does not fail
 *	log.c		the log
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "delivery.h"
#include "dispatch.h"
#include "log.h"
#include "registry.h"
#include "server.h"
#include "worker.h"

/*
 * The exit status once the registration is gone for good: the handler was
 * dropped, the extension is not installed, or our right was revoked.  A
 * supervisor should not restart the worker on it (systemd:
 * RestartPreventExitStatus=3).
 */
#define EXIT_REGISTRATION_GONE	3

#define DEFAULT_CAPACITY		4
#define DEFAULT_HEARTBEAT_SECS	5
#define CLOSE_WAIT_US			(5 * LWS_US_PER_SEC)
#define MAX_SECRET_LEN			1024	/* bytes: cluster.register_worker's limit */
#define SECRET_ENV				"CLUSTER_WORKER_SECRET"
#define TOKEN_ENV				"CLUSTER_WORKER_TOKEN"

static volatile sig_atomic_t got_sigchld = 0;
static volatile sig_atomic_t shutdown_requests = 0;
static int	signal_pipe[2];		/* written by signal handlers */
static bool gone = false;		/* registration gone for good: exit 3 */

/*
 * What the server reports, and who hears it.  Wired here, at the top, so
 * that server.c need not know the modules above it.
 */
static const ServerCallbacks server_callbacks = {
	.message = dispatch_message,
	.closed = delivery_connection_gone,
	.pipe_readable = delivery_stderr_readable,
	.pipe_closed = delivery_stderr_closed,
};

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: %s --handler NAME --listen HOST:PORT (--exec COMMAND | --print) [OPTION]...\n"
			"       %s --connect URL --token-file FILE (--exec COMMAND | --print) [OPTION]...\n"
			"\n"
			"Process the events of one handler of the \"cluster\" PostgreSQL extension:\n"
			"register this worker's WebSocket address in the database, accept the leader's\n"
			"connections, run each delivered batch and answer it with ack or fail.\n"
			"\n"
			"Options:\n"
			"  --handler NAME       handler to register for (required)\n"
			"  --listen HOST:PORT   address to listen on (required); HOST is a name, an\n"
			"                       IPv4 address, [IPv6 address], or empty or * for all;\n"
			"                       PORT 0 takes a free port\n"
			"  --advertise URL      address to register, as the leader reaches it\n"
			"                       (default ws://HOST:PORT/, wss:// with TLS; for a\n"
			"                       wildcard HOST, this machine's host name)\n"
			"  --secret-file FILE   require \"Authorization: Bearer S\" on the WebSocket\n"
			"                       upgrade (else HTTP 401), S being FILE's content less\n"
			"                       one trailing newline; registered for the leader\n"
			"  --secret S           the same with S given here, where other local users\n"
			"                       can read it (ps, /proc): prefer --secret-file or\n"
			"                       CLUSTER_WORKER_SECRET\n"
			"  --capacity N         deliveries processed at once (default %d); registered\n"
			"  --db CONNINFO        libpq connection string or URI for the registration\n"
			"                       (default: the PG* environment variables)\n"
			"  --heartbeat SECONDS  seconds between heartbeats (default %d)\n"
			"  --exec COMMAND       per delivery, run /bin/sh -c COMMAND with the events on\n"
			"                       stdin as JSON lines; its stdout goes to this stdout;\n"
			"                       exit status 0 acks, any other fails with its stderr;\n"
			"                       a batch of several events that fails runs again once\n"
			"                       per event, one after another, and a single ack lists\n"
			"                       the events whose own run failed, with their stderr\n"
			"  --per-event          with --exec, always run COMMAND once per event (never\n"
			"                       on a batch) and answer with that ack\n"
			"  --print              write each event to stdout as a JSON line, ack at once\n"
			"  --tls-cert FILE      serve wss:// with this PEM certificate (with --tls-key)\n"
			"  --tls-key FILE       the PEM private key of --tls-cert\n"
			"  --connect URL        dial the leader instead of listening: ws://HOST:PORT/ or\n"
			"                       wss://HOST:PORT/, a coordinator's listen endpoint;\n"
			"                       no registration and no database connection; after a\n"
			"                       close or a refusal, dial again after 100 ms, doubling\n"
			"                       to 1 s\n"
			"  --token-file FILE    with --connect: the worker token\n"
			"                       (cluster.issue_worker_token), FILE's content less one\n"
			"                       trailing newline, presented as \"Authorization: Bearer\"\n"
			"  --ca-file FILE       with a wss:// --connect: PEM CAs to verify the leader\n"
			"                       by (default: the system's)\n"
			"  -h, --help           show this help and exit\n"
			"\n"
			"Environment:\n"
			"  CLUSTER_WORKER_SECRET\n"
			"                       the secret, when neither --secret nor --secret-file is\n"
			"                       given; removed from the environment of the commands\n"
			"  CLUSTER_WORKER_TOKEN the token, with --connect and no --token-file; removed\n"
			"                       from the environment of the commands too\n"
			"  PGHOST, PGUSER...    libpq's, for the registration; keep the password in\n"
			"                       PGPASSFILE (default ~/.pgpass), not in --db\n"
			"\n"
			"A secret is at most %d bytes.  A secret file should be readable by its owner\n"
			"only: a warning says when it is not.\n"
			"\n"
			"SIGTERM or SIGINT: refuse new deliveries, finish those in flight, unregister\n"
			"and exit 0.  A second signal kills the running commands first (exit 1).\n"
			"\n"
			"Exit status:\n"
			"  0  stopped by a signal\n"
			"  1  an error: could not listen or register at startup, or a second signal\n"
			"  2  bad usage\n"
			"  %d  the registration is gone for good: registering again, after a heartbeat\n"
			"     found it lapsed, failed because the handler no longer exists, the\n"
			"     cluster extension is not installed, or permission was denied (the\n"
			"     handler's owner ran cluster.revoke_worker); the worker finishes its\n"
			"     deliveries in flight, closes its connections and exits.  Don't restart\n"
			"     it on this status.  Other failures (the database can't be reached, a\n"
			"     timeout) are retried at the next heartbeat.\n",
			progname, progname, DEFAULT_CAPACITY, DEFAULT_HEARTBEAT_SECS, MAX_SECRET_LEN,
			EXIT_REGISTRATION_GONE);
}

/* A command line error: say what is wrong and where to look. */
static void
bad_usage(const char *fmt,...)
__attribute__((format(printf, 1, 2), noreturn));

static void
bad_usage(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", progname);
	exit(2);
}

static int
parse_int(const char *arg, const char *option, int min, int max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max)
	{
		bad_usage("invalid value \"%s\" for %s (%d..%d)",
				  arg, option, min, max);
	}
	return (int) v;
}

/*
 * HOST:PORT, where HOST may be empty, "*", a name, an IPv4 address or an
 * IPv6 address in brackets.
 */
static void
parse_listen(const char *arg, Options *opt)
{
	const char *colon = strrchr(arg, ':');
	char	   *host;

	if (colon == NULL)
		bad_usage("--listen must be HOST:PORT, not \"%s\"", arg);
	opt->listen_port = parse_int(colon + 1, "--listen port", 0, 65535);
	host = xmalloc(colon - arg + 1);
	memcpy(host, arg, colon - arg);
	host[colon - arg] = '\0';
	if (host[0] == '[')
	{
		size_t		len = strlen(host);

		if (len < 2 || host[len - 1] != ']')
			bad_usage("invalid IPv6 address in --listen \"%s\"", arg);
		memmove(host, host + 1, len - 2);
		host[len - 2] = '\0';
	}
	opt->listen_host = host;
}

/*
 * A secret must fit the database's limit and be one line: it travels in an
 * HTTP header, which a line break would end.  source names where it came
 * from, for the message.
 */
static void
check_secret(const char *secret, size_t len, const char *source)
{
	if (len > MAX_SECRET_LEN)
		bad_usage("secret in %s is longer than %d bytes",
				  source, MAX_SECRET_LEN);
	if (memchr(secret, '\0', len) != NULL)
		bad_usage("secret in %s contains a NUL byte", source);
	if (memchr(secret, '\n', len) != NULL || memchr(secret, '\r', len) != NULL)
		bad_usage("secret in %s contains a line break", source);
}

/*
 * Like ssh and libpq's .pgpass, but only a warning: container runtimes
 * often mount secrets 0644 where no one else can reach them.  Pipes and
 * devices (--secret-file <(pass show ...)) are not checked.
 */
static void
warn_if_others_can_read(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		(st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		wlog("WARNING", "secret file \"%s\" has group or world access; permissions should be u=rw (0600) or less",
			 path);
}

/*
 * --secret-file: the file's content, less one trailing LF or CRLF (what
 * "echo S >FILE" and editors leave).  A file that holds no usable secret is
 * an invalid option value: exit 2, before anything starts.
 */
static char *
read_secret_file(const char *path)
{
	char		buf[MAX_SECRET_LEN + 3];	/* CRLF, then a byte too many */
	char		source[PATH_MAX + 2];
	size_t		len = 0;
	int			fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		bad_usage("could not open secret file \"%s\": %s", path, strerror(errno));
	while (len < sizeof(buf))
	{
		ssize_t		n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			bad_usage("could not read secret file \"%s\": %s", path, strerror(errno));
		if (n == 0)
			break;
		len += n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len -= (len > 1 && buf[len - 2] == '\r') ? 2 : 1;
	if (len == 0)
		bad_usage("secret file \"%s\" is empty", path);
	snprintf(source, sizeof(source), "\"%s\"", path);
	check_secret(buf, len, source);
	warn_if_others_can_read(fd, path);
	close(fd);
	buf[len] = '\0';
	return xstrdup(buf);
}

/*
 * Take CLUSTER_WORKER_SECRET out of the environment, whichever secret is
 * used, so that the --exec commands never inherit it.
 */
static char *
take_env(const char *name)
{
	const char *value = getenv(name);
	char	   *secret;

	if (value == NULL)
		return NULL;
	secret = xstrdup(value);
	unsetenv(name);
	return secret;
}

/*
 * The secret: from --secret-file or --secret (not both), else from
 * CLUSTER_WORKER_SECRET; a copy of our own, or NULL for none.  An empty one
 * from --secret or the environment means none, as --secret "" always did.
 */
static void
resolve_secret(Options *opt, const char *arg, const char *file)
{
	char	   *token_env = take_env(TOKEN_ENV);
	char	   *env = take_env(SECRET_ENV);
	char	   *secret = NULL;

	/* dialing in, the token is what we present; listening, the secret */
	if (opt->connect_url)
	{
		free(env);
		env = token_env;
	}
	else
		free(token_env);

	if (arg != NULL && file != NULL)
		bad_usage("give at most one of --secret and --secret-file");
	if (file != NULL)
		secret = read_secret_file(file);
	else if (arg != NULL)
	{
		check_secret(arg, strlen(arg), "--secret");
		secret = xstrdup(arg);
	}
	else if (env != NULL)
	{
		check_secret(env, strlen(env), SECRET_ENV);
		secret = env;
		env = NULL;
	}
	free(env);
	if (secret != NULL && secret[0] == '\0')
	{
		free(secret);
		secret = NULL;
	}
	opt->secret = secret;
}

static void
parse_options(int argc, char **argv, Options *opt)
{
	static const struct option longopts[] = {
		{"handler", required_argument, NULL, 'H'},
		{"listen", required_argument, NULL, 'l'},
		{"advertise", required_argument, NULL, 'a'},
		{"secret", required_argument, NULL, 's'},
		{"secret-file", required_argument, NULL, 'S'},
		{"capacity", required_argument, NULL, 'c'},
		{"db", required_argument, NULL, 'd'},
		{"heartbeat", required_argument, NULL, 'b'},
		{"exec", required_argument, NULL, 'e'},
		{"print", no_argument, NULL, 'p'},
		{"per-event", no_argument, NULL, 'P'},
		{"tls-cert", required_argument, NULL, 'C'},
		{"tls-key", required_argument, NULL, 'K'},
		{"connect", required_argument, NULL, 'n'},
		{"token-file", required_argument, NULL, 'T'},
		{"ca-file", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	bool		print = false;
	const char *secret = NULL;
	const char *secret_file = NULL;
	const char *token_file = NULL;
	int			c;

	memset(opt, 0, sizeof(*opt));
	opt->capacity = DEFAULT_CAPACITY;
	opt->heartbeat_secs = DEFAULT_HEARTBEAT_SECS;
	opt->listen_port = -1;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'H':
				opt->handler = optarg;
				break;
			case 'l':
				parse_listen(optarg, opt);
				break;
			case 'a':
				opt->advertise = optarg;
				break;
			case 's':
				secret = optarg;
				break;
			case 'S':
				secret_file = optarg;
				break;
			case 'c':
				opt->capacity = parse_int(optarg, "--capacity", 1, 100000);
				break;
			case 'd':
				opt->conninfo = optarg;
				break;
			case 'b':
				opt->heartbeat_secs = parse_int(optarg, "--heartbeat",
												1, 86400);
				break;
			case 'e':
				opt->exec_command = optarg;
				break;
			case 'p':
				print = true;
				break;
			case 'P':
				opt->per_event = true;
				break;
			case 'C':
				opt->tls_cert = optarg;
				break;
			case 'K':
				opt->tls_key = optarg;
				break;
			case 'n':
				opt->connect_url = optarg;
				break;
			case 'T':
				token_file = optarg;
				break;
			case 'A':
				opt->ca_file = optarg;
				break;
			case 'h':
				usage(stdout);
				exit(0);
			default:
				fprintf(stderr, "Try \"%s --help\" for more information.\n",
						progname);
				exit(2);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument \"%s\"", argv[optind]);
	if (opt->connect_url)
	{
		if (opt->listen_port >= 0 || opt->advertise || opt->tls_cert || opt->tls_key)
			bad_usage("--connect goes without --listen, --advertise, --tls-cert and --tls-key");
		if (secret || secret_file)
			bad_usage("with --connect, give the token with --token-file or CLUSTER_WORKER_TOKEN");
		if (strncmp(opt->connect_url, "ws://", 5) != 0 && strncmp(opt->connect_url, "wss://", 6) != 0)
			bad_usage("--connect must be a ws:// or wss:// URL, not \"%s\"", opt->connect_url);
		secret_file = token_file;
	}
	else
	{
		if (token_file || opt->ca_file)
			bad_usage("--token-file and --ca-file go with --connect");
		if (opt->handler == NULL || opt->handler[0] == '\0')
			bad_usage("--handler is required");
		if (opt->listen_port < 0)
			bad_usage("--listen is required");
	}
	if ((opt->exec_command != NULL) == print)
		bad_usage("give exactly one of --exec and --print");
	if (opt->per_event && opt->exec_command == NULL)
		bad_usage("--per-event goes with --exec");
	if ((opt->tls_cert != NULL) != (opt->tls_key != NULL))
		bad_usage("--tls-cert and --tls-key go together");
	resolve_secret(opt, secret, secret_file);
	if (opt->connect_url && opt->secret == NULL)
		bad_usage("--connect needs a token: --token-file FILE or CLUSTER_WORKER_TOKEN");
}

static bool
is_wildcard(const char *host)
{
	return host[0] == '\0' || strcmp(host, "*") == 0 ||
		strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

/*
 * The address the leader dials: --advertise, or built from --listen and the
 * port actually bound (so that port 0 works too).
 */
static char *
build_address(void)
{
	const char *host = worker.opt.listen_host;
	const char *scheme = worker.opt.tls_cert ? "wss" : "ws";
	char		hostname[256];
	char		buf[512];

	if (worker.opt.advertise)
		return xstrdup(worker.opt.advertise);
	if (is_wildcard(host))
	{
		if (gethostname(hostname, sizeof(hostname)) != 0)
			strcpy(hostname, "localhost");
		hostname[sizeof(hostname) - 1] = '\0';
		host = hostname;
		wlog("WARNING", "listening on all addresses: registering host name \"%s\"; use --advertise to choose",
			 host);
	}
	if (strchr(host, ':'))
		snprintf(buf, sizeof(buf), "%s://[%s]:%d/", scheme, host,
				 server_port());
	else
		snprintf(buf, sizeof(buf), "%s://%s:%d/", scheme, host,
				 server_port());
	return xstrdup(buf);
}

/*
 * Signal handlers only record the signal and wake the lws loop through the
 * self-pipe; everything else happens in the main loop.
 */
static void
signal_handler(int signo)
{
	int			save_errno = errno;
	char		byte = (char) signo;
	ssize_t		rc;

	if (signo == SIGCHLD)
		got_sigchld = 1;
	else
		shutdown_requests++;
	/* a full pipe already holds a pending wakeup: nothing lost */
	rc = write(signal_pipe[1], &byte, 1);
	(void) rc;
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		wlog("FATAL", "could not create a pipe: %s", strerror(errno));
		exit(1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = signal_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGCHLD);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* a leader that hangs up mid-write must not kill us */
	signal(SIGPIPE, SIG_IGN);
}

/* Children inherit fds 0-2: make sure they are open, if only on /dev/null. */
static void
ensure_std_fds(void)
{
	int			fd;

	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

typedef enum Phase
{
	PHASE_RUNNING,				/* normal service */
	PHASE_DRAINING,				/* signalled: finishing deliveries */
	PHASE_CLOSING,				/* unregistered: closing connections */
	PHASE_DONE
} Phase;

/* Refuse new deliveries; those in flight finish. */
static void
begin_draining(Phase *phase, const char *why)
{
	*phase = PHASE_DRAINING;
	worker.shutting_down = true;
	wlog("LOG", "%s: finishing %d running and %d queued deliveries",
		 why, delivery_running(), delivery_queued());
}

/* React to SIGTERM/SIGINT counted by the handler. */
static void
check_shutdown_requests(Phase *phase)
{
	int			requests = shutdown_requests;

	if (requests >= 1 && *phase == PHASE_RUNNING)
		begin_draining(phase, "shutting down");
	if (requests >= 2 && !worker.forced)
	{
		worker.forced = true;
		wlog("LOG", "second signal: killing %d running commands",
			 delivery_running());
		delivery_kill_all();
	}
}

/* Move the shutdown along; returns the time by which to look again. */
static lws_usec_t
advance_shutdown(Phase *phase, lws_usec_t now)
{
	static lws_usec_t close_deadline;

	if (*phase == PHASE_DRAINING && delivery_none_in_flight())
	{
		registry_unregister();
		server_close_all();
		close_deadline = now + CLOSE_WAIT_US;
		*phase = PHASE_CLOSING;
	}
	if (*phase == PHASE_CLOSING &&
		(server_no_connections() || now >= close_deadline))
		*phase = PHASE_DONE;
	return *phase == PHASE_CLOSING ? close_deadline : 0;
}

/*
 * A heartbeat; once the registration is gone for good, stop as on SIGTERM
 * but beat no more (and unregister nothing: there is nothing left).
 */
static void
heartbeat(Phase *phase)
{
	if (registry_heartbeat())
		return;
	gone = true;
	if (*phase == PHASE_RUNNING)
		begin_draining(phase, "stopping, to exit with status 3");
}

/*
 * The service loop.  lws_service() returns after each batch of socket
 * events; a self-pipe byte (signals) or a scheduled wakeup (heartbeat,
 * close deadline) makes sure it returns when the loop has work of its own.
 */
static void
run(void)
{
	lws_usec_t	interval = (lws_usec_t) worker.opt.heartbeat_secs * LWS_US_PER_SEC;
	lws_usec_t	next_heartbeat = lws_now_usecs() + interval;
	Phase		phase = PHASE_RUNNING;

	while (phase != PHASE_DONE)
	{
		lws_usec_t	now;
		lws_usec_t	wake;

		server_service();

		if (got_sigchld)
		{
			got_sigchld = 0;
			delivery_reap();
		}
		check_shutdown_requests(&phase);

		now = lws_now_usecs();
		if (now >= next_heartbeat && phase <= PHASE_DRAINING && !gone &&
			worker.opt.connect_url == NULL)
		{
			heartbeat(&phase);
			now = lws_now_usecs();
			next_heartbeat = now + interval;
		}
		wake = advance_shutdown(&phase, now);
		if (wake == 0 || wake > next_heartbeat)
			wake = next_heartbeat;
		server_wake_after(wake > now ? wake - now : 0);
	}
}

int
main(int argc, char **argv)
{
	parse_options(argc, argv, &worker.opt);
	ensure_std_fds();
	setup_signals();

	if (!server_start(&server_callbacks, signal_pipe[0]))
		return 1;
	if (worker.opt.connect_url)
		worker.address = xstrdup(worker.opt.connect_url);
	else
	{
		worker.address = build_address();
		/* at startup every failure is an error: the handler may be on its way */
		if (registry_register() != REGISTERED)
		{
			registry_unregister();	/* closes the database connection */
			server_stop();
			return 1;
		}
	}
	wlog("LOG", "serving handler \"%s\" %s %s (%s mode, capacity %d)",
		 worker.opt.handler ? worker.opt.handler : "of the token",
		 worker.opt.connect_url ? "dialing in to" : "at", worker.address,
		 worker.opt.per_event ? "per-event exec" :
		 worker.opt.exec_command ? "exec" : "print", worker.opt.capacity);

	run();

	server_stop();
	wlog("LOG", "stopped");
	free(worker.address);
	free((char *) worker.opt.listen_host);
	free((char *) worker.opt.secret);
	close(signal_pipe[1]);
	/* "gone" first: a supervisor must not restart us */
	return gone ? EXIT_REGISTRATION_GONE : worker.forced ? 1 : 0;
}
