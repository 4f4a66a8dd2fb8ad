/*-------------------------------------------------------------------------
 *
 * sql_handler.h
 *	  Run a handler's SQL function on a batch of events.
 *
 * The function gets the batch as one jsonb array of events in the wire
 * form (with "attempt", protocol_event_batch), runs as the handler's owner, inside a
 * subtransaction: an error rolls back that call alone.  A returned patch
 * is checked and applied to the handler's state in the same
 * subtransaction, so a bad patch fails the batch and the next call sees
 * the state as patched; the round's commit makes it all durable at once.
 * A failed batch is retried event by event to isolate the bad event; with
 * key ordering, events after a failed one of the same key are held back.
 * sql_handler_replay() hands dead letters marked for replay to the
 * function one at a time, when no worker takes them (delivery_replay).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_SQL_HANDLER_H
#define CLUSTER_SQL_HANDLER_H

#include "handler.h"

extern void sql_handler_run(HandlerRun *h, TrackedEvent **batch, int n,
							BatchOutcome *out);
extern bool sql_handler_call(HandlerRun *h, Jsonb **events, int *attempts,
							 int n, char **error);
extern void sql_handler_replay(HandlerRun *h, BatchOutcome *out);

#endif							/* CLUSTER_SQL_HANDLER_H */
