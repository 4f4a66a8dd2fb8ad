/*-------------------------------------------------------------------------
 *
 * pump.c
 *	  The event reader.
 *
 * The statements are built once per pump from its column mapping and kept
 * as prepared plans.  Events travel in the wire form of the protocol, built
 * by jsonb_build_object from the stored values: the payload is the stored
 * jsonb, never re-encoded by hand.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/xid8.h"

#include "pump.h"
#include "xact.h"

/* $1 xid8, $2 int8: the position after which to read; $3: limit; $4: pump name */
static Oid	read_types[4] = {XID8OID, INT8OID, INT8OID, TEXTOID};

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare pump statement: %s (%s)", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep pump statement");
	return plan;
}

static const char *
col_or_null(const char *col, const char *cast)
{
	return col ? psprintf("t.%s%s", quote_identifier(col), cast) : "NULL";
}

/* Must be called inside a transaction with SPI connected. */
void
pump_prepare(Pump *pump, const char *source, const char *id_col,
			 const char *txid_col, const char *payload_col,
			 const char *key_col, const char *headers_col,
			 const char *created_at_col)
{
	const char *txid = quote_identifier(txid_col);
	const char *id = quote_identifier(id_col);
	const char *stream = pump->builtin ? "t.stream = $4 AND " : "";
	const char *from = pump->builtin ? "cluster.events" : source;
	const char *range = psprintf("%s(t.%s, t.%s) > ($1, $2)", stream, txid, id);
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT t.%s, t.%s::pg_catalog.int8, %s, "
					 "pg_catalog.jsonb_build_object('id', t.%s::pg_catalog.text, 'stream', $4, "
					 "'key', %s, 'payload', t.%s, 'headers', %s, 'createdAt', %s, 'attempt', 1) "
					 "FROM %s t WHERE %s AND t.%s < "
					 "pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) "
					 "ORDER BY t.%s, t.%s LIMIT $3",
					 txid, id, col_or_null(key_col, "::pg_catalog.text"),
					 id, col_or_null(key_col, "::pg_catalog.text"),
					 quote_identifier(payload_col),
					 col_or_null(headers_col, ""), col_or_null(created_at_col, ""),
					 from, range, txid, txid, id);
	pump->read_plan = prepare_kept(sql.data, 4, read_types);

	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT EXISTS (SELECT FROM %s t WHERE %s AND t.%s >= "
					 "pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()))",
					 from, range, txid);
	pump->blocked_plan = prepare_kept(sql.data, 4, read_types);

	pump->delete_plan = NULL;
	if (pump->has_created_at)
	{
		Oid			delete_types[5] = {XID8OID, INT8OID, INT8OID, TEXTOID, INTERVALOID};

		resetStringInfo(&sql);
		appendStringInfo(&sql,
						 "DELETE FROM %s d WHERE d.ctid = ANY (ARRAY("
						 "SELECT t.ctid FROM %s t WHERE %s(t.%s, t.%s) <= ($1, $2) "
						 "AND t.%s < pg_catalog.now() - $5 LIMIT $3))",
						 from, from, stream, txid, id,
						 quote_identifier(created_at_col));
		pump->delete_plan = prepare_kept(sql.data, 5, delete_types);
	}
	pfree(sql.data);
}

void
pump_release(Pump *pump)
{
	if (pump->read_plan)
		SPI_freeplan(pump->read_plan);
	if (pump->blocked_plan)
		SPI_freeplan(pump->blocked_plan);
	if (pump->delete_plan)
		SPI_freeplan(pump->delete_plan);
	pump->read_plan = pump->blocked_plan = pump->delete_plan = NULL;
}

static void
position_args(Pump *pump, EventPos pos, int64 limit, Datum *values)
{
	values[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(pos.txid));
	values[1] = Int64GetDatum(pos.id);
	values[2] = Int64GetDatum(limit);
	values[3] = CStringGetTextDatum(pump->name);
}

/* Read up to "limit" events after the tracker's read position into it. */
int
pump_read(Pump *pump, Tracker *tracker, int limit)
{
	Datum		values[4];
	int			rc;

	position_args(pump, tracker->read_pos, limit, values);
	rc = SPI_execute_plan(pump->read_plan, values, NULL, true, limit);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading pump \"%s\" failed: %s", pump->name,
			 SPI_result_code_string(rc));
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		EventPos	pos;
		Datum		key;
		bool		key_null;

		pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(spi_getdatum(row, 1, &isnull)));
		pos.id = DatumGetInt64(spi_getdatum(row, 2, &isnull));
		key = spi_getdatum(row, 3, &key_null);
		tracker_add(tracker, pos, key_null ? NULL : TextDatumGetCString(key),
					DatumGetJsonbP(spi_getdatum(row, 4, &isnull)));
	}
	return (int) SPI_processed;
}

/*
 * Are there committed events after "after" that wait for an older
 * transaction to finish?  Then the caller looks again soon: nobody will
 * wake it when that transaction ends.
 */
bool
pump_blocked(Pump *pump, EventPos after)
{
	Datum		values[4];
	bool		isnull;

	position_args(pump, after, 1, values);
	if (SPI_execute_plan(pump->blocked_plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "checking pump \"%s\" failed", pump->name);
	return DatumGetBool(spi_getdatum(0, 1, &isnull));
}

/* Delete up to "limit" events at or before "upto" older than the retention. */
uint64
pump_delete_passed(Pump *pump, EventPos upto, int limit)
{
	Datum		values[5];

	if (pump->delete_plan == NULL)
		return 0;
	position_args(pump, upto, limit, values);
	values[4] = DirectFunctionCall3(interval_in, CStringGetDatum(pump->retention),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (SPI_execute_plan(pump->delete_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "retention of pump \"%s\" failed", pump->name);
	return SPI_processed;
}
