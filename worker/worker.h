/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The shared state of cluster-worker and the interfaces of its modules.
 *
 * cluster-worker is single-threaded: one libwebsockets service loop in
 * main.c drives everything.  lws callbacks (server.c) only queue work or
 * answer at once; child processes (delivery.c) report through SIGCHLD and
 * a self-pipe that lws watches; libpq calls (registry.c) run between two
 * lws_service() calls, never inside a callback.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_H
#define CLUSTER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>
#include <libwebsockets.h>

/* PROTOCOL_VERSION, PROTOCOL_MAX_MESSAGE, PROTOCOL_MAX_ERROR: the leader's */
#include "../src/wire.h"

/*
 * The exit status once the registration is gone for good: the handler was
 * dropped, the extension is not installed, or our right was revoked.  A
 * supervisor should not restart the worker on it (systemd:
 * RestartPreventExitStatus=3).
 */
#define EXIT_REGISTRATION_GONE	3

/* WebSocket close status codes (RFC 6455) */
#define CLOSE_GOING_AWAY		1001
#define CLOSE_UNSUPPORTED_DATA	1003
#define CLOSE_INVALID_PAYLOAD	1007
#define CLOSE_TOO_BIG			1009

typedef struct Options
{
	const char *handler;
	const char *listen_host;	/* as given: NULL or "" means any address */
	int			listen_port;	/* 0: let the kernel choose */
	const char *advertise;		/* NULL: derived from --listen */
	const char *secret;			/* malloc'd; NULL: no Authorization required */
	int			capacity;		/* deliveries run at once */
	const char *conninfo;		/* NULL: libpq's PG* environment */
	int			heartbeat_secs;
	const char *exec_command;	/* NULL: --print */
	bool		per_event;		/* --exec runs once per event, never a batch */
	const char *tls_cert;
	const char *tls_key;
} Options;

/* One text message waiting to be written, with lws's headroom in front. */
typedef struct Outgoing
{
	struct Outgoing *next;
	size_t		len;
	unsigned char data[];		/* LWS_PRE bytes, then len bytes of text */
} Outgoing;

/* One leader connection: lws's per-session data of the WebSocket protocol. */
typedef struct Connection
{
	struct lws *wsi;
	struct Connection *next;	/* in worker.connections */
	char		peer[64];
	char	   *rx;				/* the message being reassembled */
	size_t		rx_len;
	size_t		rx_cap;
	Outgoing   *out_head;
	Outgoing   *out_tail;
	bool		closing;		/* close with 1001 once out_head drains */
} Connection;

/*
 * One events message in --exec mode, from acceptance to its answer.  Its
 * command runs on the whole batch, or (--per-event, or after the batch
 * failed) on each event alone, one run after another in the same slot.
 */
typedef struct Delivery
{
	struct Delivery *next;		/* in worker.running or worker.queued */
	char	   *id;
	Connection *conn;			/* NULL once the leader has gone */
	json_t	   *events;			/* until answered */
	bool		one_by_one;		/* runs are of single events */
	size_t		current;		/* one_by_one: the event running or next */
	json_t	   *done;			/* one_by_one: ids of the events that passed */
	json_t	   *failed;			/* one_by_one: [{eventId, error}] */
	char	   *error;			/* set: fail the whole delivery with this */
	bool		finished;		/* nothing left to run: answer it */
	pid_t		pid;			/* 0 until started */
	struct lws *stderr_wsi;		/* the child's stderr, adopted by lws */
	size_t		err_len;
	char		err[PROTOCOL_MAX_ERROR];	/* what the leader keeps of it */
} Delivery;

typedef struct Worker
{
	Options		opt;
	struct lws_context *context;
	struct lws_vhost *vhost;
	int			port;			/* the port actually bound */
	char	   *address;		/* what we register */
	Connection *connections;
	Delivery   *running;
	int			n_running;
	Delivery   *queued;			/* FIFO, waiting for a free slot */
	int			n_queued;
	bool		shutting_down;	/* refuse new deliveries */
	bool		forced;			/* second signal: kill the children */
	bool		gone;			/* registration gone for good: exit 3 */
	int			signal_pipe[2]; /* written by signal handlers */
} Worker;

extern Worker worker;

/* main.c */
extern void wlog(const char *level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void *xmalloc(size_t size);
extern char *xstrdup(const char *s);

/* server.c */
extern bool server_start(void);
extern void server_stop(void);
extern void server_send(Connection *c, json_t *msg);
extern void server_close_all(void);
extern bool server_no_connections(void);
extern void server_wake_after(lws_usec_t us);
extern struct lws *server_adopt_fd(int fd, const char *protocol,
								   void *opaque);

/* protocol.c */

/* The types of leader messages; any other is logged and ignored. */
typedef enum LeaderType
{
	LEADER_UNTYPED,				/* no "type" string */
	LEADER_EVENTS,
	LEADER_PING,
	LEADER_PONG,
	LEADER_HELLO,
	LEADER_UNKNOWN
} LeaderType;

/*
 * One leader message as protocol_parse decodes it.  The strings and json_t
 * pointers are borrowed from json (or, for the hello fields, from the
 * buffers below: don't copy a LeaderMessage); protocol_parse_free releases
 * it.  Fields of another type than the message's are NULL.
 */
typedef struct LeaderMessage
{
	json_t	   *json;			/* the message, a JSON object */
	LeaderType	type;
	const char *type_name;		/* NULL: LEADER_UNTYPED */
	bool		lossy;			/* integers beyond 64 bits decoded as reals */
	/* events */
	const char *delivery_id;	/* NULL: none, not a string, or empty */
	json_t	   *events;			/* NULL: none, or not an array */
	/* hello, as text for the log */
	const char *handler;		/* NULL: none, or not a string */
	const char *leader;
	const char *fence;
	const char *version;
	bool		other_protocol; /* an integer protocol, not ours */
	char		leader_buf[64];
	char		fence_buf[32];
	char		version_buf[32];
} LeaderMessage;

extern int	protocol_parse(const char *text, size_t len, LeaderMessage *out,
						   char *why, size_t whylen);
extern void protocol_parse_free(LeaderMessage *m);
extern json_t *protocol_event_id(json_t *event);
extern int	protocol_receive(Connection *c, const char *text, size_t len,
							 char *why, size_t whylen);
extern void protocol_ack(Connection *c, const char *delivery_id);
extern void protocol_fail(Connection *c, const char *delivery_id,
						  const char *error);
extern void protocol_ack_failed(Connection *c, const char *delivery_id,
								json_t *done, json_t *failed);

/* delivery.c */
extern void delivery_receive(Connection *c, const char *id, json_t *events);
extern void delivery_reap(void);
extern void delivery_connection_gone(Connection *c);
extern int	delivery_read_stderr(Delivery *d, int fd);
extern void delivery_kill_all(void);
extern bool delivery_none_in_flight(void);

/* registry.c */
typedef enum Registration
{
	REGISTERED,
	NOT_REGISTERED,				/* for now: try again at the next heartbeat */
	REGISTRATION_GONE			/* for good: see EXIT_REGISTRATION_GONE */
} Registration;

extern Registration registry_register(void);
extern bool registry_heartbeat(void);
extern void registry_unregister(void);

#endif							/* CLUSTER_WORKER_H */
