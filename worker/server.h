/*-------------------------------------------------------------------------
 *
 * server.h
 *	  The WebSocket server, on libwebsockets: the leader connections, and
 *	  the pipes the service loop watches besides.
 *
 * Contract.  server_start listens as worker.opt says and takes the
 * callbacks through which the server reports to the module above it,
 * which it never calls by name.  The callbacks run inside server_service
 * (lws_service), so they must not block.  A Connection is the server's:
 * others hold the pointer, from its first message to its closed callback,
 * and ask server_peer for its name.  server_send queues text for it, to
 * be written when lws allows.  The server knows nothing of JSON or of
 * deliveries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_SERVER_H
#define CLUSTER_WORKER_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

/* WebSocket close status codes (RFC 6455) */
#define CLOSE_GOING_AWAY		1001
#define CLOSE_UNSUPPORTED_DATA	1003
#define CLOSE_INVALID_PAYLOAD	1007
#define CLOSE_TOO_BIG			1009

/* One leader connection; opaque outside server.c. */
typedef struct Connection Connection;

typedef struct ServerCallbacks
{
	/*
	 * A complete text message from c, not NUL-terminated.  Returns 0, or
	 * the status to close c with, the reason (at most 123 bytes of UTF-8)
	 * written to why.
	 */
	int			(*message) (Connection *c, const char *text, size_t len,
							char *why, size_t whylen);
	/* c has closed: the last word about it, c is freed after it */
	void		(*closed) (Connection *c);

	/*
	 * A pipe watched with server_watch_pipe has something to read, or is
	 * at its end: read fd.  opaque is the one given to server_watch_pipe,
	 * NULL once unwatched (read and discard, then).  Returns -1 to have the
	 * pipe closed, else 0.
	 */
	int			(*pipe_readable) (void *opaque, int fd);
	/* the watched pipe is closed; not called once unwatched */
	void		(*pipe_closed) (void *opaque);
} ServerCallbacks;

extern bool server_start(const ServerCallbacks *cb, int wake_fd);
extern void server_stop(void);
extern int	server_port(void);
extern void server_service(void);
extern void server_wake_after(lws_usec_t us);

extern const char *server_peer(const Connection *c);
extern void server_send(Connection *c, const char *text, size_t len);
extern void server_close_all(void);
extern bool server_no_connections(void);

extern struct lws *server_watch_pipe(int fd, void *opaque);
extern void server_unwatch_pipe(struct lws *watched);

#endif							/* CLUSTER_WORKER_SERVER_H */
