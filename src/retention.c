/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Delete events every handler of their pump has passed, once they are
 *	  older than the pump's retention.
 *
 * Small batches, each in its own transaction, so no lock is held long and
 * the leader's other work goes on.  A pump without handlers, or a user
 * table without a created_at column, keeps its events.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/array.h"
#include "utils/xid8.h"

#include "leader.h"
#include "pump.h"
#include "xact.h"

#define RETENTION_BATCH 1000
#define RETENTION_BUDGET_MS 200

/*
 * The snapshots of the cursors of the pump's handlers; false when it has
 * none, or when one has no snapshot (a cursor written by hand): then
 * nothing is known to be passed.
 */
static bool
pump_cursors(Pump *pump, Datum *cursors)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(pump->id)};
	bool		isnull;

	spi_exec_checked("SELECT ARRAY(SELECT (state #>> '{cursor,snapshot}')::pg_catalog.pg_snapshot "
					 "FROM cluster.handler WHERE pump_id = $1), "
					 "EXISTS (SELECT FROM cluster.handler WHERE pump_id = $1 "
					 "        AND state #>> '{cursor,snapshot}' IS NULL)",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (DatumGetBool(spi_getdatum(0, 2, &isnull)))
		return false;
	*cursors = spi_getdatum(0, 1, &isnull);
	return ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(*cursors)),
						  ARR_DIMS(DatumGetArrayTypeP(*cursors))) > 0;
}

static void
retention_pump(Pump *pump, TimestampTz start)
{
	uint64		deleted;

	do
	{
		Datum		cursors;

		worker_xact_begin("cluster: deleting passed events");
		deleted = 0;
		if (pump_cursors(pump, &cursors))
			deleted = pump_delete_passed(pump, cursors, RETENTION_BATCH);
		worker_xact_commit();
	} while (deleted == RETENTION_BATCH &&
			 !TimestampDifferenceExceeds(start, GetCurrentTimestamp(), RETENTION_BUDGET_MS));
}

void
retention_run(Leader *l)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, l->pumps)
	{
		Pump	   *pump = lfirst(lc);

		if (pump->delete_plan == NULL)
			continue;
		PG_TRY();
		{
			retention_pump(pump, start);
		}
		PG_CATCH();
		{
			ErrorData  *edata = worker_xact_recover(cxt);

			ereport(WARNING,
					(errmsg("retention of cluster pump \"%s\" failed: %s",
							pump->name, edata->message)));
			FreeErrorData(edata);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
}
