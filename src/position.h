/*-------------------------------------------------------------------------
 *
 * position.h
 *	  Where a handler stands in its pump: snapshots of transaction ids.
 *
 * A pump reads by snapshot steps, as PgQ's batches do: a step hands out
 * the events whose transaction is visible in the step's target snapshot
 * and was not in the snapshot before it, in (txid, id) order.  No open
 * transaction holds anything back: its events belong to the first step
 * taken after it commits.
 *
 * A Position is a set of events: those visible in "snapshot", and, when
 * "step" is set, those visible in that later snapshot at or before
 * "after" in (txid, id) order (a step read, or done, part of the way).
 * This module alone knows a position's shape, in memory and as the jsonb
 * of a handler's state ({"snapshot": "xmin:xmax:xip", "step": ...,
 * "after": ["txid", "id"]}), and the layout of PostgreSQL's pg_snapshot.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_POSITION_H
#define CLUSTER_POSITION_H

#include "access/htup.h"
#include "access/transam.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

typedef struct EventPos
{
	uint64		txid;
	int64		id;
} EventPos;

/* the first and the last EventPos there can be */
#define EVENTPOS_START ((EventPos) {0, 0})
#define EVENTPOS_END ((EventPos) {PG_UINT64_MAX, PG_INT64_MAX})

/*
 * A pg_snapshot as the type's own functions lay it out (xid8funcs.c keeps
 * the struct to itself): a varlena, xip in ascending order.
 */
typedef struct TxSnapshot
{
	int32		vl_len_;
	uint32		nxip;
	FullTransactionId xmin;
	FullTransactionId xmax;
	FullTransactionId xip[FLEXIBLE_ARRAY_MEMBER];
} TxSnapshot;

typedef struct Position
{
	TxSnapshot *snapshot;
	TxSnapshot *step;			/* NULL: the snapshot alone */
	EventPos	after;
} Position;

extern int	eventpos_cmp(EventPos a, EventPos b);

extern TxSnapshot *txsnap_current(MemoryContext cxt);
extern TxSnapshot *txsnap_parse(const char *text, MemoryContext cxt);
extern TxSnapshot *txsnap_copy(const TxSnapshot *s, MemoryContext cxt);
extern char *txsnap_text(const TxSnapshot *s);
extern bool txsnap_visible(const TxSnapshot *s, uint64 txid);
extern bool txsnap_equal(const TxSnapshot *a, const TxSnapshot *b);
extern uint64 txsnap_xmin(const TxSnapshot *s);
extern uint64 txsnap_xmax(const TxSnapshot *s);
extern TxSnapshot *txsnap_cap(const TxSnapshot *s, uint64 below);
extern Datum txsnap_committed_since(const TxSnapshot *prev, const TxSnapshot *target,
									uint64 from);

/*
 * The position at "key" of a handler's state (h.state), as the four text
 * columns position_from_row reads: snapshot, step, after's txid and id.
 */
#define POSITION_COLUMNS(key) \
	"h.state #>> '{" key ",snapshot}', h.state #>> '{" key ",step}', " \
	"h.state #>> '{" key ",after,0}', h.state #>> '{" key ",after,1}'"

extern bool position_from_row(HeapTuple tup, TupleDesc desc, int col, Position *p);
extern void position_json(StringInfo out, const Position *p);
extern Position position_before(const TxSnapshot *now, EventPos pos);

#endif							/* CLUSTER_POSITION_H */
