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

/*
 * The reader's parameters: the step read after $1, $2 up to $8, $9, at
 * most $3 events; $4 the stream of cluster.events; $5 the transactions in
 * progress in the snapshot before the step that its target shows
 * committed, ascending; $7 the target, $10 its xmax.  The range part
 * starts after $6, $11: after $1, $2 and at the previous snapshot's xmax,
 * in one row comparison, because a btree scan starts at the first of
 * several lower bounds on a column when one of them is a row comparison,
 * not at the highest (the scan from $1, $2 alone would walk every event
 * below the previous xmax, at every read).
 */
#define READ_ARGS 11
static Oid	read_types[READ_ARGS] = {XID8OID, INT8OID, INT8OID, TEXTOID, XID8ARRAYOID,
XID8OID, PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, INT8OID};

/*
 * A position's parameters, for counting and positioning: $1, $2 its
 * "after"; $3 a limit; $4 the stream; $5 its snapshot; $6 its step (the
 * snapshot again when it has none, after (0, 0)); $7 the snapshot's xmin.
 */
#define POSITION_ARGS 7
static Oid	position_types[POSITION_ARGS] = {XID8OID, INT8OID, INT8OID, TEXTOID,
PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID};

#define ROW_GT "OPERATOR(pg_catalog.>)"
#define ROW_LE "OPERATOR(pg_catalog.<=)"

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

/*
 * "NOT <the position holds t>": t is neither visible in the snapshot ($5)
 * nor in the step ($6) at or before $1, $2.  From the snapshot's xmin
 * ($7) on: everything below it is visible.
 */
static char *
not_in_position(Pump *pump)
{
	return psprintf("%st.%s OPERATOR(pg_catalog.>=) $7 AND NOT (pg_catalog.pg_visible_in_snapshot(t.%s, $5) "
					"OR (pg_catalog.pg_visible_in_snapshot(t.%s, $6) AND (t.%s, t.%s) " ROW_LE " ($1, $2)))",
					stream_filter(pump), pump->txid, pump->txid, pump->txid,
					pump->txid, pump->id_col);
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

/*
 * Retention's DELETE, or NULL when events stay (no created_at, a view):
 * of the events every handler's cursor has passed ($1, the snapshots of
 * the cursors; below the lowest xmax: the range of an index scan), up to
 * $3 of them created before the retention ($2) ago; $4 the stream.
 */
#define DELETE_ARGS 4
static SPIPlanPtr
prepare_delete(Pump *pump, StringInfo sql)
{
	Oid			delete_types[DELETE_ARGS] = {PG_SNAPSHOTARRAYOID, INTERVALOID, INT8OID, TEXTOID};

	if (pump->created_at == NULL || !pump->deletable)
		return NULL;
	resetStringInfo(sql);
	appendStringInfo(sql,
					 "DELETE FROM %s d WHERE d.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
					 "SELECT t.ctid FROM %s t WHERE %st.%s OPERATOR(pg_catalog.<) "
					 "(SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmax(s)) FROM pg_catalog.unnest($1) s) "
					 "AND t.%s OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $2) "
					 "AND NOT EXISTS (SELECT FROM pg_catalog.unnest($1) s "
					 "                 WHERE NOT pg_catalog.pg_visible_in_snapshot(t.%s, s)) LIMIT $3))",
					 pump->from, pump->from, stream_filter(pump),
					 pump->txid, pump->created_at, pump->txid);
	return prepare_kept(sql->data, DELETE_ARGS, delete_types);
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
	const char *stream = stream_filter(pump);
	char	   *columns;
	StringInfoData sql;
	Restricted	r;

	/*
	 * A step's events in order: first those of the transactions that
	 * committed since the snapshot before it (txids below its xmax), one
	 * index scan of each, in the order of $5; then the range from its xmax
	 * to the target's, those the target shows.  Both parts stay index
	 * scans however many transactions were in progress, and no sort is
	 * needed: a plan that isn't parallel (SPI plans are not) returns the
	 * union's parts, and a nested loop its outer rows, in order.
	 */
	columns = psprintf("t.%s, t.%s::pg_catalog.int8, %s, %s, %s, %s",
					   pump->txid, pump->id_col, pump->key, pump->payload,
					   pump->headers, pump->created_at_value);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT e.* FROM pg_catalog.unnest($5) x(txid), LATERAL ("
					 "SELECT %s FROM %s t WHERE %st.%s OPERATOR(pg_catalog.=) x.txid "
					 "AND (t.%s, t.%s) " ROW_GT " ($1, $2) AND (t.%s, t.%s) " ROW_LE " ($8, $9) "
					 "ORDER BY t.%s LIMIT $3) e",
					 columns, pump->from, stream, pump->txid,
					 pump->txid, pump->id_col, pump->txid, pump->id_col, pump->id_col);
	appendStringInfo(&sql,
					 " UNION ALL (SELECT %s FROM %s t WHERE %s(t.%s, t.%s) " ROW_GT " ($6, $11) "
					 "AND t.%s OPERATOR(pg_catalog.<) $10 AND (t.%s, t.%s) " ROW_LE " ($8, $9) "
					 "AND pg_catalog.pg_visible_in_snapshot(t.%s, $7) "
					 "ORDER BY t.%s, t.%s LIMIT $3) LIMIT $3",
					 columns, pump->from, stream, pump->txid, pump->id_col,
					 pump->txid, pump->txid, pump->id_col,
					 pump->txid, pump->txid, pump->id_col);
	restricted_enter(&r, pump->owner, pump->what);
	pump->read_plan = prepare_kept(sql.data, READ_ARGS, read_types);
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

static Datum
xid8_datum(uint64 txid)
{
	return FullTransactionIdGetDatum(FullTransactionIdFromU64(txid));
}

static void
position_args(Pump *pump, const Position *p, int64 limit, Datum *values)
{
	int			i = 0;

	values[i++] = xid8_datum(p->step ? p->after.txid : 0);
	values[i++] = Int64GetDatum(p->step ? p->after.id : 0);
	values[i++] = Int64GetDatum(limit);
	values[i++] = CStringGetTextDatum(pump->name);
	values[i++] = PointerGetDatum(p->snapshot);
	values[i++] = PointerGetDatum(p->step ? p->step : p->snapshot);
	values[i++] = xid8_datum(txsnap_xmin(p->snapshot));
	Assert(i == POSITION_ARGS);
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
 * Where the range part of a step's read starts: after "after", and at the
 * previous snapshot's xmax, whichever is later.  "(txid, id) after (xmax
 * - 1, the largest id)" is "txid at or above xmax".
 */
static EventPos
range_start(const TxSnapshot *prev, EventPos after)
{
	EventPos	below_xmax = {txsnap_xmax(prev) - 1, PG_INT64_MAX};

	Assert(txsnap_xmax(prev) > 0);
	return eventpos_cmp(after, below_xmax) > 0 ? after : below_xmax;
}

/*
 * Read up to "limit" events of the tracker's step, after where it stands
 * and up to "upto", into the tracker; the number read.
 */
static int
read_step(Pump *pump, Tracker *tracker, EventPos upto, int limit)
{
	const TxSnapshot *prev;
	const TxSnapshot *target;
	EventPos	after;
	EventPos	range_after;
	Datum		values[READ_ARGS];
	int			i = 0;
	int			n = 0;

	if (!tracker_step(tracker, &prev, &target, &after))
		elog(ERROR, "no step of %s is being read", pump->what);
	range_after = range_start(prev, after);
	values[i++] = xid8_datum(after.txid);
	values[i++] = Int64GetDatum(after.id);
	values[i++] = Int64GetDatum(limit);
	values[i++] = CStringGetTextDatum(pump->name);
	values[i++] = txsnap_committed_since(prev, target, after.txid);
	values[i++] = xid8_datum(range_after.txid);
	values[i++] = PointerGetDatum(target);
	values[i++] = xid8_datum(upto.txid);
	values[i++] = Int64GetDatum(upto.id);
	values[i++] = xid8_datum(txsnap_xmax(target));
	values[i++] = Int64GetDatum(range_after.id);
	Assert(i == READ_ARGS);
	if (execute_as_owner(pump, pump->read_plan, NULL, 0, NULL, values, true, limit) != SPI_OK_SELECT)
		elog(ERROR, "reading %s failed", pump->what);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		EventPos	pos;
		Event		ev;
		Datum		d;

		pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(spi_getdatum(row, Anum_read_txid, &isnull)));
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
 * Read up to "limit" events into the tracker: of the step it is reading,
 * and, once that is read to its end, of a new one up to the current
 * snapshot.  So a read that returns fewer than "limit" has seen
 * everything committed before it began, even when it started by finishing
 * an older step: a commit that woke the leader is never left for the
 * poll.  *pending tells whether transactions were in progress at the
 * last step's snapshot: one may commit events without waking the leader
 * (COMMIT PREPARED does not), so the caller looks again soon.
 */
int
pump_read(Pump *pump, Tracker *tracker, int limit, bool *pending)
{
	int			n = 0;

	for (;;)
	{
		const TxSnapshot *prev;
		const TxSnapshot *target;
		EventPos	after;
		bool		fresh = false;
		int			got;

		if (!tracker_step(tracker, &prev, &target, &after))
		{
			TxSnapshot *now = txsnap_current(CurrentMemoryContext);

			tracker_begin_step(tracker, now);
			pfree(now);
			(void) tracker_step(tracker, &prev, &target, &after);
			fresh = true;
		}
		*pending = target->nxip > 0;
		got = read_step(pump, tracker, EVENTPOS_END, limit - n);
		tracker_end_read(tracker, got < limit - n, NULL);
		n += got;
		if (fresh || n == limit)
			return n;
	}
}

#define RESTORE_BATCH 1000

/* Read the tracker's step to its end, or up to *upto. */
static void
restore_step(Pump *pump, Tracker *tracker, const EventPos *upto)
{
	int			n;

	do
	{
		n = read_step(pump, tracker, upto ? *upto : EVENTPOS_END, RESTORE_BATCH);
		tracker_end_read(tracker, n < RESTORE_BATCH && upto == NULL,
						 n < RESTORE_BATCH ? upto : NULL);
	} while (n == RESTORE_BATCH);
}

/*
 * Read again, into a tracker just reset to the cursor, everything the
 * last leader had read ("read", a position at or after the cursor), by
 * the same steps' snapshots: the same events, whatever has committed
 * since, so that its done ranges and retries apply to them alone.  As
 * many events as it had read above the cursor: the tracker may hold more
 * than max_in_flight for a while, if that was lowered.
 */
void
pump_restore(Pump *pump, Tracker *tracker, const Position *read)
{
	const TxSnapshot *prev;
	const TxSnapshot *target;
	EventPos	after;

	if (tracker_step(tracker, &prev, &target, &after))
	{
		/* the cursor's step: to its end, or where it was read to */
		if (read->step && txsnap_equal(read->step, target))
		{
			restore_step(pump, tracker, &read->after);
			return;
		}
		restore_step(pump, tracker, NULL);
		(void) tracker_step(tracker, &prev, &target, &after);
	}
	if (!txsnap_equal(prev, read->snapshot))
	{
		tracker_begin_step(tracker, read->snapshot);
		restore_step(pump, tracker, NULL);
	}
	if (read->step)
	{
		tracker_begin_step(tracker, read->step);
		restore_step(pump, tracker, &read->after);
	}
}

/*
 * Delete up to "limit" events at or before "upto" older than the
 * retention.  A user table's events are deleted as its owner, who must
 * have the DELETE privilege: without it the events stay (one WARNING per
 * load of the pump).
 */
uint64
pump_delete_passed(Pump *pump, Datum cursors, int limit)
{
	Datum		values[DELETE_ARGS];
	int			rc;
	int			i = 0;

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
	values[i++] = cursors;
	values[i++] = DirectFunctionCall3(interval_in, CStringGetDatum(pump->retention),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[i++] = Int64GetDatum(limit);
	values[i++] = CStringGetTextDatum(pump->name);
	Assert(i == DELETE_ARGS);
	if (OidIsValid(pump->source))
		rc = execute_as_owner(pump, pump->delete_plan, NULL, 0, NULL, values, false, 0);
	else
		rc = SPI_execute_plan(pump->delete_plan, values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "retention of %s failed", pump->what);
	return SPI_processed;
}

/*
 * How many events the position does not hold, and how old the oldest is
 * (0 without a created_at column), counted as the pump's owner.
 */
void
pump_lag(Pump *pump, const Position *after, int64 *events, double *seconds)
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
				   pump->from, not_in_position(pump));
	if (execute_as_owner(pump, NULL, sql, POSITION_ARGS, position_types, values, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "counting %s failed", pump->what);
	*events = DatumGetInt64(spi_getdatum(0, 1, &isnull));
	age = spi_getdatum(0, 2, &isnull);
	*seconds = isnull ? 0 : DatumGetFloat8(age);
}

/*
 * The position just before the first event, in (txid, id) order, created
 * at or after "at": the cursor of a handler that is to see those events,
 * and those of transactions still in progress.
 */
Position
pump_position_before(Pump *pump, TimestampTz at)
{
	Oid			types[3] = {TIMESTAMPTZOID, TEXTOID, INT8OID};
	Datum		values[3];
	EventPos	pos = EVENTPOS_START;
	char	   *sql;

	if (pump->created_at == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has no created_at column", pump->what),
				 errhint("Reset to 'start' or 'end', or re-create the pump with created_at_column.")));
	values[0] = TimestampTzGetDatum(at);
	values[1] = CStringGetTextDatum(pump->name);
	values[2] = Int64GetDatum(1);
	sql = psprintf("SELECT t.%s, t.%s::pg_catalog.int8 FROM %s t WHERE %s"
				   "t.%s OPERATOR(pg_catalog.<) $1 ORDER BY t.%s DESC, t.%s DESC LIMIT $3",
				   pump->txid, pump->id_col, pump->from,
				   OidIsValid(pump->source) ? "" : "t.stream OPERATOR(pg_catalog.=) $2 AND ",
				   pump->created_at, pump->txid, pump->id_col);
	if (execute_as_owner(pump, NULL, sql, 3, types, values, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "positioning in %s failed", pump->what);
	if (SPI_processed == 1)
	{
		bool		isnull;

		pos.txid = U64FromFullTransactionId(DatumGetFullTransactionId(spi_getdatum(0, 1, &isnull)));
		pos.id = DatumGetInt64(spi_getdatum(0, 2, &isnull));
	}
	return position_before(txsnap_current(CurrentMemoryContext), pos);
}
