/*-------------------------------------------------------------------------
 *
 * position.c
 *	  Snapshots of transaction ids, and positions made of them.
 *
 * Snapshots are made, read and printed by PostgreSQL's own pg_snapshot
 * functions; this file only reads their fields.  txsnap_parse checks once
 * per parse that the layout it reads is the one the type's functions see,
 * and that the snapshot is one this server could have taken.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

#include "position.h"

#define TXSNAP_SIZE(n) (offsetof(TxSnapshot, xip) + sizeof(FullTransactionId) * (n))

int
eventpos_cmp(EventPos a, EventPos b)
{
	if (a.txid != b.txid)
		return a.txid < b.txid ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

TxSnapshot *
txsnap_copy(const TxSnapshot *s, MemoryContext cxt)
{
	TxSnapshot *copy = MemoryContextAlloc(cxt, VARSIZE(s));

	memcpy(copy, s, VARSIZE(s));
	return copy;
}

/*
 * The snapshot of the active one, as pg_current_snapshot() gives it to the
 * statements run with it: every row they see is of a transaction visible
 * in it.
 */
TxSnapshot *
txsnap_current(MemoryContext cxt)
{
	LOCAL_FCINFO(fcinfo, 0);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	d = pg_current_snapshot(fcinfo);
	return txsnap_copy((TxSnapshot *) DatumGetPointer(d), cxt);
}

TxSnapshot *
txsnap_parse(const char *text, MemoryContext cxt)
{
	Datum		d = DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(text));
	TxSnapshot *s = (TxSnapshot *) DatumGetPointer(d);
	FullTransactionId xmax = DatumGetFullTransactionId(DirectFunctionCall1(pg_snapshot_xmax, d));

	if (!FullTransactionIdEquals(xmax, s->xmax) ||
		VARSIZE(s) != TXSNAP_SIZE(s->nxip))
		elog(ERROR, "pg_snapshot is not laid out as this build of cluster expects");

	/*
	 * No snapshot of this server lists more: a longer one was written by
	 * hand (an owner may update its handler's row), and every step from it
	 * would cost as much.
	 */
	if (s->nxip > (uint32) GetMaxSnapshotXidCount())
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a cursor's snapshot lists %u transactions in progress, more than this server can have (%d)",
						s->nxip, GetMaxSnapshotXidCount()),
				 errhint("Move the handler's cursor with cluster.reset_handler().")));
	return txsnap_copy(s, cxt);
}

char *
txsnap_text(const TxSnapshot *s)
{
	return DatumGetCString(DirectFunctionCall1(pg_snapshot_out, PointerGetDatum(s)));
}

bool
txsnap_visible(const TxSnapshot *s, uint64 txid)
{
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
											FullTransactionIdGetDatum(FullTransactionIdFromU64(txid)),
											PointerGetDatum(s)));
}

bool
txsnap_equal(const TxSnapshot *a, const TxSnapshot *b)
{
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

uint64
txsnap_xmin(const TxSnapshot *s)
{
	return U64FromFullTransactionId(s->xmin);
}

uint64
txsnap_xmax(const TxSnapshot *s)
{
	return U64FromFullTransactionId(s->xmax);
}

/*
 * The transactions of "s" below "below": what it shows of them, and
 * nothing from "below" on.  pg_snapshot's xmin is at least 1.
 */
TxSnapshot *
txsnap_cap(const TxSnapshot *s, uint64 below)
{
	uint64		xmax = Max(Min(txsnap_xmax(s), below), 1);
	uint64		xmin = Min(txsnap_xmin(s), xmax);
	uint32		n = 0;
	TxSnapshot *cap;

	while (n < s->nxip && U64FromFullTransactionId(s->xip[n]) < xmax)
		n++;
	cap = palloc(TXSNAP_SIZE(n));
	SET_VARSIZE(cap, TXSNAP_SIZE(n));
	cap->nxip = n;
	cap->xmin = FullTransactionIdFromU64(Max(xmin, 1));
	cap->xmax = FullTransactionIdFromU64(xmax);
	memcpy(cap->xip, s->xip, sizeof(FullTransactionId) * n);
	return cap;
}

/*
 * The transactions in progress in "prev" that "target" shows committed,
 * from "from" on, as an xid8[]: with the txids from prev's xmax on, the
 * transactions whose events a step from prev to target hands out.
 */
Datum
txsnap_committed_since(const TxSnapshot *prev, const TxSnapshot *target,
					   uint64 from)
{
	Datum	   *xids = palloc(sizeof(Datum) * Max(prev->nxip, 1));
	int			n = 0;

	for (uint32 i = 0; i < prev->nxip; i++)
	{
		uint64		xid = U64FromFullTransactionId(prev->xip[i]);

		if (xid >= from && txsnap_visible(target, xid))
			xids[n++] = FullTransactionIdGetDatum(prev->xip[i]);
	}
	return PointerGetDatum(construct_array(xids, n, XID8OID, sizeof(FullTransactionId),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The position in the POSITION_COLUMNS of an SPI row from column "col";
 * false when it has no snapshot (a cursor written by hand).
 */
bool
position_from_row(HeapTuple tup, TupleDesc desc, int col, Position *p)
{
	char	   *snapshot = SPI_getvalue(tup, desc, col);
	char	   *step = SPI_getvalue(tup, desc, col + 1);

	if (snapshot == NULL)
		return false;
	p->snapshot = txsnap_parse(snapshot, CurrentMemoryContext);
	p->step = NULL;
	p->after = EVENTPOS_START;
	if (step != NULL)
	{
		p->step = txsnap_parse(step, CurrentMemoryContext);
		p->after.txid = strtou64(SPI_getvalue(tup, desc, col + 2), NULL, 10);
		p->after.id = pg_strtoint64(SPI_getvalue(tup, desc, col + 3));
	}
	return true;
}

/* {"snapshot": "...", "step": "...", "after": ["txid", "id"]} */
void
position_json(StringInfo out, const Position *p)
{
	appendStringInfo(out, "{\"snapshot\": \"%s\"", txsnap_text(p->snapshot));
	if (p->step)
		appendStringInfo(out, ", \"step\": \"%s\", \"after\": [\"" UINT64_FORMAT "\", \""
						 INT64_FORMAT "\"]", txsnap_text(p->step), p->after.txid, p->after.id);
	appendStringInfoChar(out, '}');
}

/*
 * The events at or before "pos" in (txid, id) order that "now" shows
 * committed: those of transactions below pos's, and pos's own up to it.
 * Transactions still in progress in "now" stay ahead, whatever their txid.
 */
Position
position_before(const TxSnapshot *now, EventPos pos)
{
	Position	p;

	p.snapshot = txsnap_cap(now, pos.txid);
	p.step = pos.txid > 0 ? txsnap_cap(now, pos.txid + 1) : NULL;
	p.after = pos;
	return p;
}
