/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  Acting on the leader's messages: each one decoded by protocol.c,
 *	  then handed to delivery.c, answered through reply.c, or logged.
 *
 * Contract.  dispatch_message is the server's message callback: it takes
 * one complete text message from c and returns 0, or the WebSocket status
 * to close c with, the reason written to why (1007 for text that is not a
 * JSON object).  hello is logged, ping answered with pong, an events
 * message becomes a delivery (or, malformed, is failed at once), anything
 * else is logged and ignored.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_DISPATCH_H
#define CLUSTER_WORKER_DISPATCH_H

#include <stddef.h>

#include "server.h"

extern int	dispatch_message(Connection *c, const char *text, size_t len,
							 char *why, size_t whylen);

#endif							/* CLUSTER_WORKER_DISPATCH_H */
