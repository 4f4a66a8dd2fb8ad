/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  The WebSocket transport: the leader's client connections to its
 *	  workers, through libwebsockets on a libuv loop the engine owns.
 *
 * The engine waits on its latch, postmaster death and the loop's backend
 * fd at once (transport_wait), then lets libuv run what is ready without
 * blocking: no polling.  lws callbacks never run SQL or raise errors: they
 * only move bytes between the socket and each connection's queues
 * (malloc'd), which the leader drains after the wait (lws's own log lines
 * go to the server log at LOG level).  A connection that fails or
 * closes is dialled again after 1 s, doubling to 30 s.
 *
 * A leader may also listen (transport_listen): a worker that dials in
 * presents a token (tokens.h) in its upgrade request, is refused with
 * HTTP 401 unless it matches, and then becomes a WorkerConn like the
 * others, with the token's id, handler and capacity; it is never dialled.
 * A newer connection with the same token replaces an older one.  A
 * transport listens at one endpoint for its life: to listen anew, the
 * leader stops it and starts another.  The
 * leader learns of dial-ins come and gone through
 * transport_take_dialins_changed() and attaches them to their handlers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_TRANSPORT_H
#define CLUSTER_TRANSPORT_H

#include "datatype/timestamp.h"

#include "wire.h"

typedef struct WireMessage
{
	struct WireMessage *next;
	size_t		len;
	char	   *data;			/* outgoing: after LWS_PRE bytes of headroom */
} WireMessage;

typedef struct WorkerConn
{
	char		id[65];
	int32		handler_id;
	bool		dialed_in;		/* the worker dialed the leader (with a token) */
	char	   *address;		/* dialed in: the worker's IP address */
	char	   *secret;
	int			capacity;
	bool		wanted;			/* still registered */
	struct lws *wsi;
	bool		connected;
	bool		just_connected; /* the leader has yet to say hello */
	bool		just_lost;		/* the leader has yet to take back deliveries */
	bool		closed_by_leader;	/* it was lost after the leader closed it */
	int			backoff_ms;
	TimestampTz next_dial;
	int			close_status;	/* nonzero: close with this status */
	bool		close_sent;		/* the close frame went out: waiting for the worker's */
	char		close_reason[124];
	WireMessage *out_head,
			   *out_tail;
	int			out_count;		/* messages queued to send */
	WireMessage *in_head,
			   *in_tail;
	char	   *rx;				/* the message being received */
	size_t		rx_len;
	size_t		rx_cap;
	/* shown in cluster.workers */
	int64		dials;
	char		last_error[256];	/* what happened to the connection */
	TimestampTz last_error_at;
} WorkerConn;

extern void transport_start(const char *ca_file);
extern void transport_stop(void);
extern bool transport_active(void);
extern WorkerConn *transport_conn(const char *id, int32 handler_id,
								  const char *address, const char *secret,
								  int capacity);
extern void transport_keep(WorkerConn *c, int capacity);
extern void transport_unmark_all(void);
extern void transport_prune(void);
extern int	transport_count(void);
extern WorkerConn *transport_get(int i);
extern long transport_dial(TimestampTz now);
extern void transport_send(WorkerConn *c, const char *data, size_t len);
extern WireMessage *transport_receive(WorkerConn *c);
extern void transport_close(WorkerConn *c, int status, const char *reason);
extern bool transport_take_connected(WorkerConn *c);
extern bool transport_take_lost(WorkerConn *c);
extern void transport_works(WorkerConn *c);
extern void transport_wait(long timeout_ms);
extern void transport_flush(void);
extern bool transport_listen(const char *host, int port, const char *cert_file,
							 const char *key_file);
extern bool transport_take_dialins_changed(void);

#endif							/* CLUSTER_TRANSPORT_H */
