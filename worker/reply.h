/*-------------------------------------------------------------------------
 *
 * reply.h
 *	  The worker's answers to a leader: encoded by protocol.c, queued on
 *	  the connection by server.c.
 *
 * Contract.  Each function sends one answer to c and returns at once; the
 * answer is written when lws allows.  A delivery's answer may be for a
 * NULL c, the leader having gone while the delivery ran: it is dropped and
 * the log says so (the leader sends the delivery again).  An answer that
 * can't be encoded is logged and lost the same way.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_REPLY_H
#define CLUSTER_WORKER_REPLY_H

#include <jansson.h>

#include "server.h"

extern void reply_pong(Connection *c);
extern void reply_ack(Connection *c, const char *delivery_id);
extern void reply_fail(Connection *c, const char *delivery_id,
					   const char *error);
extern void reply_ack_failed(Connection *c, const char *delivery_id,
							 json_t *done, json_t *failed);

#endif							/* CLUSTER_WORKER_REPLY_H */
