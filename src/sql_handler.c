/*-------------------------------------------------------------------------
 *
 * sql_handler.c
 *	  Run a handler's SQL function on a batch of events.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "protocol.h"
#include "restricted.h"
#include "sql_handler.h"
#include "xact.h"

#define GROUP_BATCHES 16		/* batches of a backlog to one commit */
#define GROUP_MS 20

/*
 * Call the function as the handler's owner, in a security-restricted
 * operation (see restricted.h); returns the patch or NULL.  The owner's
 * right to execute it was checked at the start of the round.
 */
static Jsonb *
call_as_owner(HandlerRun *h, Datum batch)
{
	LOCAL_FCINFO(fcinfo, 1);
	Restricted	r;
	Datum		result;

	restricted_enter(&r, h->owner, h->what);
	InitFunctionCallInfoData(*fcinfo, &h->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = batch;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	restricted_exit(&r);

	if (fcinfo->isnull || !h->returns_patch)
		return NULL;
	return DatumGetJsonbP(result);
}

typedef struct Call
{
	HandlerRun *h;
	Event	  **events;
	int		   *attempts;
	int			n;
} Call;

/* the columns of cluster.event */
#define Anum_event_id			1
#define Anum_event_stream		2
#define Anum_event_key			3
#define Anum_event_payload		4
#define Anum_event_headers		5
#define Anum_event_created_at	6
#define Anum_event_attempt		7
#define EVENT_COLS				7

/*
 * A batch as cluster.event[]: the events' values as the pump read them,
 * the payloads as stored.
 */
static Datum
event_rows(Call *call)
{
	TupleDesc	desc = call->h->event_desc;
	Datum		stream = CStringGetTextDatum(call->h->pump->name);
	Datum	   *rows = palloc(sizeof(Datum) * call->n);
	int16		len;
	bool		byval;
	char		align;

	if (desc->natts != EVENT_COLS)
		elog(ERROR, "cluster.event has %d columns, not %d", desc->natts, EVENT_COLS);
	for (int i = 0; i < call->n; i++)
	{
		Event	   *ev = call->events[i];
		Datum		values[EVENT_COLS];
		bool		nulls[EVENT_COLS] = {0};

		values[Anum_event_id - 1] = Int64GetDatum(ev->id);
		values[Anum_event_stream - 1] = stream;
		values[Anum_event_key - 1] = ev->key ? CStringGetTextDatum(ev->key) : (Datum) 0;
		nulls[Anum_event_key - 1] = (ev->key == NULL);
		values[Anum_event_payload - 1] = JsonbPGetDatum(ev->payload);
		values[Anum_event_headers - 1] = ev->headers ? JsonbPGetDatum(ev->headers) : (Datum) 0;
		nulls[Anum_event_headers - 1] = (ev->headers == NULL);
		values[Anum_event_created_at - 1] = TimestampTzGetDatum(ev->created_at);
		nulls[Anum_event_created_at - 1] = !ev->has_created_at;
		values[Anum_event_attempt - 1] = Int32GetDatum(call->attempts[i]);
		rows[i] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	get_typlenbyvalalign(desc->tdtypeid, &len, &byval, &align);
	return PointerGetDatum(construct_array(rows, call->n, desc->tdtypeid, len, byval, align));
}

static void
call_in_subxact(void *arg)
{
	Call	   *call = arg;
	HandlerRun *h = call->h;
	Datum		batch;
	Jsonb	   *patch;

	if (h->event_desc)
		batch = event_rows(call);
	else
		batch = JsonbPGetDatum(protocol_event_batch(h->pump->name, call->events,
													call->attempts, call->n));
	patch = call_as_owner(h, batch);
	if (patch)
		handler_apply_patch(h, patch);
}

/*
 * One call in a subtransaction: on failure *error is the error's message
 * and nothing the call did (its patch included) remains.  The batch and
 * what the call allocates live in a context of their own, emptied after
 * the call: a subtransaction's memory stays until its transaction ends,
 * and a backlog's batches would otherwise pile up, megabytes of them, in
 * one round.
 */
static bool
call_batch(HandlerRun *h, Event **events, int *attempts, int n,
		   char **error)
{
	static MemoryContext batch_cxt = NULL;
	Call		call = {h, events, attempts, n};
	MemoryContext old;
	bool		ok;

	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopMemoryContext, "cluster batch",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(batch_cxt);
	ok = subxact_run(call_in_subxact, &call, error);
	MemoryContextSwitchTo(old);
	if (!ok)
		*error = pstrdup(*error);
	MemoryContextReset(batch_cxt);
	return ok;
}

static bool
call_events(HandlerRun *h, TrackedEvent **batch, int n, char **error)
{
	Event	  **events = palloc(sizeof(Event *) * n);
	int		   *attempts = palloc(sizeof(int) * n);

	for (int i = 0; i < n; i++)
	{
		events[i] = &batch[i]->event;
		attempts[i] = batch[i]->attempts + 1;
	}
	return call_batch(h, events, attempts, n, error);
}

static void
run_batch(HandlerRun *h, TrackedEvent **batch, int n, BatchOutcome *out)
{
	char	   *error;
	uint32	   *failed_keys;
	int			n_failed = 0;

	if (call_events(h, batch, n, &error))
	{
		for (int i = 0; i < n; i++)
			tracker_done(h->tracker, batch[i]);
		out->processed += n;
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
			tracker_give_back(h->tracker, ev);
			continue;
		}
		if (call_events(h, &ev, 1, &error))
		{
			tracker_done(h->tracker, ev);
			out->processed++;
		}
		else
		{
			handler_event_failed(h, ev, error, out);
			if (ev->has_key)
				failed_keys[n_failed++] = ev->key_hash;
		}
	}
}

/*
 * Hand dead letters marked for replay to the function again, one at a
 * time (replays are not ordered by key), when no worker takes them.
 */
static bool
local_replay(Leader *l, HandlerRun *h, BatchOutcome *out)
{
	int64	   *ids;
	EventPos   *positions;
	Event	  **events;
	int		   *attempts;
	int			n = handler_replay_fetch(h, h->batch_size, &ids, &positions, &events,
										 &attempts);

	for (int i = 0; i < n; i++)
	{
		char	   *error;

		if (call_batch(h, &events[i], &attempts[i], 1, &error))
			error = NULL;
		handler_replay_outcome(h, ids[i], error, out);
	}
	return n == h->batch_size;
}

/*
 * Handle what is ready, batch by batch; a backlog is handled several
 * batches to a commit (GROUP_BATCHES, or GROUP_MS, whichever ends first).
 */
static long
local_run(Leader *l, HandlerRun *h, BatchOutcome *out)
{
	Tracker    *t = h->tracker;
	TrackedEvent **batch = palloc(sizeof(TrackedEvent *) * h->batch_size);
	TimestampTz start = GetCurrentTimestamp();
	int64		before = out->processed + out->failed;

	for (int i = 0; i < GROUP_BATCHES; i++)
	{
		int			n = tracker_select(t, h->batch_size, 0, 0, GetCurrentTimestamp(),
									   batch, NULL, NULL);
		int			room;
		bool		pending;

		if (n == 0)
			break;
		run_batch(h, batch, n, out);
		tracker_advance(t);
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), GROUP_MS))
			break;
		room = Min(tracker_room(t), h->batch_size);
		if (room > 0)
			(void) pump_read(h->pump, t, room, &pending);
	}
	return out->processed + out->failed > before ? 0 : -1;
}

/* one batch per round is read for it; more are read as it goes */
static int
local_appetite(HandlerRun *h)
{
	return h->batch_size;
}

static bool
local_ready(HandlerRun *h)
{
	return h->function != InvalidOid;
}

/* Nothing is ever in flight here: a call ends within its round. */
static bool
local_stirred(HandlerRun *h)
{
	return false;
}

static void
local_settle(Leader *l, HandlerRun *h, BatchOutcome *out)
{
}

static void
local_forget(HandlerRun *h)
{
}

const Executor local_executor = {
	.name = "function",
	.ready = local_ready,
	.appetite = local_appetite,
	.stirred = local_stirred,
	.settle = local_settle,
	.replay = local_replay,
	.run = local_run,
	.forget = local_forget,
};
