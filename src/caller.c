/*-------------------------------------------------------------------------
 *
 * caller.c
 *	  SQL functions that act for their caller with the extension's rights.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "caller.h"
#include "pump.h"
#include "restricted.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(cluster_for_caller);
PG_FUNCTION_INFO_V1(cluster_lag);
PG_FUNCTION_INFO_V1(cluster_handler_lag);
PG_FUNCTION_INFO_V1(cluster_position_before);

/*
 * Become the owner of the running function (the extension's owner), as a
 * SECURITY DEFINER function would; SPI is connected.  The caller's
 * identity is returned; become_caller() goes back to it.
 */
static Oid
become_owner(FunctionCallInfo fcinfo, Restricted *caller)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);

	restricted_become_definer(caller, owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return caller->save_userid;
}

static void
become_caller(Restricted *caller)
{
	SPI_finish();
	restricted_exit(caller);
}

/* "cluster._name($1, ..., $n, $n+1)" for the function being called */
static char *
internal_call(Oid fn, int nargs)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.%s(",
					 quote_identifier(get_namespace_name(get_func_namespace(fn))),
					 quote_identifier(psprintf("_%s", get_func_name(fn))));
	for (int i = 1; i <= nargs + 1; i++)
		appendStringInfo(&sql, "%s$%d", i > 1 ? ", " : "", i);
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

Datum
cluster_for_caller(PG_FUNCTION_ARGS)
{
	Oid			fn = fcinfo->flinfo->fn_oid;
	Oid			rettype;
	Oid		   *argtypes;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
	Restricted	caller;
	Datum		result = (Datum) 0;
	bool		isnull = true;

	rettype = get_func_signature(fn, &argtypes, &nargs);
	types = palloc(sizeof(Oid) * (nargs + 1));
	values = palloc(sizeof(Datum) * (nargs + 1));
	nulls = palloc(nargs + 1);
	for (int i = 0; i < nargs; i++)
	{
		types[i] = argtypes[i];
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	types[nargs] = REGROLEOID;
	values[nargs] = ObjectIdGetDatum(become_owner(fcinfo, &caller));
	nulls[nargs] = ' ';

	spi_exec_checked(internal_call(fn, nargs), nargs + 1, types, values, nulls,
					 SPI_OK_SELECT);
	if (rettype != VOIDOID)
	{
		int16		typlen;
		bool		typbyval;

		get_typlenbyval(rettype, &typlen, &typbyval);
		result = spi_getdatum(0, 1, &isnull);
		if (!isnull)
			result = SPI_datumTransfer(result, typbyval, typlen);
	}
	become_caller(&caller);
	if (isnull)
		PG_RETURN_NULL();
	return result;
}

/* the columns of a handler's row, as handler_position reads them */
#define Anum_hp_pump_id		1
#define Anum_hp_owner		2
#define Anum_hp_done		3
#define Anum_hp_cursor		4	/* its POSITION_COLUMNS */

/*
 * A handler's pump, owner, cursor and the number of done events above the
 * cursor (read from the same row version); false when there is no such
 * handler.
 */
static bool
handler_position(int32 handler_id, Pump **pump, Oid *owner, Position *cursor,
				 int64 *done)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(handler_id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	spi_exec_checked("SELECT h.pump_id, h.owner::pg_catalog.oid, "
					 "COALESCE((SELECT pg_catalog.sum((d ->> 4)::pg_catalog.int8) "
					 "   FROM pg_catalog.jsonb_array_elements(h.state -> 'done') d), 0)::pg_catalog.int8, "
					 POSITION_COLUMNS("cursor")
					 " FROM cluster.handler h WHERE h.id OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_hp_owner, &isnull));
	if (!position_from_row(tup, desc, Anum_hp_cursor, cursor))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the cursor of cluster handler with id %d has no snapshot", handler_id)));
	if (done)
		*done = DatumGetInt64(SPI_getbinval(tup, desc, Anum_hp_done, &isnull));
	*pump = pump_load(DatumGetInt32(SPI_getbinval(tup, desc, Anum_hp_pump_id, &isnull)),
					  CurrentMemoryContext);
	return true;
}

/*
 * Does reading "relid" run no user code?  A plain table without row
 * security runs none; a view, a policy or a foreign table runs its owner's.
 */
static bool
reads_no_user_code(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		plain;

	if (!HeapTupleIsValid(tup))
		return false;
	plain = ((Form_pg_class) GETSTRUCT(tup))->relkind == RELKIND_RELATION &&
		!((Form_pg_class) GETSTRUCT(tup))->relrowsecurity;
	ReleaseSysCache(tup);
	return plain;
}

/*
 * May "caller" know how many events a handler has ahead of it?  Its
 * owner, the pump's owner and whoever may read the source may.  So may
 * pg_read_all_stats (pg_monitor) where counting runs no user code: a count
 * and an age are statistics, like pg_stat_user_tables' row counts, but
 * the count runs in the caller's session, and the owner's views and
 * policies are not code a monitoring role was given the right to run.
 */
static bool
may_see_source(Oid caller, Pump *pump, Oid handler_owner)
{
	Oid			source = pump->source;

	if (has_privs_of_role(caller, pump->owner) || has_privs_of_role(caller, handler_owner))
		return true;
	if (!OidIsValid(source))
		source = get_relname_relid("events", get_namespace_oid("cluster", false));
	if (has_privs_of_role(caller, ROLE_PG_READ_ALL_STATS) && reads_no_user_code(source))
		return true;
	return pg_class_aclcheck(source, caller, ACL_SELECT) == ACLCHECK_OK;
}

typedef struct LagCall
{
	int32		handler_id;
	Oid			caller;
	bool		undone;			/* count only events not done yet */
	bool		known;			/* the caller may know, and the count worked */
	int64		events;
	double		seconds;
} LagCall;

/* Everything that reads the pump, the look-up of its source included. */
static void
lag_call(void *arg)
{
	LagCall    *call = arg;
	Pump	   *pump;
	Oid			handler_owner;
	Position	cursor;
	int64		done;

	if (handler_position(call->handler_id, &pump, &handler_owner, &cursor, &done) &&
		may_see_source(call->caller, pump, handler_owner))
	{
		pump_lag(pump, &cursor, &call->events, &call->seconds);
		/* done is of the cursor's row version: never more than counted */
		if (call->undone)
			call->events = Max(call->events - done, 0);
		call->known = true;
	}
}

#define LAG_COLS 2

/*
 * cluster._lag(handler_id int, OUT events bigint, OUT seconds float8): the
 * events after the handler's cursor (0.1); cluster._handler_lag(): those of
 * them not done yet, counted against the same version of the handler's row
 * (0.2: subtracting a done list read by the view's own snapshot could go
 * below the truth while the leader moved on).  NULLs for a caller who may
 * not know, or when the count fails (the source gone or unreadable): the
 * view over it never fails.
 */
static Datum
lag_result(FunctionCallInfo fcinfo, bool undone)
{
	TupleDesc	desc;
	Datum		values[LAG_COLS] = {0};
	bool		nulls[LAG_COLS] = {true, true};
	Restricted	caller;
	LagCall		call = {0};
	char	   *error;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	call.handler_id = PG_GETARG_INT32(0);
	call.undone = undone;
	call.caller = become_owner(fcinfo, &caller);
	if (subxact_run(lag_call, &call, &error) && call.known)
	{
		int			i = 0;

		nulls[i] = false;
		values[i++] = Int64GetDatum(call.events);
		nulls[i] = false;
		values[i++] = Float8GetDatum(call.seconds);
		Assert(i == LAG_COLS);
	}
	become_caller(&caller);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

Datum
cluster_lag(PG_FUNCTION_ARGS)
{
	return lag_result(fcinfo, false);
}

Datum
cluster_handler_lag(PG_FUNCTION_ARGS)
{
	return lag_result(fcinfo, true);
}

/*
 * cluster._position_before(handler_id int, at timestamptz) returns jsonb:
 * the cursor (position.h) before the first event created at or after
 * "at", for the handler's owner (reset_handler).
 */
Datum
cluster_position_before(PG_FUNCTION_ARGS)
{
	Restricted	caller;
	Oid			caller_id;
	Pump	   *pump;
	Oid			handler_owner;
	Position	pos;
	StringInfoData json;

	caller_id = become_owner(fcinfo, &caller);
	if (!handler_position(PG_GETARG_INT32(0), &pump, &handler_owner, &pos, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("cluster handler with id %d does not exist", PG_GETARG_INT32(0))));
	if (!has_privs_of_role(caller_id, handler_owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for cluster handler with id %d", PG_GETARG_INT32(0))));
	pos = pump_position_before(pump, PG_GETARG_TIMESTAMPTZ(1));
	initStringInfo(&json);
	position_json(&json, &pos);
	become_caller(&caller);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
