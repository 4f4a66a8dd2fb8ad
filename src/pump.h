/*-------------------------------------------------------------------------
 *
 * pump.h
 *	  The event reader: a pump's committed events in (txid, id) order.
 *
 * Only events of finished transactions are read: txid below the xmin of
 * the reading statement's snapshot.  An event whose transaction commits
 * after a later id was read therefore sorts after everything read so far
 * and is never skipped; an aborted event is never visible.  A transaction
 * still open delays the events committed after it began (pump_blocked
 * tells), it never loses them.  All functions run inside a transaction
 * with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_PUMP_H
#define CLUSTER_PUMP_H

#include "executor/spi.h"

#include "tracker.h"

typedef struct Pump
{
	int32		id;
	char		name[NAMEDATALEN];
	bool		builtin;		/* cluster.events of stream "name" */
	bool		has_created_at;
	char	   *retention;		/* interval, as text */
	SPIPlanPtr	read_plan;
	SPIPlanPtr	blocked_plan;
	SPIPlanPtr	delete_plan;
} Pump;

extern void pump_prepare(Pump *pump, const char *source,
						 const char *id_col, const char *txid_col,
						 const char *payload_col, const char *key_col,
						 const char *headers_col, const char *created_at_col);
extern void pump_release(Pump *pump);
extern int	pump_read(Pump *pump, Tracker *tracker, int limit);
extern bool pump_blocked(Pump *pump, EventPos after);
extern uint64 pump_delete_passed(Pump *pump, EventPos upto, int limit);

#endif							/* CLUSTER_PUMP_H */
