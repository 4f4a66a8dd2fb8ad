/*-------------------------------------------------------------------------
 *
 * pump.h
 *	  A pump's source: its committed events in (txid, id) order.
 *
 * Events are read by snapshot steps (position.h): a read takes the current
 * snapshot as a step's target and hands out the events it shows that the
 * step's previous snapshot did not.  Every row a statement sees is of a
 * transaction visible in its snapshot, so no committed event is ever
 * skipped and an aborted one is never seen; an open transaction holds
 * back nothing but its own events, which come with the first step after
 * it commits.  A step larger than a read is read in several against the
 * same target.
 *
 * This is the one module that knows a source's shape (its column mapping)
 * and the one that touches it.  A user table is read, counted and deleted
 * from as the pump's owner in a security-restricted operation (see
 * restricted.h), so the owner's rights are checked at every use; the
 * built-in cluster.events is the extension's own, and its retention runs as
 * the engine.  All functions run inside a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_PUMP_H
#define CLUSTER_PUMP_H

#include "datatype/timestamp.h"
#include "executor/spi.h"

#include "tracker.h"

typedef struct Pump
{
	int32		id;
	char		name[NAMEDATALEN];
	Oid			owner;
	Oid			source;			/* InvalidOid: cluster.events of stream "name" */
	char	   *what;			/* "cluster pump \"name\"", for messages */
	char	   *retention;		/* interval, as text */
	/* the statements' pieces, quoted */
	char	   *from;
	char	   *txid;
	char	   *id_col;
	char	   *created_at;		/* NULL: no created_at column */
	/* the event's fields as expressions over "t" ("NULL" where unmapped) */
	char	   *key;
	char	   *payload;
	char	   *headers;
	char	   *created_at_value;
	bool		deletable;		/* a plain table, or cluster.events */
	SPIPlanPtr	read_plan;
	SPIPlanPtr	delete_plan;
	bool		delete_denied;	/* warned once that the owner may not delete */
} Pump;

extern Pump *pump_load(int32 pump_id, MemoryContext cxt);
extern void pump_prepare(Pump *pump);
extern void pump_release(Pump *pump);
extern int	pump_read(Pump *pump, Tracker *tracker, int limit, bool *pending);
extern void pump_restore(Pump *pump, Tracker *tracker, const Position *read);
extern uint64 pump_delete_passed(Pump *pump, Datum cursors, int limit);
extern void pump_lag(Pump *pump, const Position *after, int64 *events, double *seconds);
extern Position pump_position_before(Pump *pump, TimestampTz at);

#endif							/* CLUSTER_PUMP_H */
