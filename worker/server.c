/*-------------------------------------------------------------------------
 *
 * server.c
 *	  The libwebsockets side: one context, one vhost (listening, or with
 *	  --connect dialing the leader), the leader connections, and the raw
 *	  file descriptors the loop watches besides.
 *
 * Three lws protocols share the vhost:
 *	cluster-worker			the WebSocket protocol the leader speaks (also
 *							the default protocol, so it sees the HTTP upgrade
 *							and checks the bearer token there)
 *	cluster-worker-signals	the read end of the self-pipe the signal handlers
 *							write to: its only job is to wake lws_service()
 *	cluster-worker-pipe		a pipe the module above watches (a child's
 *							stderr), read as it arrives so that a chatty
 *							command never blocks on a full pipe
 *
 * What happens on a connection or a pipe is reported through the
 * ServerCallbacks given to server_start, the way lws reports to us: the
 * server sits below the modules that act on messages and must not call
 * them by name.  Callbacks never block and never touch the database;
 * answers go through a per-connection queue written on
 * LWS_CALLBACK_SERVER_WRITEABLE.
 *
 *-------------------------------------------------------------------------
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "server.h"
#include "worker.h"

/* PROTOCOL_MAX_MESSAGE: the largest message the leader may send */
#include "../src/wire.h"

#define RX_CHUNK_SIZE	(64 * 1024)		/* what lws hands us at a time */
#define RX_KEEP_SIZE	(1024 * 1024)	/* larger buffers are freed after use */
#define AUTH_HEADER_MAX 4096
#define DIAL_MIN_US		(100 * LWS_US_PER_MS)	/* --connect: first redial */
#define DIAL_MAX_US		LWS_US_PER_SEC	/* a takeover's gap stays about a second */

/* One text message waiting to be written, with lws's headroom in front. */
typedef struct Outgoing
{
	struct Outgoing *next;
	size_t		len;
	unsigned char data[];		/* LWS_PRE bytes, then len bytes of text */
} Outgoing;

/* One leader connection: lws's per-session data of the WebSocket protocol. */
struct Connection
{
	struct lws *wsi;
	struct Connection *next;	/* in connections */
	char		peer[64];
	char	   *rx;				/* the message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	Outgoing   *out_head;
	Outgoing   *out_tail;
	bool		closing;		/* close with 1001 once out_head drains */
};

static ServerCallbacks callbacks;
static struct lws_context *context;
static struct lws_vhost *vhost;
static int	port;				/* the port actually bound */
static Connection *connections;
static bool closing_all = false;
static lws_sorted_usec_list_t wake_sul;
static lws_sorted_usec_list_t dial_sul;
static lws_usec_t dial_backoff;	/* --connect: wait before dialing again */
static char listen_numeric[NI_MAXHOST];

static int	callback_leader(struct lws *wsi, enum lws_callback_reasons reason,
							void *user, void *in, size_t len);
static int	callback_signals(struct lws *wsi, enum lws_callback_reasons reason,
							 void *user, void *in, size_t len);
static int	callback_pipe(struct lws *wsi, enum lws_callback_reasons reason,
						  void *user, void *in, size_t len);

static const struct lws_protocols protocols[] = {
	{
		.name = "cluster-worker",
		.callback = callback_leader,
		.per_session_data_size = sizeof(Connection),
		.rx_buffer_size = RX_CHUNK_SIZE,
	},
	{
		.name = "cluster-worker-signals",
		.callback = callback_signals,
	},
	{
		.name = "cluster-worker-pipe",
		.callback = callback_pipe,
	},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* Compare without leaking, through timing, where the strings differ. */
static bool
secret_matches(const char *given, const char *secret)
{
	size_t		given_len = strlen(given);
	size_t		len = strlen(secret);
	unsigned char diff = (given_len != len);

	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char) secret[i] ^
			(unsigned char) (i < given_len ? given[i] : 0);
	return diff == 0;
}

/* Does the upgrade request carry "Authorization: Bearer <secret>"? */
static bool
authorized(struct lws *wsi)
{
	char		header[AUTH_HEADER_MAX];
	int			len;

	if (worker.opt.secret == NULL)
		return true;
	len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	if (len <= 0 || len >= (int) sizeof(header))
		return false;
	if (lws_hdr_copy(wsi, header, sizeof(header),
					 WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
		return false;
	/* the scheme name is case-insensitive (RFC 7235) */
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	return secret_matches(header + 7, worker.opt.secret);
}

/* Answer an HTTP request with an error status and end it. */
static int
refuse(struct lws *wsi, unsigned int status, const char *why)
{
	char		peer[64];

	lws_get_peer_simple(wsi, peer, sizeof(peer));
	wlog("WARNING", "refused a connection from %s with HTTP %u: %s",
		 peer, status, why);
	if (lws_return_http_status(wsi, status, NULL))
		return -1;
	return 1;
}

/* Log why, set the WebSocket close status, and have lws close. */
static int
close_with(Connection *c, int status, const char *why)
{
	wlog(status == CLOSE_GOING_AWAY ? "LOG" : "WARNING",
		 "closing the connection from %s with status %d: %s",
		 c->peer, status, why);
	lws_close_reason(c->wsi, (enum lws_close_status) status,
					 (unsigned char *) why, strlen(why));
	return -1;
}

static void
append_rx(Connection *c, const char *in, size_t len)
{
	if (c->rx_len + len > c->rx_cap)
	{
		size_t		cap = c->rx_cap ? c->rx_cap : RX_CHUNK_SIZE;

		while (cap < c->rx_len + len)
			cap *= 2;
		c->rx = xrealloc(c->rx, cap);
		c->rx_cap = cap;
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
}

static void
reset_rx(Connection *c)
{
	c->rx_len = 0;
	if (c->rx_cap > RX_KEEP_SIZE)
	{
		free(c->rx);
		c->rx = NULL;
		c->rx_cap = 0;
	}
}

/*
 * One piece of a message.  lws hands over a frame in chunks and a message
 * in one or more frames: reassemble until the last chunk of the final
 * fragment, then decode.
 */
static int
receive_fragment(Connection *c, const char *in, size_t len)
{
	char		why[124];		/* a close reason holds at most 123 bytes */
	int			status;

	if (lws_frame_is_binary(c->wsi))
		return close_with(c, CLOSE_UNSUPPORTED_DATA,
						  "binary messages are not part of the protocol");
	if (len > PROTOCOL_MAX_MESSAGE - c->rx_len)
		return close_with(c, CLOSE_TOO_BIG, "message larger than 16 MiB");
	append_rx(c, in, len);
	if (!lws_is_final_fragment(c->wsi) ||
		lws_remaining_packet_payload(c->wsi) > 0)
		return 0;

	status = callbacks.message(c, c->rx, c->rx_len, why, sizeof(why));
	reset_rx(c);
	if (status != 0)
		return close_with(c, status, why);
	return 0;
}

/* Write the oldest queued message; once drained, close if asked to. */
static int
write_next(Connection *c)
{
	Outgoing   *o = c->out_head;
	int			n;

	if (o == NULL)
		return c->closing ?
			close_with(c, CLOSE_GOING_AWAY, "worker is shutting down") : 0;

	c->out_head = o->next;
	if (c->out_head == NULL)
		c->out_tail = NULL;
	n = lws_write(c->wsi, o->data + LWS_PRE, o->len, LWS_WRITE_TEXT);
	if (n < (int) o->len)
	{
		wlog("WARNING", "could not write to %s", c->peer);
		free(o);
		return -1;
	}
	free(o);
	if (c->out_head != NULL || c->closing)
		lws_callback_on_writable(c->wsi);
	return 0;
}

static void
connection_opened(Connection *c, struct lws *wsi)
{
	memset(c, 0, sizeof(*c));
	c->wsi = wsi;
	lws_get_peer_simple(wsi, c->peer, sizeof(c->peer));
	c->next = connections;
	connections = c;
	wlog("LOG", "leader connected from %s", c->peer);
	if (closing_all)
	{
		c->closing = true;
		lws_callback_on_writable(wsi);
	}
}

static void
connection_closed(Connection *c)
{
	Connection **p;

	for (p = &connections; *p != NULL; p = &(*p)->next)
	{
		if (*p == c)
		{
			*p = c->next;
			break;
		}
	}
	callbacks.closed(c);
	while (c->out_head != NULL)
	{
		Outgoing   *o = c->out_head;

		c->out_head = o->next;
		free(o);
	}
	free(c->rx);
	wlog("LOG", "connection from %s closed", c->peer);
}

static void
log_peer_close(Connection *c, const unsigned char *in, size_t len)
{
	if (len < 2)
	{
		wlog("LOG", "leader at %s closes the connection without a status",
			 c->peer);
		return;
	}
	wlog("LOG", "leader at %s closes the connection with status %d%s%.*s",
		 c->peer, (in[0] << 8) | in[1], len > 2 ? ": " : "",
		 (int) (len - 2), (const char *) in + 2);
}

static void dial_leader(lws_sorted_usec_list_t *sul);

/* --connect: dial again after the backoff, unless shutting down */
static void
schedule_dial(void)
{
	if (closing_all)
		return;
	dial_backoff = dial_backoff == 0 ? DIAL_MIN_US :
		(dial_backoff * 2 > DIAL_MAX_US ? DIAL_MAX_US : dial_backoff * 2);
	lws_sul_schedule(context, 0, &dial_sul, dial_leader, dial_backoff);
}

/* --connect: present the token on the upgrade */
static int
append_token(struct lws *wsi, unsigned char **p, size_t len)
{
	char		value[AUTH_HEADER_MAX];

	snprintf(value, sizeof(value), "Bearer %s", worker.opt.secret);
	return lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
										(unsigned char *) value, strlen(value),
										p, *p + len) ? -1 : 0;
}

static int
callback_leader(struct lws *wsi, enum lws_callback_reasons reason,
				void *user, void *in, size_t len)
{
	Connection *c = (Connection *) user;

	switch (reason)
	{
		/* --connect: we dial the leader */
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			return append_token(wsi, (unsigned char **) in, len);
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			dial_backoff = 0;
			connection_opened(c, wsi);
			return 0;
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			wlog("WARNING", "could not connect to the leader at %s: %s",
				 worker.opt.connect_url, in ? (const char *) in : "unknown error");
			schedule_dial();
			return 0;
		case LWS_CALLBACK_CLIENT_RECEIVE:
			return receive_fragment(c, (const char *) in, len);
		case LWS_CALLBACK_CLIENT_WRITEABLE:
			return write_next(c);
		case LWS_CALLBACK_CLIENT_CLOSED:
			connection_closed(c);
			schedule_dial();
			return 0;
		/* --listen: the leader dials us */
		case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
			if (closing_all)
				return refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
							  "worker is shutting down");
			if (!authorized(wsi))
				return refuse(wsi, HTTP_STATUS_UNAUTHORIZED,
							  "missing or wrong bearer token");
			return 0;
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			/* checked above already; this guards every other path */
			return authorized(wsi) ? 0 : 1;
		case LWS_CALLBACK_HTTP:
			/* a plain HTTP request: there is nothing to serve */
			if (lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
									   "this is a WebSocket endpoint") ||
				lws_http_transaction_completed(wsi))
				return -1;
			return 0;
		case LWS_CALLBACK_ESTABLISHED:
			connection_opened(c, wsi);
			return 0;
		case LWS_CALLBACK_RECEIVE:
			return receive_fragment(c, (const char *) in, len);
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return write_next(c);
		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			log_peer_close(c, (const unsigned char *) in, len);
			return 0;
		case LWS_CALLBACK_CLOSED:
			connection_closed(c);
			return 0;
		default:
			return 0;
	}
}

/* Drain the self-pipe; the main loop looks at what the handlers noted. */
static int
callback_signals(struct lws *wsi, enum lws_callback_reasons reason,
				 void *user, void *in, size_t len)
{
	char		buf[64];

	(void) user;
	(void) in;
	(void) len;
	if (reason == LWS_CALLBACK_RAW_RX_FILE)
	{
		while (read(lws_get_socket_fd(wsi), buf, sizeof(buf)) > 0)
			;
	}
	return 0;
}

/* A watched pipe; the opaque pointer is the watcher's, NULL once unwatched. */
static int
callback_pipe(struct lws *wsi, enum lws_callback_reasons reason,
			  void *user, void *in, size_t len)
{
	void	   *opaque = lws_get_opaque_user_data(wsi);

	(void) user;
	(void) in;
	(void) len;
	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			return callbacks.pipe_readable(opaque, lws_get_socket_fd(wsi));
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			if (opaque != NULL)
				callbacks.pipe_closed(opaque);
			return 0;
		default:
			return 0;
	}
}

static void
lws_log_line(int level, const char *line)
{
	int			len = (int) strlen(line);

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	wlog(level == LLL_ERR ? "ERROR" : "WARNING", "libwebsockets: %.*s",
		 len, line);
}

/*
 * Turn --listen's host into what lws binds: lws takes an interface name or
 * a numeric address, and binds an IPv4 address only with IPv6 disabled.
 * Names resolve to their first IPv4 address if they have one.
 */
static bool
set_listen_address(struct lws_context_creation_info *info)
{
	const char *host = worker.opt.listen_host;
	struct addrinfo hints;
	struct addrinfo *res;
	int			rc;

	if (host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "::") == 0)
		return true;			/* every address, IPv4 and IPv6 */
	if (strcmp(host, "0.0.0.0") == 0)
	{
		info->options |= LWS_SERVER_OPTION_DISABLE_IPV6;
		return true;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_INET;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0)
	{
		hints.ai_family = AF_UNSPEC;
		rc = getaddrinfo(host, NULL, &hints, &res);
	}
	if (rc != 0)
	{
		wlog("ERROR", "could not resolve listen host \"%s\": %s",
			 host, gai_strerror(rc));
		return false;
	}
	rc = getnameinfo(res->ai_addr, res->ai_addrlen, listen_numeric,
					 sizeof(listen_numeric), NULL, 0, NI_NUMERICHOST);
	if (res->ai_family == AF_INET)
		info->options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	freeaddrinfo(res);
	if (rc != 0)
	{
		wlog("ERROR", "could not use listen host \"%s\": %s",
			 host, gai_strerror(rc));
		return false;
	}
	info->iface = listen_numeric;
	return true;
}

/* Have lws watch fd (a pipe end) for the given raw protocol. */
static struct lws *
adopt_fd(int fd, const char *protocol, void *opaque)
{
	lws_adopt_desc_t desc;

	memset(&desc, 0, sizeof(desc));
	desc.vh = vhost;
	desc.type = LWS_ADOPT_RAW_FILE_DESC;
	desc.fd.filefd = fd;
	desc.vh_prot_name = protocol;
	desc.opaque = opaque;
	return lws_adopt_descriptor_vhost_via_info(&desc);
}

/*
 * Create the context and the listening vhost, and watch wake_fd, the read
 * end of the self-pipe that the signal handlers write to.  cb is copied.
 */
bool
server_start(const ServerCallbacks *cb, int wake_fd)
{
	struct lws_context_creation_info info;
	bool		tls = worker.opt.tls_cert != NULL;

	callbacks = *cb;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (tls || worker.opt.connect_url)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	context = lws_create_context(&info);
	if (context == NULL)
	{
		wlog("ERROR", "could not create the libwebsockets context");
		return false;
	}

	memset(&info, 0, sizeof(info));
	info.vhost_name = "default";
	info.port = worker.opt.listen_port;
	info.protocols = protocols;
	if (tls)
	{
		/* lws looks for the flag on the vhost too */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = worker.opt.tls_cert;
		info.ssl_private_key_filepath = worker.opt.tls_key;
	}
	if (worker.opt.connect_url)
	{
		/* no listening socket: the vhost holds the client and the pipes */
		info.port = CONTEXT_PORT_NO_LISTEN;
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = worker.opt.ca_file;
		vhost = lws_create_vhost(context, &info);
	}
	else if (set_listen_address(&info))
		vhost = lws_create_vhost(context, &info);
	if (vhost == NULL)
	{
		wlog("ERROR", "could not listen on %s:%d%s",
			 worker.opt.listen_host, worker.opt.listen_port,
			 tls ? " with TLS" : "");
		server_stop();
		return false;
	}
	port = lws_get_vhost_listen_port(vhost);
	if (worker.opt.connect_url)
		dial_leader(&dial_sul);

	if (adopt_fd(wake_fd, "cluster-worker-signals", NULL) == NULL)
	{
		wlog("ERROR", "could not watch the signal pipe");
		server_stop();
		return false;
	}
	return true;
}

/* --connect: open a connection to the leader; failures dial again */
static void
dial_leader(lws_sorted_usec_list_t *sul)
{
	struct lws_client_connect_info info;
	char		uri[2048];
	char		path[2048];
	const char *prot,
			   *host,
			   *rest;
	int			port_num;

	(void) sul;
	if (closing_all)
		return;
	snprintf(uri, sizeof(uri), "%s", worker.opt.connect_url);
	if (lws_parse_uri(uri, &prot, &host, &port_num, &rest))
	{
		wlog("WARNING", "could not parse --connect \"%s\"", worker.opt.connect_url);
		schedule_dial();
		return;
	}
	snprintf(path, sizeof(path), "/%s", rest);
	memset(&info, 0, sizeof(info));
	info.context = context;
	info.vhost = vhost;
	info.address = host;
	info.host = host;
	info.origin = host;
	info.port = port_num;
	info.path = path;
	info.ssl_connection = strcmp(prot, "wss") == 0 ? LCCSCF_USE_SSL : 0;
	info.local_protocol_name = "cluster-worker";
	if (lws_client_connect_via_info(&info) == NULL)
	{
		wlog("WARNING", "could not start a connection to %s", worker.opt.connect_url);
		schedule_dial();
	}
}

void
server_stop(void)
{
	if (context != NULL)
		lws_context_destroy(context);
	context = NULL;
	vhost = NULL;
}

/* The port actually bound: --listen's, or the kernel's choice for 0. */
int
server_port(void)
{
	return port;
}

/*
 * Serve what is ready: connections, watched pipes, the self-pipe.  Returns
 * after one batch of events, or when server_wake_after says.
 */
void
server_service(void)
{
	lws_service(context, 0);
}

/* How c is named in the log: the peer's address. */
const char *
server_peer(const Connection *c)
{
	return c->peer;
}

/* Queue a text message for c and ask lws for a write slot; text is copied. */
void
server_send(Connection *c, const char *text, size_t len)
{
	Outgoing   *o;

	o = xmalloc(sizeof(Outgoing) + LWS_PRE + len);
	o->next = NULL;
	o->len = len;
	memcpy(o->data + LWS_PRE, text, len);

	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	lws_callback_on_writable(c->wsi);
}

/* Close every connection with 1001 once its queued answers are out. */
void
server_close_all(void)
{
	closing_all = true;
	for (Connection *c = connections; c != NULL; c = c->next)
	{
		c->closing = true;
		lws_callback_on_writable(c->wsi);
	}
}

bool
server_no_connections(void)
{
	return connections == NULL;
}

static void
wake_up(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	lws_cancel_service(context);
}

/*
 * Make lws_service() return within us microseconds.  lws 4.1.6 ignores
 * lws_service()'s timeout argument, so a scheduled callback that cancels
 * the wait stands in for it.
 */
void
server_wake_after(lws_usec_t us)
{
	lws_sul_schedule(context, 0, &wake_sul, wake_up, us);
}

/*
 * Have lws watch fd, the read end of a pipe, and report it through the
 * pipe callbacks with opaque.  Returns the handle to unwatch
 * it with; NULL if lws would not take fd, which then stays the caller's
 * to close.  Otherwise lws closes it.
 */
struct lws *
server_watch_pipe(int fd, void *opaque)
{
	return adopt_fd(fd, "cluster-worker-pipe", opaque);
}

/*
 * Stop reporting the pipe to its watcher, and have lws close it soon:
 * until then, what arrives is handed to pipe_readable with a NULL opaque,
 * to be discarded.
 */
void
server_unwatch_pipe(struct lws *watched)
{
	lws_set_opaque_user_data(watched, NULL);
	lws_set_timeout(watched, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}
