/*-------------------------------------------------------------------------
 *
 * protocol.h
 *	  The wire protocol's codec: decode what a worker sends, encode what
 *	  the leader sends.  The only module that knows the messages' fields.
 *
 * Workers are untrusted: protocol_decode() accepts any bytes and either
 * fills a WorkerMessage or says why the message can't be trusted.  It
 * uses PostgreSQL's own JSON parser (common/jsonapi), so it builds into
 * the server and, with FRONTEND defined, into the fuzz target.  A state
 * patch is returned as the raw JSON text of its array, for the server to
 * check and apply as jsonb.  Everything is allocated with palloc: free it
 * with protocol_free(), or with the memory context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_PROTOCOL_H
#define CLUSTER_PROTOCOL_H

#include "wire.h"

typedef enum WorkerMessageType
{
	WORKER_ACK,
	WORKER_FAIL,
	WORKER_PING,
	WORKER_PONG,
	WORKER_UNKNOWN				/* a type this leader does not know: ignore */
} WorkerMessageType;

typedef struct WorkerMessage
{
	WorkerMessageType type;
	char	   *type_name;		/* as sent */
	char	   *delivery_id;	/* ack, fail: required */
	bool		has_event_ids;	/* absent: the whole delivery */
	int			n_event_ids;
	int64	   *event_ids;
	int			n_failed;		/* ack: events that failed, with their errors */
	int64	   *failed_ids;
	char	  **failed_errors;	/* NULL where the worker gave none */
	char	   *patch;			/* ack: raw JSON array, or NULL */
	char	   *error;			/* fail: optional */
	bool		has_fence;
	int64		fence;
} WorkerMessage;

extern bool protocol_decode(const char *data, int len, WorkerMessage *msg,
							char **why);
extern void protocol_free(WorkerMessage *msg);

#ifndef FRONTEND
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "event.h"

/* What the leader sends, appended to buf. */
extern void protocol_encode_hello(StringInfo buf, const char *leader,
								  int64 fence, const char *handler);
extern void protocol_encode_events(StringInfo buf, const char *delivery_id,
								   int64 fence, const char *stream,
								   Event **events, int *attempts, int n);
extern void protocol_encode_ping(StringInfo buf);
/* Events as jsonb: a batch for a SQL function, one for a dead letter. */
extern Jsonb *protocol_event_batch(const char *stream, Event **events,
								   int *attempts, int n);
extern Jsonb *protocol_event_jsonb(const char *stream, const Event *ev,
								   int attempt);
extern void protocol_event_from_jsonb(Jsonb *wire, int64 event_id, Event *ev);
extern void protocol_encode_pong(StringInfo buf);
#endif

#endif							/* CLUSTER_PROTOCOL_H */
