/*-------------------------------------------------------------------------
 *
 * pump.c
 *	  A pump's source: read, count, position and delete events.
 *
 * The statements are built from the pump's column mapping, with every
 * name quoted and every operator qualified, and the reader's are kept as
 * prepared plans.  Events are read as their stored values (see event.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "pump.h"
#include "restricted.h"
#include "xact.h"

/* the columns of the pump's row, as pump_load reads them */
#define Anum_pump_name			1
#define Anum_pump_owner			2
#define Anum_pump_source		3
#define Anum_pump_from			4
#define Anum_pump_id_column		5
#define Anum_pump_txid_column	6
#define Anum_pump_payload_column 7
#define Anum_pump_key_column	8
#define Anum_pump_headers_column 9
#define Anum_pump_created_at_column 10
#define Anum_pump_retention		11
#define Anum_pump_plain_table	12

/* the columns of the reader's rows */
#define Anum_read_txid			1
#define Anum_read_id			2
#define Anum_read_key			3
#define Anum_read_payload		4
#define Anum_read_headers		5
#define Anum_read_created_at	6
#define Anum_read_blocked		7

/* $1 xid8, $2 int8: the position after which to read; $3: limit; $4: pump name */
#define POSITION_ARGS 4
static Oid	position_types[POSITION_ARGS] = {XID8OID, INT8OID, INT8OID, TEXTOID};

#define ROW_GT "OPERATOR(pg_catalog.>)"
#define XMIN "pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())"
#define BELOW_XMIN "OPERATOR(pg_catalog.<) " XMIN

static char *
column_or_null(MemoryContext cxt, HeapTuple tup, TupleDesc desc, int col,
			   const char *cast)
{
	char	   *name = SPI_getvalue(tup, desc, col);

	if (name == NULL)
		return "NULL";
	return MemoryContextStrdup(cxt, psprintf("t.%s%s", quote_identifier(name), cast));
}

static char *
quoted_column(MemoryContext cxt, HeapTuple tup, TupleDesc desc, int col)
{
	char	   *name = SPI_getvalue(tup, desc, col);

	return name ? MemoryContextStrdup(cxt, quote_identifier(name)) : NULL;
}

/*
 * The pump's row, as a Pump in "cxt", without plans (pump_prepare makes
 * them).  The source's name is looked up afresh from its OID.
 */
Pump *
pump_load(int32 pump_id, MemoryContext cxt)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(pump_id)};
	Pump	   *pump;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *from;

	spi_exec_checked("SELECT p.name, p.owner::pg_catalog.oid, p.source::pg_catalog.oid, "
					 "       CASE WHEN c.oid IS NOT NULL THEN pg_catalog.format('%I.%I', n.nspname, c.relname) END, "
					 "       p.id_column, p.txid_column, p.payload_column, p.key_column, "
					 "       p.headers_column, p.created_at_column, p.retention::pg_catalog.text, "
					 "       c.relkind OPERATOR(pg_catalog.=) 'r' "
					 "  FROM cluster.pump p "
					 "  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.source "
					 "  LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
					 " WHERE p.id OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("cluster pump with id %d does not exist", pump_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	pump = MemoryContextAllocZero(cxt, sizeof(Pump));
	pump->id = pump_id;
	strlcpy(pump->name, SPI_getvalue(tup, desc, Anum_pump_name), NAMEDATALEN);
	pump->what = MemoryContextStrdup(cxt, psprintf("cluster pump \"%s\"", pump->name));
	pump->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_pump_owner, &isnull));
	pump->source = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_pump_source, &isnull));
	if (isnull)
		pump->source = InvalidOid;
	pump->retention = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, Anum_pump_retention));

	if (!OidIsValid(pump->source))
	{
		pump->from = "cluster.events";
		pump->txid = "txid";
		pump->id_col = "id";
		pump->created_at = "created_at";
		pump->deletable = true;
		pump->key = "t.key";
		pump->payload = "t.payload";
		pump->headers = "t.headers";
		pump->created_at_value = "t.created_at";
		return pump;
	}
	from = SPI_getvalue(tup, desc, Anum_pump_from);
	if (from == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source of %s does not exist", pump->what),
				 errdetail("It was the relation with OID %u.", pump->source)));
	pump->from = MemoryContextStrdup(cxt, from);
	pump->txid = quoted_column(cxt, tup, desc, Anum_pump_txid_column);
	pump->id_col = quoted_column(cxt, tup, desc, Anum_pump_id_column);
	pump->created_at = quoted_column(cxt, tup, desc, Anum_pump_created_at_column);
	pump->deletable = DatumGetBool(SPI_getbinval(tup, desc, Anum_pump_plain_table, &isnull));
	pump->key = column_or_null(cxt, tup, desc, Anum_pump_key_column, "::pg_catalog.text");
	pump->payload = column_or_null(cxt, tup, desc, Anum_pump_payload_column, "");
	pump->headers = column_or_null(cxt, tup, desc, Anum_pump_headers_column, "");
	pump->created_at_value = column_or_null(cxt, tup, desc, Anum_pump_created_at_column, "");
	return pump;
}

/* cluster.events holds every stream: "t.stream = $4 AND ", else "" */
static const char *
stream_filter(Pump *pump)
{
	return OidIsValid(pump->source) ? "" : "t.stream OPERATOR(pg_catalog.=) $4 AND ";
}

/* "[t.stream = $4 AND ](t.txid, t.id) > ($1, $2)" */
static char *
after_position(Pump *pump)
{
	return psprintf("%s(t.%s, t.%s) " ROW_GT " ($1, $2)",
					stream_filter(pump), pump->txid, pump->id_col);
}

/*
 * A kept plan, generic: planned once, not again for each batch with its
 * parameters (a custom plan cost the leader more than the read itself).
 * With sorting off (execute_as_owner) it walks the (txid, id) index.
 */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "could not prepare pump statement: %s (%s)", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep pump statement");
	return plan;
}

/* Retention's DELETE, or NULL when events stay (no created_at, a view). */
static SPIPlanPtr
prepare_delete(Pump *pump, StringInfo sql)
{
	Oid			delete_types[POSITION_ARGS + 1] = {XID8OID, INT8OID, INT8OID, TEXTOID, INTERVALOID};

	if (pump->created_at == NULL || !pump->deletable)
		return NULL;
	resetStringInfo(sql);
	appendStringInfo(sql,
					 "DELETE FROM %s d WHERE d.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
					 "SELECT t.ctid FROM %s t WHERE %s(t.%s, t.%s) OPERATOR(pg_catalog.<=) ($1, $2) "
					 "AND t.%s OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $5) LIMIT $3))",
					 pump->from, pump->from, stream_filter(pump),
					 pump->txid, pump->id_col, pump->created_at);
	return prepare_kept(sql->data, POSITION_ARGS + 1, delete_types);
}

/*
 * The reader's plans.  A plan is prepared in the context it runs in (as
 * the owner, or as the engine for cluster.events' retention): a cached
 * plan whose search_path differs from the current one is planned again at
 * every execution.
 */
void
pump_prepare(Pump *pump)
{
	char	   *range = after_position(pump);
	StringInfoData sql;
	Restricted	r;

	/*
	 * The events after the position of finished transactions, in order, and
	 * whether any committed event waits for an older transaction: every
	 * event at or above xmin is after what was read (read events are
	 * below it), so the index is probed from xmin, not walked from the
	 * position; as ORDER BY ... LIMIT 1, so that with sorting off the probe
	 * is an index scan even when the plan was made on an empty table (an
	 * EXISTS would be a sequential scan for every read of the backlog).
	 * The one-row side is preserved, so "blocked" comes back even when no
	 * event does; a nested loop (the only join for ON true) keeps the
	 * events in their order.
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT r.*, b.blocked FROM (SELECT (SELECT t.%s FROM %s t WHERE %st.%s OPERATOR(pg_catalog.>=) " XMIN
					 " ORDER BY t.%s LIMIT 1) IS NOT NULL AS blocked) b",
					 pump->txid, pump->from, stream_filter(pump), pump->txid, pump->txid);
	appendStringInfo(&sql,
					 " LEFT JOIN LATERAL (SELECT t.%s, t.%s::pg_catalog.int8, %s, %s, %s, %s",
					 pump->txid, pump->id_col, pump->key, pump->payload,
					 pump->headers, pump->created_at_value);
	appendStringInfo(&sql, " FROM %s t WHERE %s AND t.%s " BELOW_XMIN " ORDER BY t.%s, t.%s LIMIT $3) r ON true",
					 pump->from, range, pump->txid, pump->txid, pump->id_col);
	restricted_enter(&r, pump->owner, pump->what);
	pump->read_plan = prepare_kept(sql.data, POSITION_ARGS, position_types);
	if (OidIsValid(pump->source))
		pump->delete_plan = prepare_delete(pump, &sql);
	restricted_exit(&r);
	if (!OidIsValid(pump->source))
		pump->delete_plan = prepare_delete(pump, &sql);
	pfree(sql.data);
}

void
pump_release(Pump *pump)
{
	if (pump->read_plan)
		SPI_freeplan(pump->read_plan);
	if (pump->delete_plan)
		SPI_freeplan(pump->delete_plan);
	pump->read_plan = pump->delete_plan = NULL;
}

static void
position_args(Pump *pump, EventPos pos, int64 limit, Datum *values)
{
	values[0] = FullTransactionIdGetDatum(FullTransactionIdFromU64(pos.txid));
	values[1] = Int64GetDatum(pos.id);
	values[2] = Int64GetDatum(limit);
	values[3] = CStringGetTextDatum(pump->name);
}

/*
 * Run a plan (or, without one, "sql") on the source, as the pump's owner.
 * The statements walk the source in (txid, id) order: sorting is off while
 * they are planned, so that they use the source's index whatever its
 * statistics say.  A plan made while the table was empty or never analyzed
 * would otherwise stay a full scan and sort for every batch of a backlog.
 */
static int
execute_as_owner(Pump *pump, SPIPlanPtr plan, const char *sql, int nargs,
				 Oid *types, Datum *values, bool read_only, long limit)
{
	Restricted	r;
	int			rc;

	restricted_enter(&r, pump->owner, pump->what);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (plan)
		rc = SPI_execute_plan(plan, values, NULL, read_only, limit);
	else
		rc = SPI_execute_with_args(sql, nargs, types, values, NULL, read_only, limit);
	restricted_exit(&r);
	return rc;
}

/* a payload that is SQL NULL travels as JSON null */
static Jsonb *
json_null(void)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null")));
}

/*
 * Read up to "limit" events after the tracker's read position into it.
 * *blocked tells whether committed events after them wait for an older
 * transaction to finish: then the caller looks again soon, as nobody
 * wakes it when that transaction ends.
 */
int
pump_read(Pump *pump, Tracker *tracker, int limit, bool *blocked)
{
	Datum		values[POSITION_ARGS];
	int			n = 0;

	position_args(pump, tracker->read_pos, limit, values);
	if (execute_as_owner(pump, pump->read_plan, NULL, 0, NULL, values, true, limit) != SPI_OK_SELECT)
		elog(ERROR, "reading %s failed", pump->what);
	*blocked = false;
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		EventPos	pos;
		Event		ev;
		Datum		d;

		*blocked = DatumGetBool(spi_getdatum(row, Anum_read_blocked, &isnull));
		d = spi_getdatum(row, Anum_read_txid, &isnull);
		if (isnull)
			break;				/* no event: the one row of "blocked" alone */
		pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(d));
		pos.id = DatumGetInt64(spi_getdatum(row, Anum_read_id, &isnull));
		ev.id = pos.id;
		d = spi_getdatum(row, Anum_read_key, &isnull);
		ev.key = isnull ? NULL : TextDatumGetCString(d);
		d = spi_getdatum(row, Anum_read_payload, &isnull);
		ev.payload = isnull ? json_null() : DatumGetJsonbP(d);
		d = spi_getdatum(row, Anum_read_headers, &isnull);
		ev.headers = isnull ? NULL : DatumGetJsonbP(d);
		d = spi_getdatum(row, Anum_read_created_at, &isnull);
		ev.has_created_at = !isnull;
		ev.created_at = isnull ? 0 : DatumGetTimestampTz(d);
		tracker_add(tracker, pos, &ev);
		n++;
	}
	return n;
}

/*
 * Delete up to "limit" events at or before "upto" older than the
 * retention.  A user table's events are deleted as its owner, who must
 * have the DELETE privilege: without it the events stay (one WARNING per
 * load of the pump).
 */
uint64
pump_delete_passed(Pump *pump, EventPos upto, int limit)
{
	Datum		values[POSITION_ARGS + 1];
	int			rc;

	if (pump->delete_plan == NULL)
		return 0;
	if (OidIsValid(pump->source) &&
		pg_class_aclcheck(pump->source, pump->owner, ACL_DELETE) != ACLCHECK_OK)
	{
		if (!pump->delete_denied)
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("retention of %s keeps its events: role %s may not delete from %s",
							pump->what, GetUserNameFromId(pump->owner, false), pump->from),
					 errhint("GRANT DELETE on the table to the pump's owner, or delete old events yourself.")));
		pump->delete_denied = true;
		return 0;
	}
	pump->delete_denied = false;
	position_args(pump, upto, limit, values);
	values[POSITION_ARGS] = DirectFunctionCall3(interval_in, CStringGetDatum(pump->retention),
												ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (OidIsValid(pump->source))
		rc = execute_as_owner(pump, pump->delete_plan, NULL, 0, NULL, values, false, 0);
	else
		rc = SPI_execute_plan(pump->delete_plan, values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "retention of %s failed", pump->what);
	return SPI_processed;
}

/*
 * How many events there are after "after", and how old the oldest is
 * (0 without a created_at column), counted as the pump's owner.
 */
void
pump_lag(Pump *pump, EventPos after, int64 *events, double *seconds)
{
	Datum		values[POSITION_ARGS];
	char	   *sql;
	bool		isnull;
	Datum		age;

	position_args(pump, after, 0, values);
	sql = psprintf("SELECT pg_catalog.count(*), %s FROM %s t WHERE %s",
				   pump->created_at ?
				   psprintf("pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() "
							"OPERATOR(pg_catalog.-) pg_catalog.min(t.%s))",
							pump->created_at) : "0::pg_catalog.float8",
				   pump->from, after_position(pump));
	if (execute_as_owner(pump, NULL, sql, POSITION_ARGS, position_types, values, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "counting %s failed", pump->what);
	*events = DatumGetInt64(spi_getdatum(0, 1, &isnull));
	age = spi_getdatum(0, 2, &isnull);
	*seconds = isnull ? 0 : DatumGetFloat8(age);
}

/*
 * The position just before the first event, in pump order, created at or
 * after "at": the cursor of a handler that is to see those events.
 */
EventPos
pump_position_before(Pump *pump, TimestampTz at)
{
	Oid			types[POSITION_ARGS + 1];
	Datum		values[POSITION_ARGS + 1];
	EventPos	pos = {0, 0};
	char	   *sql;

	if (pump->created_at == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has no created_at column", pump->what),
				 errhint("Reset to 'start' or 'end', or re-create the pump with created_at_column.")));
	memcpy(types, position_types, sizeof(position_types));
	types[POSITION_ARGS] = TIMESTAMPTZOID;
	position_args(pump, pos, 1, values);
	values[POSITION_ARGS] = TimestampTzGetDatum(at);
	sql = psprintf("SELECT t.%s, t.%s::pg_catalog.int8 FROM %s t WHERE %s "
				   "AND t.%s OPERATOR(pg_catalog.<) $5 ORDER BY t.%s DESC, t.%s DESC LIMIT $3",
				   pump->txid, pump->id_col, pump->from, after_position(pump),
				   pump->created_at, pump->txid, pump->id_col);
	if (execute_as_owner(pump, NULL, sql, POSITION_ARGS + 1, types, values, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "positioning in %s failed", pump->what);
	if (SPI_processed == 1)
	{
		bool		isnull;

		pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(spi_getdatum(0, 1, &isnull)));
		pos.id = DatumGetInt64(spi_getdatum(0, 2, &isnull));
	}
	return pos;
}
