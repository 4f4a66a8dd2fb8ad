/*-------------------------------------------------------------------------
 *
 * sql_handler.h
 *	  Run a handler's SQL function on a batch of events.
 *
 * The function gets the batch as one jsonb array of events in the wire
 * form (with "attempt", protocol_event_batch) or as a cluster.event[]
 * (event.c), and runs as the handler's owner, inside a subtransaction: an
 * error rolls back that call alone.  A returned patch is checked and
 * applied to the handler's state in the same subtransaction, so a bad
 * patch fails the batch and the next call sees the state as patched; the
 * round's commit makes it all durable at once.
 * A failed batch is retried event by event to isolate the bad event; with
 * key ordering, events after a failed one of the same key are held back.
 * Dead letters marked for replay go to the function one at a time.  It is
 * the leader's local executor (executor.h): it runs when no worker of the
 * handler is connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_SQL_HANDLER_H
#define CLUSTER_SQL_HANDLER_H

#include "executor.h"

extern const Executor local_executor;

#endif							/* CLUSTER_SQL_HANDLER_H */
