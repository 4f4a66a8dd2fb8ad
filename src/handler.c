/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Load and commit a handler's cursor and state; replay dead letters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "handler.h"
#include "protocol.h"
#include "xact.h"

/* the columns of handler_load's query */
#define Anum_load_epoch			1
#define Anum_load_cursor		2	/* cursor's snapshot, step, after txid, after id */
#define Anum_load_read			6	/* the read position's, likewise */
#define Anum_load_from_txids	10
#define Anum_load_from_ids		11
#define Anum_load_to_txids		12
#define Anum_load_to_ids		13
#define Anum_load_attempts		14
#define Anum_load_errors		15

/* An array column of handler_load's row; "nulls" may be NULL (none can be) */
static Datum *
load_array(int col, Oid type, bool **nulls, int *n)
{
	bool		isnull;
	Datum	   *elems;
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	deconstruct_array(DatumGetArrayTypeP(spi_getdatum(0, col, &isnull)), type, len, byval,
					  align, &elems, nulls, n);
	return elems;
}

/* The position in the POSITION_COLUMNS from "col" of handler_load's row. */
static Position
load_position(int col)
{
	Position	p;

	if (!position_from_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &p))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a handler's cursor has no snapshot"),
				 errhint("Move its cursor with cluster.reset_handler().")));
	return p;
}

/* The done ranges and retries of handler_load's row, for the tracker. */
static void
load_restore(HandlerRun *h)
{
	int			n;
	bool	   *error_nulls;
	Datum	   *from_txids = load_array(Anum_load_from_txids, TEXTOID, NULL, &n);
	Datum	   *from_ids = load_array(Anum_load_from_ids, INT8OID, NULL, &n);
	Datum	   *to_txids = load_array(Anum_load_to_txids, TEXTOID, NULL, &n);
	Datum	   *to_ids = load_array(Anum_load_to_ids, INT8OID, NULL, &n);
	Datum	   *attempts = load_array(Anum_load_attempts, INT4OID, NULL, &n);
	Datum	   *errors = load_array(Anum_load_errors, TEXTOID, &error_nulls, &n);
	RestoreRange *ranges = palloc(sizeof(RestoreRange) * Max(n, 1));

	for (int k = 0; k < n; k++)
	{
		ranges[k].from.txid = strtou64(TextDatumGetCString(from_txids[k]), NULL, 10);
		ranges[k].from.id = DatumGetInt64(from_ids[k]);
		ranges[k].to.txid = strtou64(TextDatumGetCString(to_txids[k]), NULL, 10);
		ranges[k].to.id = DatumGetInt64(to_ids[k]);
		ranges[k].attempts = DatumGetInt32(attempts[k]);
		ranges[k].error = error_nulls[k] ? NULL : TextDatumGetCString(errors[k]);
	}
	tracker_restore(h->tracker, n, ranges);
}

/* the columns of handler_load_all's query */
#define Anum_h_id				1
#define Anum_h_name				2
#define Anum_h_function			3
#define Anum_h_owner			4
#define Anum_h_key_order		5
#define Anum_h_batch_size		6
#define Anum_h_max_attempts		7
#define Anum_h_max_in_flight	8
#define Anum_h_paused			9
#define Anum_h_replay			10
#define Anum_h_pump_id			11
#define Anum_h_function_missing 12
#define Anum_h_ack_timeout_ms	13
#define Anum_h_max_batch_bytes	14
#define Anum_h_definition		15

/*
 * Everything a HandlerRun is made of, as text: the handler's settings and
 * epoch, its pump's, and the shape of the pump's source.  The same text
 * at the next load means that nothing about the handler changed, and it
 * runs on with its deliveries in flight; the state, the counters and the
 * dead letters are not part of it.
 */
#define HANDLER_DEFINITION \
	"ROW(h.name, h.pump_id, h.function::pg_catalog.oid, h.owner::pg_catalog.oid, h.ordering, " \
	"    h.batch_size, h.max_attempts, h.ack_timeout, h.max_in_flight, h.max_batch_bytes, " \
	"    h.paused, h.epoch, EXISTS (SELECT FROM pg_catalog.pg_proc f WHERE f.oid = h.function))::text " \
	"|| ROW(p.name, p.source::pg_catalog.oid, p.id_column, p.txid_column, p.payload_column, " \
	"       p.key_column, p.headers_column, p.created_at_column, p.retention, " \
	"       p.owner::pg_catalog.oid)::text " \
	"|| COALESCE((SELECT ROW(c.relname, c.relnamespace, c.relkind, " \
	"      (SELECT pg_catalog.string_agg(a.attnum || ' ' || a.attname || ' ' || a.atttypid, ',' ORDER BY a.attnum) " \
	"         FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))::text " \
	"    FROM pg_catalog.pg_class c WHERE c.oid = p.source), '') "

/*
 * SPI calls switch CurrentMemoryContext back to SPI's own: everything kept
 * across transactions is allocated explicitly in "cxt".  Each handler has
 * its own copy of its pump (and its plans), so that one handler is loaded
 * and unloaded without touching another.
 */
static Pump *
pump_for(int32 id, MemoryContext cxt)
{
	Pump	   *pump = pump_load(id, cxt);

	pump_prepare(pump);
	return pump;
}

static int32
row_int32(HeapTuple tup, TupleDesc desc, int attnum)
{
	bool		isnull;

	return DatumGetInt32(SPI_getbinval(tup, desc, attnum, &isnull));
}

static bool
row_bool(HeapTuple tup, TupleDesc desc, int attnum)
{
	bool		isnull;

	return DatumGetBool(SPI_getbinval(tup, desc, attnum, &isnull));
}

typedef struct PumpFor
{
	int32		id;
	MemoryContext cxt;
	Pump	   *pump;
} PumpFor;

static void
pump_for_call(void *arg)
{
	PumpFor    *call = arg;

	call->pump = pump_for(call->id, call->cxt);
}

/*
 * How to call the handler's function: it takes the batch as jsonb or as
 * cluster.event[] (cluster._check_handler_function allows no other), and
 * returns a patch (jsonb) or nothing.
 */
static void
describe_function(HandlerRun *h, MemoryContext cxt)
{
	Oid		   *argtypes;
	int			nargs;
	Oid			rettype = get_func_signature(h->function, &argtypes, &nargs);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	fmgr_info_cxt(h->function, &h->flinfo, cxt);
	h->returns_patch = (rettype == JSONBOID);
	h->event_desc = NULL;
	if (nargs == 1 && argtypes[0] != JSONBOID)
		h->event_desc = lookup_rowtype_tupdesc_copy(get_element_type(argtypes[0]), -1);
	MemoryContextSwitchTo(old);
}

/*
 * A HandlerRun of the row; NULL when its pump can't be loaded (its source
 * unreadable, a column retyped): then the handler's last_error says why,
 * and the other handlers go on.
 */
static HandlerRun *
handler_from_row(HeapTuple tup, TupleDesc desc, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "cluster handler",
											  ALLOCSET_SMALL_SIZES);
	HandlerRun *h = MemoryContextAllocZero(cxt, sizeof(HandlerRun));
	PumpFor		call = {row_int32(tup, desc, Anum_h_pump_id), cxt, NULL};
	char	   *error;
	bool		isnull;

	h->cxt = cxt;
	h->id = row_int32(tup, desc, Anum_h_id);
	h->definition = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, Anum_h_definition));
	strlcpy(h->name, SPI_getvalue(tup, desc, Anum_h_name), NAMEDATALEN);
	h->what = MemoryContextStrdup(cxt, psprintf("cluster handler \"%s\"", h->name));
	h->function = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_h_function, &isnull));
	if (isnull)
		h->function = InvalidOid;
	h->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_h_owner, &isnull));
	h->key_order = row_bool(tup, desc, Anum_h_key_order);
	h->batch_size = row_int32(tup, desc, Anum_h_batch_size);
	h->max_attempts = row_int32(tup, desc, Anum_h_max_attempts);
	h->max_in_flight = row_int32(tup, desc, Anum_h_max_in_flight);
	h->paused = row_bool(tup, desc, Anum_h_paused);
	h->replay_marked = row_bool(tup, desc, Anum_h_replay);
	h->ack_timeout_ms = row_int32(tup, desc, Anum_h_ack_timeout_ms);
	h->max_batch_bytes = row_int32(tup, desc, Anum_h_max_batch_bytes);
	if (!subxact_run(pump_for_call, &call, &error))
	{
		ereport(WARNING,
				(errmsg("%s can't read its pump: %s", h->what, error),
				 errhint("It is tried again every %d s.", HANDLER_RELOAD_BROKEN_MS / 1000)));
		handler_record_error(h, error);
		MemoryContextDelete(cxt);
		return NULL;
	}
	h->pump = call.pump;
	h->tracker = tracker_create(cxt, h->max_in_flight, h->key_order);
	if (row_bool(tup, desc, Anum_h_function_missing))
	{
		ereport(WARNING,
				(errmsg("function of cluster handler \"%s\" does not exist", h->name),
				 errhint("Set another one with cluster.alter_handler().")));
		h->function = InvalidOid;
	}
	if (h->function != InvalidOid)
		describe_function(h, cxt);
	return h;
}

/*
 * The handlers of a coordinator as they are now, each in a memory context
 * of its own below "parent", with its own pump.  Runs in a transaction.
 * Sets *broken when a handler was left out because its pump can't be
 * loaded.
 */
List *
handler_load_all(int32 coordinator_id, MemoryContext parent, bool *broken)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(coordinator_id)};
	SPITupleTable *rows;
	uint64		n;
	List	   *handlers = NIL;

	spi_exec_checked("SELECT h.id, h.name, h.function::pg_catalog.oid, h.owner::pg_catalog.oid, "
					 "       h.ordering = 'key', h.batch_size, h.max_attempts, h.max_in_flight, h.paused, "
					 "       EXISTS (SELECT FROM cluster.dead_letters d WHERE d.handler_id = h.id AND d.replay), "
					 "       h.pump_id, "
					 "       h.function IS NOT NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc f WHERE f.oid = h.function), "
					 "       (extract(epoch FROM h.ack_timeout) * 1000)::int, h.max_batch_bytes, "
					 HANDLER_DEFINITION
					 "  FROM cluster.handler h JOIN cluster.pump p ON p.id = h.pump_id "
					 " WHERE p.coordinator_id = $1 ORDER BY p.id, h.id",
					 1, types, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	n = SPI_processed;
	for (uint64 row = 0; row < n; row++)
	{
		HandlerRun *h = handler_from_row(rows->vals[row], rows->tupdesc, parent);
		MemoryContext old;

		if (h == NULL)
		{
			*broken = true;
			continue;
		}
		old = MemoryContextSwitchTo(parent);
		handlers = lappend(handlers, h);
		MemoryContextSwitchTo(old);
	}
	return handlers;
}

/* Is "loaded" the handler "h" runs, unchanged? Then h goes on as it is. */
bool
handler_unchanged(const HandlerRun *h, const HandlerRun *loaded)
{
	return h->id == loaded->id && strcmp(h->definition, loaded->definition) == 0;
}

/* A handler that is no longer run: its pump's plans and its memory. */
void
handler_free(HandlerRun *h)
{
	pump_release(h->pump);
	MemoryContextDelete(h->cxt);
}

void
handler_check_rights(HandlerRun *h)
{
	Oid			types[2] = {INT4OID, OIDOID};
	Datum		values[2] = {Int32GetDatum(h->pump->id), ObjectIdGetDatum(h->owner)};
	bool		isnull;

	if (OidIsValid(h->function) &&
		pg_proc_aclcheck(h->function, h->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role %s may not execute the function of %s",
						GetUserNameFromId(h->owner, false), h->what),
				 errdetail("The function is %s.", format_procedure(h->function))));
	/* the pump owner's members need no look-up of the grants */
	if (has_privs_of_role(h->owner, h->pump->owner))
		return;
	spi_exec_checked("SELECT cluster._may_read_pump($1, $2::pg_catalog.regrole)",
					 2, types, values, NULL, SPI_OK_SELECT);
	if (!DatumGetBool(spi_getdatum(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role %s may not read %s", GetUserNameFromId(h->owner, false),
						h->pump->what),
				 errhint("The pump's owner can allow it with cluster.grant_pump().")));
}

/*
 * A position's snapshots are of transaction ids this cluster has handed
 * out.  One beyond the next is from another cluster's xid space (a restore
 * from pg_dump elsewhere): the events of new transactions would look done
 * to it and be skipped, so the handler stops, visibly, instead.
 */
static void
check_cursor(HandlerRun *h, const Position *p)
{
	uint64		next = U64FromFullTransactionId(ReadNextFullTransactionId());
	uint64		xmax = txsnap_xmax(p->step ? p->step : p->snapshot);

	if (xmax > next)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the cursor of %s is ahead of this server's transaction ids", h->what),
				 errdetail("Its snapshot's xmax is " UINT64_FORMAT "; the next transaction id is " UINT64_FORMAT ".",
						   xmax, next),
				 errhint("The handler was probably restored from another cluster. Move its cursor with cluster.reset_handler().")));
}

/*
 * The handler as the last commit left it: the tracker at its cursor,
 * everything the last leader read after it read again (pump_restore),
 * with the done events done and the failed ones' attempts, so that only
 * what was really in flight goes out again.
 */
void
handler_load(HandlerRun *h)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(h->id)};
	bool		isnull;
	Position	cursor;
	Position	read;

	/* done: [from txid, from id, to txid, to id, count] */
	spi_exec_checked("WITH h AS (SELECT epoch, state || CASE WHEN state ? 'read' THEN '{}' "
					 "                 ELSE pg_catalog.jsonb_build_object('read', state -> 'cursor') END AS state "
					 "             FROM cluster.handler WHERE id = $1), "
					 "s AS (SELECT (e ->> 0)::pg_catalog.xid8 AS txid, (e ->> 1)::pg_catalog.int8 AS id, "
					 "             (e ->> 2)::pg_catalog.xid8 AS to_txid, (e ->> 3)::pg_catalog.int8 AS to_id, "
					 "             -1 AS attempts, NULL::pg_catalog.text AS error "
					 "        FROM h, pg_catalog.jsonb_array_elements(h.state -> 'done') e "
					 "      UNION ALL "
					 "      SELECT (r.value ->> 'txid')::pg_catalog.xid8, r.key::pg_catalog.int8, "
					 "             (r.value ->> 'txid')::pg_catalog.xid8, r.key::pg_catalog.int8, "
					 "             (r.value ->> 'attempts')::int, r.value ->> 'error' "
					 "        FROM h, pg_catalog.jsonb_each(h.state -> 'retry') r) "
					 "SELECT h.epoch, " POSITION_COLUMNS("cursor") ", " POSITION_COLUMNS("read") ", "
					 "       ARRAY(SELECT s.txid::pg_catalog.text FROM s ORDER BY s.txid, s.id), "
					 "       ARRAY(SELECT s.id FROM s ORDER BY s.txid, s.id), "
					 "       ARRAY(SELECT s.to_txid::pg_catalog.text FROM s ORDER BY s.txid, s.id), "
					 "       ARRAY(SELECT s.to_id FROM s ORDER BY s.txid, s.id), "
					 "       ARRAY(SELECT s.attempts FROM s ORDER BY s.txid, s.id), "
					 "       ARRAY(SELECT s.error FROM s ORDER BY s.txid, s.id) "
					 "  FROM h",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "handler %d disappeared", h->id);
	h->epoch = DatumGetInt32(spi_getdatum(0, Anum_load_epoch, &isnull));
	cursor = load_position(Anum_load_cursor);
	read = load_position(Anum_load_read);
	check_cursor(h, &cursor);
	check_cursor(h, &read);
	tracker_reset(h->tracker, &cursor);
	load_restore(h);
	pump_restore(h->pump, h->tracker, &read);
	tracker_restore_end(h->tracker);
}

static void
insert_dead_letters(HandlerRun *h, List *dead)
{
	int			n = list_length(dead);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *events = palloc(sizeof(Datum) * n);
	Datum	   *attempts = palloc(sizeof(Datum) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	Oid			types[5] = {INT4OID, INT8ARRAYOID, JSONBARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	int			k = 0;
	ListCell   *lc;

	foreach(lc, dead)
	{
		DeadLetter *dl = lfirst(lc);

		ids[k] = Int64GetDatum(dl->event_id);
		events[k] = JsonbPGetDatum(dl->event);
		attempts[k] = Int32GetDatum(dl->attempts);
		errors[k] = CStringGetTextDatum(dl->error ? dl->error : "");
		k++;
	}
	values[0] = Int32GetDatum(h->id);
	values[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(events, n, JSONBOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(attempts, n, INT4OID, 4, true, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_array(errors, n, TEXTOID, -1, false, TYPALIGN_INT));
	spi_exec_checked("INSERT INTO cluster.dead_letters (handler_id, event_id, event, attempts, last_error) "
					 "SELECT $1, d.id, d.event, d.attempts, d.error "
					 "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), "
					 "pg_catalog.unnest($4), pg_catalog.unnest($5)) AS d(id, event, attempts, error)",
					 5, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Check a state patch and apply it to the handler's state at once, in the
 * caller's (sub)transaction: a bad patch, or one that can't be applied to
 * the state as it is, fails where it came from (the function's call, the
 * worker's delivery), never the round's commit.  The next patch sees the
 * state as patched; the round's fenced commit makes it durable.
 */
void
handler_apply_patch(HandlerRun *h, Jsonb *patch)
{
	Oid			types[2] = {INT4OID, JSONBOID};
	Datum		values[2] = {Int32GetDatum(h->id), JsonbPGetDatum(patch)};

	spi_exec_checked("SELECT cluster._check_patch($2)", 2, types, values, NULL,
					 SPI_OK_SELECT);
	spi_exec_checked("UPDATE cluster.handler SET user_state = cluster._apply_patch(user_state, $2) WHERE id = $1",
					 2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * The fenced commit of a round, as deltas of the handler's progress: the
 * new cursor, read position, done ranges and retries replace the old ones, the counters
 * grow, last_error is set or (when events were handled again) cleared.
 * Only while the lease still carries the leader's fence (locked FOR SHARE,
 * so a takeover waits for it) and the handler's epoch is unchanged (a
 * reset raises it).  One statement, planned once per engine (generic).
 */
#define COMMIT_ARGS 12
static const char *commit_sql =
"UPDATE cluster.handler h "
"   SET state = (h.state "
"       || pg_catalog.jsonb_build_object('cursor', $5, 'done', $6, 'retry', $7, 'read', $8) "
"       || CASE WHEN $9 <> 0 OR $10 <> 0 OR $11 <> 0 THEN pg_catalog.jsonb_build_object('counters', "
"              COALESCE(h.state -> 'counters', '{}') || pg_catalog.jsonb_build_object("
"                  'processed', COALESCE((h.state #>> '{counters,processed}')::pg_catalog.int8, 0) + $9, "
"                  'failed', COALESCE((h.state #>> '{counters,failed}')::pg_catalog.int8, 0) + $10, "
"                  'dead_lettered', COALESCE((h.state #>> '{counters,dead_lettered}')::pg_catalog.int8, 0) + $11)) "
"          ELSE '{}' END "
"       || CASE WHEN $12 IS NOT NULL THEN pg_catalog.jsonb_build_object('last_error', "
"              pg_catalog.jsonb_build_object('message', $12, 'at', pg_catalog.now())) "
"          ELSE '{}' END) "
"       - CASE WHEN $12 IS NULL AND $9 > 0 THEN 'last_error' ELSE '' END "
"  FROM (SELECT FROM cluster.lease l WHERE l.key = $3 AND l.fence = $4 FOR SHARE) fenced "
" WHERE h.id = $1 AND h.epoch = $2";

static SPIPlanPtr
commit_plan(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[COMMIT_ARGS] = {INT4OID, INT4OID, TEXTOID, INT8OID, JSONBOID, JSONBOID,
	JSONBOID, JSONBOID, INT8OID, INT8OID, INT8OID, TEXTOID};

	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(commit_sql, COMMIT_ARGS, types,
										   CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the handler commit: %s",
				 SPI_result_code_string(SPI_result));
		plan = p;
	}
	return plan;
}

bool
handler_commit(HandlerRun *h, BatchOutcome *out, const char *lease_key,
			   int64 fence)
{
	StringInfoData cursor,
				read,
				done,
				retry;
	Datum		values[COMMIT_ARGS];
	char		nulls[COMMIT_ARGS];
	int			i = 0;

	initStringInfo(&cursor);
	initStringInfo(&read);
	initStringInfo(&done);
	initStringInfo(&retry);
	tracker_state_json(h->tracker, &cursor, &read, &done, &retry);
	memset(nulls, ' ', sizeof(nulls));
	values[i++] = Int32GetDatum(h->id);
	values[i++] = Int32GetDatum(h->epoch);
	values[i++] = CStringGetTextDatum(lease_key);
	values[i++] = Int64GetDatum(fence);
	values[i++] = DirectFunctionCall1(jsonb_in, CStringGetDatum(cursor.data));
	values[i++] = DirectFunctionCall1(jsonb_in, CStringGetDatum(done.data));
	values[i++] = DirectFunctionCall1(jsonb_in, CStringGetDatum(retry.data));
	values[i++] = DirectFunctionCall1(jsonb_in, CStringGetDatum(read.data));
	values[i++] = Int64GetDatum(out->processed);
	values[i++] = Int64GetDatum(out->failed);
	values[i++] = Int64GetDatum(list_length(out->dead));
	nulls[i] = out->last_error ? ' ' : 'n';
	values[i++] = out->last_error ? CStringGetTextDatum(out->last_error) : (Datum) 0;
	Assert(i == COMMIT_ARGS);

	if (SPI_execute_plan(commit_plan(), values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "committing %s failed", h->what);
	if (SPI_processed == 0)
		return false;
	if (out->dead != NIL)
		insert_dead_letters(h, out->dead);
	return true;
}

/* An unexpected error of the handler's round, for cluster.handlers. */
void
handler_record_error(HandlerRun *h, const char *message)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(h->id), CStringGetTextDatum(message)};

	spi_exec_checked("UPDATE cluster.handler SET state = pg_catalog.jsonb_set(state, '{last_error}', "
					 "pg_catalog.jsonb_build_object('message', $2, 'at', pg_catalog.now())) WHERE id = $1",
					 2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * Up to "limit" dead letters marked for replay, oldest first, locked: their
 * ids, their events' positions (the event id; txid 0), the events (as
 * delivered) and next attempt numbers.  Fewer than "limit": these are the
 * last ones.
 */
/* the columns of handler_replay_fetch's query */
#define Anum_dl_id				1
#define Anum_dl_event			2
#define Anum_dl_attempt			3
#define Anum_dl_event_id		4

int
handler_replay_fetch(HandlerRun *h, int limit, int64 **dead_letter_ids,
					 EventPos **positions, Event ***events, int **attempts)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(h->id), Int32GetDatum(limit)};
	uint64		n;

	spi_exec_checked("SELECT id, event, attempts + 1, event_id FROM cluster.dead_letters "
					 "WHERE handler_id = $1 AND replay ORDER BY id LIMIT $2 FOR UPDATE",
					 2, types, values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	*dead_letter_ids = palloc(sizeof(int64) * Max(n, 1));
	*positions = palloc0(sizeof(EventPos) * Max(n, 1));
	*events = palloc(sizeof(Event *) * Max(n, 1));
	*attempts = palloc(sizeof(int) * Max(n, 1));
	for (uint64 row = 0; row < n; row++)
	{
		bool		isnull;

		(*dead_letter_ids)[row] = DatumGetInt64(spi_getdatum(row, Anum_dl_id, &isnull));
		(*attempts)[row] = DatumGetInt32(spi_getdatum(row, Anum_dl_attempt, &isnull));
		(*positions)[row].id = DatumGetInt64(spi_getdatum(row, Anum_dl_event_id, &isnull));
		(*events)[row] = palloc(sizeof(Event));
		protocol_event_from_jsonb(DatumGetJsonbP(spi_getdatum(row, Anum_dl_event, &isnull)),
								  (*positions)[row].id, (*events)[row]);
	}
	return (int) n;
}

/*
 * The outcome of a replayed dead letter, in the round's transaction: done
 * (error NULL) deletes it; a failure counts an attempt and leaves it dead.
 */
void
handler_replay_outcome(HandlerRun *h, int64 dead_letter_id, const char *error,
					   BatchOutcome *out)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(dead_letter_id), (Datum) 0};

	if (error == NULL)
	{
		out->processed++;
		spi_exec_checked("DELETE FROM cluster.dead_letters WHERE id = $1",
						 1, types, values, NULL, SPI_OK_DELETE);
		return;
	}
	out->failed++;
	out->last_error = pstrdup(error);
	values[1] = CStringGetTextDatum(error);
	spi_exec_checked("UPDATE cluster.dead_letters SET attempts = attempts + 1, "
					 "last_error = $2, replay = false, failed_at = pg_catalog.now() WHERE id = $1",
					 2, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * A failed attempt of one event: it waits for its retry, or, with its
 * attempts used up, is dead-lettered (copied out: the tracker moves on).
 */
static void
event_failed(HandlerRun *h, TrackedEvent *ev, char *error, int max_attempts,
			 BatchOutcome *out)
{
	out->failed++;
	out->last_error = error;
	if (tracker_failed(h->tracker, ev, error, max_attempts, GetCurrentTimestamp()))
	{
		DeadLetter *dl = palloc(sizeof(DeadLetter));

		dl->event_id = ev->pos.id;
		dl->event = protocol_event_jsonb(h->pump->name, &ev->event, ev->attempts);
		dl->attempts = ev->attempts;
		dl->error = error;
		out->dead = lappend(out->dead, dl);
		tracker_done(h->tracker, ev);
	}
}

void
handler_event_failed(HandlerRun *h, TrackedEvent *ev, char *error,
					 BatchOutcome *out)
{
	event_failed(h, ev, error, h->max_attempts, out);
}

/* An event that can never be handed out (too large): dead-lettered at once. */
void
handler_event_refused(HandlerRun *h, TrackedEvent *ev, char *error,
					  BatchOutcome *out)
{
	event_failed(h, ev, error, 1, out);
}
