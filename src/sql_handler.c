/*-------------------------------------------------------------------------
 *
 * sql_handler.c
 *	  Run a handler's SQL function on a batch of events.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "sql_handler.h"
#include "xact.h"

/* events ++ attempts -> the batch array, built by PostgreSQL's jsonb code */
static const char *batch_sql =
"SELECT pg_catalog.jsonb_agg(e.ev OPERATOR(pg_catalog.||) "
"pg_catalog.jsonb_build_object('attempt', e.at) ORDER BY e.n) "
"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.jsonb[]), "
"pg_catalog.unnest($2::pg_catalog.int4[])) WITH ORDINALITY AS e(ev, at, n)";

/* The batch as the protocol sends it: events with their attempt numbers. */
Datum
sql_handler_batch(Jsonb **events, int *attempts, int n)
{
	Datum	   *evs = palloc(sizeof(Datum) * n);
	Datum	   *ats = palloc(sizeof(Datum) * n);
	Datum		values[2];
	Oid			types[2] = {JSONBARRAYOID, INT4ARRAYOID};
	bool		isnull;

	for (int i = 0; i < n; i++)
	{
		evs[i] = JsonbPGetDatum(events[i]);
		ats[i] = Int32GetDatum(attempts[i]);
	}
	values[0] = PointerGetDatum(construct_array(evs, n, JSONBOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(ats, n, INT4OID, 4, true, TYPALIGN_INT));
	spi_exec_checked(batch_sql, 2, types, values, NULL, SPI_OK_SELECT);
	return SPI_datumTransfer(spi_getdatum(0, 1, &isnull), false, -1);
}

static void
check_patch(Datum patch)
{
	Oid			types[1] = {JSONBOID};
	Datum		values[1] = {patch};

	spi_exec_checked("SELECT cluster._check_patch($1)", 1, types, values, NULL,
					 SPI_OK_SELECT);
}

/* Call the function as the handler's owner; returns the patch or NULL. */
static Jsonb *
call_as_owner(HandlerRun *h, Datum batch)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec_context;
	Datum		result;

	/* the owner may have lost the right to run it since */
	if (pg_proc_aclcheck(h->function, h->owner, ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(h->function));
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(h->owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	InitFunctionCallInfoData(*fcinfo, &h->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = batch;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (fcinfo->isnull || get_func_rettype(h->function) != JSONBOID)
		return NULL;
	return DatumGetJsonbP(result);
}

/*
 * One call in a subtransaction.  On success *patch is the checked patch
 * (or NULL); on failure *error is the error's message and nothing the
 * call did remains.
 */
bool
sql_handler_call(HandlerRun *h, Jsonb **events, int *attempts, int n,
				 Jsonb **patch, char **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = false;

	*patch = NULL;
	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		Datum		batch = sql_handler_batch(events, attempts, n);
		Jsonb	   *result = call_as_owner(h, batch);

		if (result)
			check_patch(JsonbPGetDatum(result));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		*patch = result;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		*error = edata->message;
	}
	PG_END_TRY();
	return ok;
}

static bool
call_events(HandlerRun *h, TrackedEvent **batch, int n, Jsonb **patch,
			char **error)
{
	Jsonb	  **events = palloc(sizeof(Jsonb *) * n);
	int		   *attempts = palloc(sizeof(int) * n);

	for (int i = 0; i < n; i++)
	{
		events[i] = batch[i]->event;
		attempts[i] = batch[i]->attempts + 1;
	}
	return sql_handler_call(h, events, attempts, n, patch, error);
}

void
sql_handler_run(HandlerRun *h, TrackedEvent **batch, int n, BatchOutcome *out)
{
	Jsonb	   *patch;
	char	   *error;
	uint32	   *failed_keys;
	int			n_failed = 0;

	if (call_events(h, batch, n, &patch, &error))
	{
		for (int i = 0; i < n; i++)
			tracker_done(h->tracker, batch[i]);
		out->processed += n;
		if (patch)
			out->patches = lappend(out->patches, patch);
		return;
	}
	if (n == 1)
	{
		handler_event_failed(h, batch[0], error, out);
		return;
	}

	/* isolate the bad events: one at a time, in order */
	failed_keys = palloc(sizeof(uint32) * n);
	for (int i = 0; i < n; i++)
	{
		TrackedEvent *ev = batch[i];
		bool		held = false;

		for (int k = 0; k < n_failed && h->key_order && ev->has_key; k++)
			held |= (failed_keys[k] == ev->key_hash);
		if (held)
		{
			ev->selected = false;
			continue;
		}
		if (call_events(h, &ev, 1, &patch, &error))
		{
			tracker_done(h->tracker, ev);
			out->processed++;
			if (patch)
				out->patches = lappend(out->patches, patch);
		}
		else
		{
			handler_event_failed(h, ev, error, out);
			if (ev->has_key)
				failed_keys[n_failed++] = ev->key_hash;
		}
	}
}
