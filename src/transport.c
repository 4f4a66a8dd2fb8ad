/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  WebSocket client connections through libwebsockets and libuv.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include <libwebsockets.h>
#include <uv.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "backoff.h"
#include "tokens.h"
#include "transport.h"

#define DIAL_MIN_MS 1000
#define DIAL_MAX_MS 30000

/*
 * File descriptors.  A listening leader accepts connections from anyone on
 * the network, and each holds a descriptor until its upgrade is answered
 * or lws times it out; the backend's own files (PostgreSQL's file cache,
 * WAL) count against the same limit.  The transport raises the soft limit
 * towards TRANSPORT_MAX_FDS and hangs up at once on a connection whose
 * descriptor comes within FD_RESERVE of the limit: accept() never fails
 * for want of descriptors (lws would log and retry that in a loop), and
 * PostgreSQL keeps room for its files.
 */
#define TRANSPORT_MAX_FDS 4096
#define FD_RESERVE 64

/* lws's own log lines: at most LOG_BURST per LOG_WINDOW_MS, then a count */
#define LOG_BURST 20
#define LOG_WINDOW_MS 60000

static uv_loop_t loop;
static struct lws_context *context = NULL;
static WaitEventSet *wait_set = NULL;
static WorkerConn **conns = NULL;
static int	n_conns = 0;
static int	max_conns = 0;
static struct lws_vhost *listen_vhost = NULL;
static bool dialins_changed = false;

/* A dial-in's token, from its upgrade request until it is established. */
typedef struct DialIn
{
	bool		matched;
	char		id[65];
	int32		handler_id;
	int			capacity;
} DialIn;

/*
 * lws callbacks: bytes in and out, state changes; nothing that can throw.
 */
/* What happened to the connection, for cluster.workers. */
static void
set_error(WorkerConn *c, const char *error)
{
	strlcpy(c->last_error, error, sizeof(c->last_error));
	c->last_error_at = GetCurrentTimestamp();
}

static void set_errorf(WorkerConn *c, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_errorf(WorkerConn *c, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	vsnprintf(c->last_error, sizeof(c->last_error), fmt, args);
	va_end(args);
	c->last_error_at = GetCurrentTimestamp();
}

static void
conn_lost(WorkerConn *c, const char *why)
{
	if (why)
		set_error(c, why);
	if (c->connected)
		c->just_lost = true;
	c->closed_by_leader = (c->close_status != 0);
	c->connected = false;
	c->wsi = NULL;
	c->rx_len = 0;
	if (c->dialed_in)
	{
		/* it dials again, not we; the leader lets it go */
		c->next_dial = DT_NOEND;
		dialins_changed = true;
	}
	else
	{
		c->backoff_ms = backoff_next(c->backoff_ms, DIAL_MIN_MS, DIAL_MAX_MS);
		c->next_dial = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), c->backoff_ms);
	}
	while (c->out_head)
	{
		WireMessage *m = c->out_head;

		c->out_head = m->next;
		free(m);
	}
	c->out_tail = NULL;
	c->out_count = 0;
}

static int
conn_receive(struct lws *wsi, WorkerConn *c, void *in, size_t len)
{
	WireMessage *m;

	/*
	 * Too large: drop the rest of it and close from the writeable
	 * callback, the way every close here goes (closing from inside the
	 * receive path crashed lws 4.1.6 mid-message).
	 */
	if (lws_frame_is_binary(wsi) && c->close_status == 0)
	{
		/* the protocol is JSON text: refuse, and read no further */
		c->close_status = LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE;
		strlcpy(c->close_reason, "binary frames are not part of the protocol",
				sizeof(c->close_reason));
		set_error(c, "the worker sent a binary frame: connection closed");
		lws_callback_on_writable(wsi);
	}
	if (c->close_status || c->rx_len + len > PROTOCOL_MAX_MESSAGE)
	{
		if (c->close_status == 0)
		{
			c->close_status = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
			strlcpy(c->close_reason, "message too large", sizeof(c->close_reason));
			set_error(c, "a message exceeded 16 MB: connection closed");
			lws_callback_on_writable(wsi);
		}
		c->rx_len = 0;
		return 0;
	}
	if (c->rx_len + len + 1 > c->rx_cap)
	{
		size_t		cap = Max(c->rx_cap * 2, c->rx_len + len + 1);
		char	   *rx = realloc(c->rx, Max(cap, 4096));

		if (rx == NULL)
			return -1;
		c->rx = rx;
		c->rx_cap = Max(cap, 4096);
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (!lws_is_final_fragment(wsi))
		return 0;

	m = malloc(sizeof(WireMessage) + c->rx_len + 1);
	if (m == NULL)
		return -1;
	m->next = NULL;
	m->len = c->rx_len;
	m->data = (char *) (m + 1);
	memcpy(m->data, c->rx, c->rx_len);
	m->data[c->rx_len] = '\0';
	if (c->in_tail)
		c->in_tail->next = m;
	else
		c->in_head = m;
	c->in_tail = m;
	c->rx_len = 0;
	return 0;
}

/* lws's own, private, value for a close frame (0x8) in lws_write() */
#define LWS_WRITE_CLOSE_FRAME ((enum lws_write_protocol) 4)

/*
 * Send a close frame with the connection's status and reason.  We write
 * the frame ourselves: lws 4.1.6 drops the one lws_close_reason() prepares
 * when a client callback returns -1, and the worker would see 1006.
 */
static void
write_close(struct lws *wsi, WorkerConn *c)
{
	unsigned char frame[LWS_PRE + 2 + sizeof(c->close_reason)];
	size_t		len = strlen(c->close_reason);

	frame[LWS_PRE] = (c->close_status >> 8) & 0xff;
	frame[LWS_PRE + 1] = c->close_status & 0xff;
	memcpy(frame + LWS_PRE + 2, c->close_reason, len);
	(void) lws_write(wsi, frame + LWS_PRE, 2 + len, LWS_WRITE_CLOSE_FRAME);
}

/*
 * What a connection whose WorkerConn is gone (unregistered, its handler
 * paused or dropped) is closed with.
 */
static WorkerConn replaced = {
	.close_status = LWS_CLOSE_STATUS_GOINGAWAY,
	.close_reason = "a newer connection with the same token replaced this one",
};
static WorkerConn closing = {
	.close_status = LWS_CLOSE_STATUS_GOINGAWAY,
	.close_reason = "the worker is no longer registered, or its token or handler is not valid",
};

static int
conn_writeable(struct lws *wsi, WorkerConn *c)
{
	WireMessage *m = c->out_head;

	/*
	 * Closing: send the close frame, then keep reading (and dropping) until
	 * the worker's close frame or a timeout ends the connection.  Dropping
	 * the socket at once with unread input in it makes the kernel send a
	 * reset, and the worker would lose the close frame: 1006 again.
	 */
	if (c->close_status)
	{
		if (!c->close_sent)
		{
			write_close(wsi, c);
			c->close_sent = true;
			lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
		}
		return 0;
	}
	if (m == NULL)
		return 0;
	if (lws_write(wsi, (unsigned char *) m->data, m->len, LWS_WRITE_TEXT) < (int) m->len)
		return -1;
	c->out_head = m->next;
	if (c->out_head == NULL)
		c->out_tail = NULL;
	c->out_count--;
	free(m);
	if (c->out_head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* The token of an upgrade request's "Authorization: Bearer <token>" */
static const WorkerToken *
bearer_token(struct lws *wsi)
{
	char		header[TOKEN_MAX_LEN + 16];
	int			len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);

	if (len <= 0 || len >= (int) sizeof(header) ||
		lws_hdr_copy(wsi, header, sizeof(header), WSI_TOKEN_HTTP_AUTHORIZATION) < 0 ||
		pg_strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	return tokens_match(header + 7);
}

/*
 * Answer an upgrade request with 401 and end it.  The answer is written
 * here: lws_return_http_status() answers an upgrade request in HTTP/1.0
 * (lws parses the request's version only for plain requests), which
 * WebSocket clients such as Python's websockets can't read, so a worker
 * could not tell a refused token from a broken leader.
 */
static int
refuse_upgrade(struct lws *wsi)
{
	static const char answer[] =
		"HTTP/1.1 401 Unauthorized\r\n"
		"www-authenticate: Bearer\r\n"
		"content-length: 0\r\n"
		"connection: close\r\n\r\n";
	unsigned char buf[LWS_PRE + sizeof(answer)];

	memcpy(buf + LWS_PRE, answer, sizeof(answer) - 1);
	(void) lws_write(wsi, buf + LWS_PRE, sizeof(answer) - 1, LWS_WRITE_HTTP_HEADERS);
	return -1;
}

static WorkerConn *conn_alloc(const char *id, int32 handler_id, const char *address,
							  const char *secret, int capacity);

/*
 * A worker dialed in with a valid token: its connection is the token's
 * WorkerConn from now on.  A connection the token already had is closed
 * and counts as lost (its deliveries go out again).
 */
static int
dialin_established(struct lws *wsi, DialIn *d)
{
	WorkerConn *c = NULL;
	char		peer[64];

	if (d == NULL || !d->matched)
		return -1;
	lws_get_peer_simple(wsi, peer, sizeof(peer));
	for (int i = 0; i < n_conns && c == NULL; i++)
		if (conns[i]->dialed_in && strcmp(conns[i]->id, d->id) == 0)
			c = conns[i];
	if (c == NULL)
	{
		c = conn_alloc(d->id, d->handler_id, peer, NULL, d->capacity);
		if (c == NULL)
			return -1;
		c->dialed_in = true;
		c->next_dial = DT_NOEND;
	}
	else
	{
		char	   *address = strdup(peer);

		if (address == NULL)
			return -1;
		free(c->address);
		c->address = address;
		if (c->wsi)
		{
			lws_set_opaque_user_data(c->wsi, &replaced);
			lws_callback_on_writable(c->wsi);
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
			conn_lost(c, "replaced by a newer connection with the same token");
		}
	}
	c->wsi = wsi;
	c->connected = true;
	c->just_connected = true;
	c->close_status = 0;
	c->close_sent = false;
	c->dials++;
	dialins_changed = true;
	lws_set_opaque_user_data(wsi, c);
	return 0;
}

/* The reasons only a listening leader sees, before a connection has a WorkerConn. */
static int
dialin_callback(struct lws *wsi, enum lws_callback_reasons reason, DialIn *d)
{
	const WorkerToken *token;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
			/* one answer for a wrong, revoked or expired token: 401 */
			return bearer_token(wsi) ? 0 : refuse_upgrade(wsi);
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			token = bearer_token(wsi);
			if (token == NULL || d == NULL)
				return 1;
			d->matched = true;
			strlcpy(d->id, token->id, sizeof(d->id));
			d->handler_id = token->handler_id;
			d->capacity = token->capacity;
			return 0;
		case LWS_CALLBACK_HTTP:
			/* a plain HTTP request: there is nothing to serve */
			if (lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL) ||
				lws_http_transaction_completed(wsi))
				return -1;
			return 0;
		case LWS_CALLBACK_ESTABLISHED:
			return dialin_established(wsi, d);
		default:
			return 0;
	}
}

static int	accept_below = TRANSPORT_MAX_FDS - FD_RESERVE;

static int
transport_callback(struct lws *wsi, enum lws_callback_reasons reason,
				   void *user, void *in, size_t len)
{
	WorkerConn *c;

	/* a new connection to a listening leader, before it is read: room? */
	if (reason == LWS_CALLBACK_FILTER_NETWORK_CONNECTION)
		return (int) (intptr_t) in >= accept_below;
	if (reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE ||
		reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
		reason == LWS_CALLBACK_HTTP || reason == LWS_CALLBACK_ESTABLISHED)
		return dialin_callback(wsi, reason, (DialIn *) user);
	c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
	if (c == NULL)
		return 0;
	if (c == &closing || c == &replaced)
	{
		if (reason != LWS_CALLBACK_CLIENT_WRITEABLE &&
			reason != LWS_CALLBACK_SERVER_WRITEABLE)
			return 0;
		write_close(wsi, c);
		return -1;
	}
	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			if (c->secret)
			{
				unsigned char **p = (unsigned char **) in;
				char		value[1100];

				snprintf(value, sizeof(value), "Bearer %s", c->secret);
				if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
												 (unsigned char *) value, strlen(value),
												 p, *p + len))
					return -1;
			}
			break;
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			c->connected = true;
			c->just_connected = true;
			break;
		case LWS_CALLBACK_CLIENT_RECEIVE:
		case LWS_CALLBACK_RECEIVE:
			return conn_receive(wsi, c, in, len);
		case LWS_CALLBACK_CLIENT_WRITEABLE:
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return conn_writeable(wsi, c);
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			set_errorf(c, "could not connect: %s",
					 in ? (char *) in : "unknown error");
			conn_lost(c, NULL);
			break;
		case LWS_CALLBACK_CLIENT_CLOSED:
		case LWS_CALLBACK_CLOSED:
			conn_lost(c, c->close_status ? NULL : "the worker closed the connection");
			break;
		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"cluster", transport_callback, sizeof(DialIn), 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * lws's own log lines go to the server log, never as errors, and at a
 * bounded rate: some of them (a request with oversized headers, say) are
 * one per request of whoever reaches a listening leader.
 */
static void
transport_log(int level, const char *line)
{
	static TimestampTz window_start = 0;
	static int	logged = 0;
	static int	suppressed = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(window_start, now, LOG_WINDOW_MS))
	{
		if (suppressed > 0)
			ereport(LOG,
					(errmsg_internal("libwebsockets: %d more messages in the last minute were not logged",
									 suppressed)));
		window_start = now;
		logged = suppressed = 0;
	}
	if (logged >= LOG_BURST)
	{
		if (suppressed++ == 0)
			ereport(LOG,
					(errmsg_internal("libwebsockets: further messages in this minute are not logged")));
		return;
	}
	logged++;
	ereport(LOG, (errmsg_internal("libwebsockets: %.*s", (int) strcspn(line, "\n"), line)));
}

/*
 * Raise the soft limit on open files towards TRANSPORT_MAX_FDS (as far as
 * the hard limit allows), and return how many descriptors lws may track.
 */
static unsigned int
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < TRANSPORT_MAX_FDS && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = Min(rl.rlim_max, TRANSPORT_MAX_FDS);
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			(void) getrlimit(RLIMIT_NOFILE, &rl);
	}
	return (unsigned int) Min(rl.rlim_cur, TRANSPORT_MAX_FDS);
}

/*
 * Create the loop and the lws context on first use.  The loop is foreign
 * to lws, so lws installs no signal handlers of its own.
 */
void
transport_start(const char *ca_file)
{
	struct lws_context_creation_info info;
	void	   *foreign_loops[1];

	if (context)
		return;
	lws_set_log_level(LLL_ERR | LLL_WARN, transport_log);
	if (uv_loop_init(&loop) != 0)
		elog(ERROR, "could not create the event loop");
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.fd_limit_per_thread = raise_fd_limit();
	accept_below = (int) info.fd_limit_per_thread - FD_RESERVE;
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	foreign_loops[0] = &loop;
	info.foreign_loops = foreign_loops;
	if (ca_file && ca_file[0])
		info.client_ssl_ca_filepath = ca_file;
	context = lws_create_context(&info);
	if (context == NULL)
		elog(ERROR, "could not create the WebSocket context");

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, uv_backend_fd(&loop), NULL, NULL);
}

bool
transport_active(void)
{
	return context != NULL;
}

static void
conn_free(WorkerConn *c)
{
	WireMessage *m;

	while ((m = transport_receive(c)) != NULL)
		free(m);
	free(c->address);
	free(c->secret);
	free(c->rx);
	free(c);
}

/* Close every connection and forget it: the leader stepped down. */
void
transport_stop(void)
{
	if (context == NULL)
		return;
	for (int i = 0; i < n_conns; i++)
		if (conns[i]->wsi)
			lws_set_opaque_user_data(conns[i]->wsi, NULL);
	lws_context_destroy(context);
	context = NULL;
	listen_vhost = NULL;
	dialins_changed = false;
	/* let the closing handles finish, then the loop is empty */
	while (uv_run(&loop, UV_RUN_NOWAIT))
		;
	uv_loop_close(&loop);
	FreeWaitEventSet(wait_set);
	wait_set = NULL;
	for (int i = 0; i < n_conns; i++)
		conn_free(conns[i]);
	n_conns = 0;
}

/* A new connection in the list; NULL when out of memory (callbacks can't throw). */
static WorkerConn *
conn_alloc(const char *id, int32 handler_id, const char *address,
		   const char *secret, int capacity)
{
	WorkerConn *c;

	if (n_conns == max_conns)
	{
		int			max = Max(16, max_conns * 2);
		WorkerConn **bigger = realloc(conns, sizeof(WorkerConn *) * max);

		if (bigger == NULL)
			return NULL;
		conns = bigger;
		max_conns = max;
	}
	c = calloc(1, sizeof(WorkerConn));
	if (c == NULL)
		return NULL;
	strlcpy(c->id, id, sizeof(c->id));
	c->handler_id = handler_id;
	c->address = strdup(address);
	c->secret = secret ? strdup(secret) : NULL;
	if (c->address == NULL || (secret && c->secret == NULL))
	{
		free(c->address);
		free(c->secret);
		free(c);
		return NULL;
	}
	c->capacity = capacity;
	c->wanted = true;
	c->next_dial = 0;
	conns[n_conns++] = c;
	return c;
}

WorkerConn *
transport_conn(const char *id, int32 handler_id, const char *address,
			   const char *secret, int capacity)
{
	WorkerConn *c;

	for (int i = 0; i < n_conns; i++)
	{
		c = conns[i];
		if (c->dialed_in)
			continue;
		if (strcmp(c->id, id) == 0 && strcmp(c->address, address) == 0 &&
			((c->secret == NULL && secret == NULL) ||
			 (c->secret && secret && strcmp(c->secret, secret) == 0)))
		{
			c->wanted = true;
			c->capacity = capacity;
			return c;
		}
	}
	c = conn_alloc(id, handler_id, address, secret, capacity);
	if (c == NULL)
		elog(ERROR, "out of memory");
	return c;
}

/* A worker that dialed in is still wanted, with its token's capacity. */
void
transport_keep(WorkerConn *c, int capacity)
{
	c->wanted = true;
	c->capacity = capacity;
}

void
transport_unmark_all(void)
{
	for (int i = 0; i < n_conns; i++)
		conns[i]->wanted = false;
}

/* Close and forget the connections whose workers are gone. */
void
transport_prune(void)
{
	int			kept = 0;

	for (int i = 0; i < n_conns; i++)
	{
		WorkerConn *c = conns[i];

		if (c->wanted)
		{
			conns[kept++] = c;
			continue;
		}
		if (c->wsi && c->connected)
		{
			/* a close frame at the next chance; killed if none comes */
			lws_set_opaque_user_data(c->wsi, &closing);
			lws_callback_on_writable(c->wsi);
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
		}
		else if (c->wsi)
		{
			lws_set_opaque_user_data(c->wsi, NULL);
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		}
		conn_free(c);
	}
	n_conns = kept;
}

int
transport_count(void)
{
	return n_conns;
}

WorkerConn *
transport_get(int i)
{
	return conns[i];
}

static void
conn_dial(WorkerConn *c)
{
	struct lws_client_connect_info info;
	char		uri[2100];
	char		path[2100];
	const char *prot,
			   *host,
			   *rest;
	int			port;

	strlcpy(uri, c->address, sizeof(uri));
	if (lws_parse_uri(uri, &prot, &host, &port, &rest))
	{
		set_error(c, "invalid address");
		c->next_dial = DT_NOEND;
		return;
	}
	snprintf(path, sizeof(path), "/%s", rest);
	memset(&info, 0, sizeof(info));
	info.context = context;
	info.address = host;
	info.host = host;
	info.origin = host;
	info.port = port;
	info.path = path;
	info.ssl_connection = strcmp(prot, "wss") == 0 ? LCCSCF_USE_SSL : 0;
	info.protocol = NULL;
	info.local_protocol_name = "cluster";
	info.opaque_user_data = c;
	info.pwsi = &c->wsi;
	c->dials++;
	c->close_status = 0;
	c->close_sent = false;
	c->next_dial = DT_NOEND;
	if (lws_client_connect_via_info(&info) == NULL)
		conn_lost(c, "could not start a connection");
}

/* Dial the connections that are due; returns ms until the next is. */
long
transport_dial(TimestampTz now)
{
	long		wait = -1;

	for (int i = 0; i < n_conns; i++)
	{
		WorkerConn *c = conns[i];

		if (c->wsi || c->connected || c->dialed_in)
			continue;
		if (c->next_dial <= now)
			conn_dial(c);
		if (c->wsi == NULL && c->next_dial != DT_NOEND)
		{
			long		ms = TimestampDifferenceMilliseconds(now, c->next_dial);

			wait = wait < 0 ? ms : Min(wait, ms);
		}
	}
	return wait;
}

void
transport_send(WorkerConn *c, const char *data, size_t len)
{
	WireMessage *m;

	if (!c->connected || c->wsi == NULL)
		return;
	m = malloc(sizeof(WireMessage) + LWS_PRE + len);
	if (m == NULL)
		elog(ERROR, "out of memory");
	m->next = NULL;
	m->len = len;
	m->data = (char *) (m + 1) + LWS_PRE;
	memcpy(m->data, data, len);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_count++;
	lws_callback_on_writable(c->wsi);
}

/* The next message the worker sent, or NULL; the caller frees it. */
WireMessage *
transport_receive(WorkerConn *c)
{
	WireMessage *m = c->in_head;

	if (m)
	{
		c->in_head = m->next;
		if (c->in_head == NULL)
			c->in_tail = NULL;
	}
	return m;
}

/* Close a connection whose worker can't be trusted, with a status. */
void
transport_close(WorkerConn *c, int status, const char *reason)
{
	if (c->wsi == NULL)
		return;
	c->close_status = status;
	strlcpy(c->close_reason, reason, sizeof(c->close_reason));
	set_errorf(c, "closed by the leader (%d): %s",
			 status, reason);
	lws_callback_on_writable(c->wsi);
}

/*
 * Wait for the latch, postmaster death or the network, at most timeout_ms
 * (-1: no limit), then run what the network has ready.
 */
void
transport_wait(long timeout_ms)
{
	WaitEvent	event;
	int			uv_ms;

	if (context == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		return;
	}
	uv_ms = uv_backend_timeout(&loop);
	if (uv_ms >= 0 && (timeout_ms < 0 || uv_ms < timeout_ms))
		timeout_ms = uv_ms;
	(void) WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	uv_run(&loop, UV_RUN_NOWAIT);
}

/*
 * Write what is queued and take in what has arrived, without waiting: a
 * leader that goes on working after a round sends that round's deliveries
 * now, not when it next waits.
 */
void
transport_flush(void)
{
	if (context != NULL)
		uv_run(&loop, UV_RUN_NOWAIT);
}

/*
 * Listen for workers that dial in, at host (an IP literal or a name) and
 * port; with a certificate, TLS only.  False when the port can't be had
 * now (a leader before this one may still hold it): try again later.
 */
bool
transport_listen(const char *host, int port, const char *cert_file,
				 const char *key_file)
{
	struct lws_context_creation_info info;

	/*
	 * Once per transport: lws shares a port among vhosts, and one created
	 * while an earlier one is still being destroyed takes over its socket,
	 * TLS or not.  A leader that must listen anew starts a new transport.
	 */
	if (listen_vhost)
		return true;
	memset(&info, 0, sizeof(info));
	info.vhost_name = "cluster-listen";
	info.port = port;
	info.iface = pg_strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	info.protocols = protocols;
	if (strchr(info.iface, ':') == NULL)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (cert_file && cert_file[0])
	{
		/* lws looks for the flag on the vhost too */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = cert_file;
		info.ssl_private_key_filepath = key_file;
	}
	listen_vhost = lws_create_vhost(context, &info);
	return listen_vhost != NULL;
}

/* Did a worker dial in, or a dialed-in one go, since the last call? */
bool
transport_take_dialins_changed(void)
{
	bool		was = dialins_changed;

	dialins_changed = false;
	return was;
}

/* Did the connection come up since the last call?  (Then say hello.) */
bool
transport_take_connected(WorkerConn *c)
{
	bool		was = c->just_connected;

	c->just_connected = false;
	return was;
}

/* Was the connection lost since the last call?  (Then take back its work.) */
bool
transport_take_lost(WorkerConn *c)
{
	bool		was = c->just_lost;

	c->just_lost = false;
	return was;
}

/* The connection works (a worker answered): its dial backoff starts over. */
void
transport_works(WorkerConn *c)
{
	c->backoff_ms = 0;
}
