/*-------------------------------------------------------------------------
 *
 * pump.h
 *	  A pump's source: its committed events in (txid, id) order.
 *
 * Only events of finished transactions are read: txid below the xmin of
 * the reading statement's snapshot.  An event whose transaction commits
 * after a later id was read therefore sorts after everything read so far
 * and is never skipped; an aborted event is never visible.  A transaction
 * still open delays the events committed after it began (pump_read
 * tells), it never loses them.
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
extern int	pump_read(Pump *pump, Tracker *tracker, int limit, bool *blocked);
extern uint64 pump_delete_passed(Pump *pump, EventPos upto, int limit);
extern void pump_lag(Pump *pump, EventPos after, int64 *events, double *seconds);
extern EventPos pump_position_before(Pump *pump, TimestampTz at);

#endif							/* CLUSTER_PUMP_H */
