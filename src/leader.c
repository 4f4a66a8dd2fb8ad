/*-------------------------------------------------------------------------
 *
 * leader.c
 *	  The leader's loop over its handlers.
 *
 * A round is one short transaction: read events into the tracker, then
 * either hand batches to the handler's connected workers and take in their
 * answers (delivery.c), or, with no worker connected, run the SQL function
 * here (sql_handler.c); move the cursor and commit cursor and state.  A
 * handler gets rounds until it has nothing ready or its time slice is
 * used; then the next handler's turn comes, and the engine renews its lease
 * in between.  A handler with nothing new since its last round is skipped.
 * An unexpected error costs the handler its round and a backoff, never the
 * engine.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "delivery.h"
#include "handler.h"
#include "leader.h"
#include "shmem.h"
#include "sql_handler.h"
#include "transport.h"
#include "xact.h"

#define SLICE_MS 100			/* one handler's share of a pass */
#define GROUP_BATCHES 16		/* batches of a backlog to one commit */
#define GROUP_MS 20
#define BLOCKED_MIN_MS 5
#define BLOCKED_MAX_MS 1000
#define ERROR_MIN_MS 1000
#define ERROR_MAX_MS 30000
#define RETENTION_EVERY_MS 60000

static void leader_load(Leader *l);
static void leader_report_workers(void);
static void leader_load_workers(Leader *l);

static long
round_wait(HandlerRun *h, bool caught_up)
{
	long		wait = cluster_poll_interval;
	long		due = tracker_next_due_ms(h->tracker, GetCurrentTimestamp());

	if (due >= 0)
		wait = Min(wait, due);
	if (caught_up && pump_blocked(h->pump, h->tracker->read_pos))
	{
		h->blocked_ms = Min(Max(h->blocked_ms * 2, BLOCKED_MIN_MS), BLOCKED_MAX_MS);
		wait = Min(wait, h->blocked_ms);
	}
	else
		h->blocked_ms = 0;
	return wait;
}

/*
 * One transaction; returns 0 when it did work that may continue at once,
 * else how long to wait.  Workers connected: the batches go to them;
 * none: the SQL function, if any, handles them here.
 */
static long
handler_round(Leader *l, HandlerRun *h)
{
	Tracker    *t = h->tracker;
	BatchOutcome out = {0};
	int			room,
				got = 0,
				n = 0;
	long		wait = 0;
	bool		remote;

	worker_xact_begin("cluster: pumping");
	handler_check_rights(h);
	if (h->needs_load)
	{
		delivery_forget(h);
		handler_load(h);
	}
	if (h->conns != NIL)
		delivery_settle(l, h, &out);
	remote = delivery_remote(h);
	/* dead letters to replay go where live events would */
	if (h->replay_pending && remote)
		delivery_replay(l, h);
	else if (h->replay_pending && h->function != InvalidOid)
		sql_handler_replay(h, &out);
	room = Min(tracker_room(t), h->batch_size);
	if (room > 0 && (remote || h->function != InvalidOid))
		got = pump_read(h->pump, t, room);
	if (remote)
	{
		long		due = delivery_dispatch(l, h, &out);

		wait = round_wait(h, room > 0 && got < room);
		if (due >= 0)
			wait = Min(wait, due);
	}
	else if (h->function != InvalidOid)
	{
		TrackedEvent **batch = palloc(sizeof(TrackedEvent *) * h->batch_size);
		TimestampTz start = GetCurrentTimestamp();

		/* a backlog is handled several batches to a commit */
		for (int i = 0; i < GROUP_BATCHES; i++)
		{
			n = tracker_select(t, h->batch_size, 0, GetCurrentTimestamp(), batch, NULL, NULL);
			if (n == 0)
				break;
			sql_handler_run(h, batch, n, &out);
			tracker_advance(t);
			if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), GROUP_MS))
				break;
			room = Min(tracker_room(t), h->batch_size);
			got = room > 0 ? pump_read(h->pump, t, room) : 0;
		}
		if (out.processed == 0 && out.failed == 0)
			wait = round_wait(h, room > 0 && got < room);
	}
	else
		wait = cluster_poll_interval;

	if (out.processed > 0 || out.failed > 0 || out.patched)
	{
		tracker_advance(t);
		if (!handler_commit(h, &out, l->lease_key, l->fence))
		{
			/* deposed, or the handler was reset: undo the round */
			worker_xact_abort();
			h->needs_load = true;
			l->fence_lost = true;
			return 0;
		}
	}
	worker_xact_commit();
	shmem_handler_report(h->id, tracker_waiting(t));
	return wait;
}

static long
handler_failed(HandlerRun *h, MemoryContext cxt)
{
	ErrorData  *edata = worker_xact_recover(cxt);

	ereport(WARNING,
			(errmsg("cluster handler \"%s\" failed: %s", h->name, edata->message)));
	h->needs_load = true;
	h->error_backoff_ms = Min(Max(h->error_backoff_ms * 2, ERROR_MIN_MS), ERROR_MAX_MS);
	h->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), h->error_backoff_ms);

	worker_xact_begin("cluster: recording a handler error");
	handler_record_error(h, edata->message);
	worker_xact_commit();
	FreeErrorData(edata);
	return h->error_backoff_ms;
}

/*
 * Nothing for this handler since its last round: no event committed, no
 * word from its workers, its own timer not due.  Then the engine's other
 * wakeups (lease renewals) cost it nothing.
 */
static bool
handler_quiet(HandlerRun *h, TimestampTz now)
{
	ListCell   *lc;

	if (h->needs_load || h->replay_pending || now >= h->due ||
		h->publications != shmem_publications())
		return false;
	foreach(lc, h->conns)
	{
		WorkerConn *c = lfirst(lc);

		if (c->in_head || c->just_connected || c->just_lost)
			return false;
	}
	return true;
}

static long
handler_work(Leader *l, HandlerRun *h)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	volatile long wait = 0;

	if (h->paused)
		return cluster_poll_interval;
	if (h->function == InvalidOid && !h->replay_pending && h->conns == NIL)
		return cluster_poll_interval;
	if (start < h->retry_after)
		return TimestampDifferenceMilliseconds(start, h->retry_after);
	if (handler_quiet(h, start))
		return TimestampDifferenceMilliseconds(start, h->due);

	while (wait == 0 && !l->fence_lost &&
		   !TimestampDifferenceExceeds(start, GetCurrentTimestamp(), SLICE_MS))
	{
		h->publications = shmem_publications();
		PG_TRY();
		{
			wait = handler_round(l, h);
			h->error_backoff_ms = 0;
		}
		PG_CATCH();
		{
			wait = handler_failed(h, cxt);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	h->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait);
	return wait;
}

long
leader_work(Leader *l)
{
	long		wait = cluster_poll_interval;
	MemoryContext old = MemoryContextSwitchTo(l->cxt);
	ListCell   *lc;

	if (l->generation != shmem_config_generation())
		leader_load(l);
	/* heartbeats change no setting: look for silent workers from time to time */
	if (l->handlers != NIL && GetCurrentTimestamp() >= l->next_worker_load)
		leader_load_workers(l);
	if (transport_active())
	{
		long		dial = transport_dial(GetCurrentTimestamp());

		if (dial >= 0)
			wait = Min(wait, dial);
	}
	foreach(lc, l->handlers)
		wait = Min(wait, handler_work(l, lfirst(lc)));
	if (transport_active())
		leader_report_workers();
	if (GetCurrentTimestamp() >= l->next_retention)
	{
		retention_run(l);
		l->next_retention = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														RETENTION_EVERY_MS);
	}
	MemoryContextSwitchTo(old);
	return wait;
}

/* the columns of leader_load's query */
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

/* What cluster.workers shows: pushed into shared memory after each pass. */
static void
leader_report_workers(void)
{
	int			n = transport_count();
	WorkerStat *stats = palloc0(sizeof(WorkerStat) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		WorkerConn *c = transport_get(i);
		WorkerStat *stat = &stats[i];

		strlcpy(stat->worker_id, c->id, sizeof(stat->worker_id));
		stat->connected = c->connected;
		stat->reconnects = Max(c->dials - 1, 0);
		delivery_report(c, stat);
	}
	shmem_worker_report(stats, n);
	pfree(stats);
}

/*
 * SPI calls switch CurrentMemoryContext back to SPI's own: everything kept
 * across transactions is allocated explicitly in the leader's context.
 */
static Pump *
pump_for(Leader *l, int32 id)
{
	ListCell   *lc;
	Pump	   *pump;
	MemoryContext old;

	foreach(lc, l->pumps)
	{
		pump = lfirst(lc);
		if (pump->id == id)
			return pump;
	}
	pump = pump_load(id, l->cxt);
	pump_prepare(pump);
	old = MemoryContextSwitchTo(l->cxt);
	l->pumps = lappend(l->pumps, pump);
	MemoryContextSwitchTo(old);
	return pump;
}

static HandlerRun *
handler_from_row(Leader *l, HeapTuple tup, TupleDesc desc)
{
	HandlerRun *h = MemoryContextAllocZero(l->cxt, sizeof(HandlerRun));
	bool		isnull;
	bool		missing;

	h->id = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_id, &isnull));
	strlcpy(h->name, SPI_getvalue(tup, desc, Anum_h_name), NAMEDATALEN);
	h->what = MemoryContextStrdup(l->cxt, psprintf("cluster handler \"%s\"", h->name));
	h->function = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_h_function, &isnull));
	if (isnull)
		h->function = InvalidOid;
	missing = DatumGetBool(SPI_getbinval(tup, desc, Anum_h_function_missing, &isnull));
	h->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_h_owner, &isnull));
	h->key_order = DatumGetBool(SPI_getbinval(tup, desc, Anum_h_key_order, &isnull));
	h->batch_size = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_batch_size, &isnull));
	h->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_max_attempts, &isnull));
	h->max_in_flight = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_max_in_flight, &isnull));
	h->paused = DatumGetBool(SPI_getbinval(tup, desc, Anum_h_paused, &isnull));
	h->replay_pending = DatumGetBool(SPI_getbinval(tup, desc, Anum_h_replay, &isnull));
	h->ack_timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_ack_timeout_ms, &isnull));
	h->max_batch_bytes = DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_max_batch_bytes, &isnull));
	h->pump = pump_for(l, DatumGetInt32(SPI_getbinval(tup, desc, Anum_h_pump_id, &isnull)));
	h->tracker = tracker_create(l->cxt, h->max_in_flight, h->key_order);
	h->needs_load = true;
	if (missing)
	{
		ereport(WARNING,
				(errmsg("function of cluster handler \"%s\" does not exist", h->name),
				 errhint("Set another one with cluster.alter_handler().")));
		h->function = InvalidOid;
	}
	if (h->function != InvalidOid)
		fmgr_info_cxt(h->function, &h->flinfo, l->cxt);
	return h;
}

static void
leader_unload(Leader *l)
{
	ListCell   *lc;

	foreach(lc, l->handlers)
		delivery_forget(lfirst(lc));
	foreach(lc, l->pumps)
		pump_release(lfirst(lc));
	l->pumps = NIL;
	l->handlers = NIL;
	MemoryContextReset(l->cxt);
	shmem_handler_forget();
}

/* Pumps and handlers of this coordinator, as they are now. */
static void
leader_load(Leader *l)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(l->coordinator_id)};
	SPITupleTable *rows;
	uint64		n;

	leader_unload(l);
	l->generation = shmem_config_generation();
	worker_xact_begin("cluster: loading pumps and handlers");
	spi_exec_checked("SELECT h.id, h.name, h.function::pg_catalog.oid, h.owner::pg_catalog.oid, "
					 "       h.ordering = 'key', h.batch_size, h.max_attempts, h.max_in_flight, h.paused, "
					 "       EXISTS (SELECT FROM cluster.dead_letters d WHERE d.handler_id = h.id AND d.replay), "
					 "       h.pump_id, "
					 "       h.function IS NOT NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc f WHERE f.oid = h.function), "
					 "       (extract(epoch FROM h.ack_timeout) * 1000)::int, h.max_batch_bytes "
					 "  FROM cluster.handler h JOIN cluster.pump p ON p.id = h.pump_id "
					 " WHERE p.coordinator_id = $1 ORDER BY p.id, h.id",
					 1, types, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	n = SPI_processed;
	for (uint64 row = 0; row < n; row++)
	{
		HandlerRun *h = handler_from_row(l, rows->vals[row], rows->tupdesc);
		MemoryContext old = MemoryContextSwitchTo(l->cxt);

		l->handlers = lappend(l->handlers, h);
		MemoryContextSwitchTo(old);
	}
	worker_xact_commit();
	leader_load_workers(l);
}

static HandlerRun *
handler_by_id(Leader *l, int32 id)
{
	ListCell   *lc;

	foreach(lc, l->handlers)
		if (((HandlerRun *) lfirst(lc))->id == id)
			return lfirst(lc);
	return NULL;
}

/*
 * The registered workers with a recent heartbeat, as connections of their
 * handlers; connections of the others are closed.
 */
static void
leader_load_workers(Leader *l)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(l->coordinator_id),
	Int32GetDatum(cluster_worker_timeout)};
	ListCell   *lc;

	/* silent workers are dropped within a third of their timeout */
	l->next_worker_load = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   cluster_worker_timeout / 3);
	worker_xact_begin("cluster: loading workers");
	spi_exec_checked("SELECT w.id, w.handler_id, w.address, w.secret, w.capacity "
					 "  FROM cluster.worker w JOIN cluster.handler h ON h.id = w.handler_id "
					 "  JOIN cluster.pump p ON p.id = h.pump_id "
					 " WHERE p.coordinator_id = $1 AND NOT h.paused "
					 "   AND w.last_heartbeat > pg_catalog.now() - $2 * interval '1 ms' "
					 "   AND cluster._may_manage_workers(w.handler_id, w.registered_by) "
					 "   AND cluster._worker_address_allowed(w.address) "
					 " ORDER BY w.id",
					 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		transport_start(cluster_ca_file);
	if (transport_active())
		transport_unmark_all();
	foreach(lc, l->handlers)
	{
		HandlerRun *h = lfirst(lc);

		list_free(h->conns);
		h->conns = NIL;
	}
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		HandlerRun *h = handler_by_id(l, DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull)));
		WorkerConn *c;
		MemoryContext old;

		if (h == NULL)
			continue;
		c = transport_conn(SPI_getvalue(tup, desc, 1), h->id,
						   SPI_getvalue(tup, desc, 3), SPI_getvalue(tup, desc, 4),
						   DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull)));
		old = MemoryContextSwitchTo(l->cxt);
		h->conns = lappend(h->conns, c);
		MemoryContextSwitchTo(old);
	}
	worker_xact_commit();
	if (transport_active())
	{
		foreach(lc, l->handlers)
			delivery_drop_unwanted(lfirst(lc));
		delivery_prune_peers();
		transport_prune();
	}
}

void
leader_start(Leader *l, int32 coordinator_id, const char *coordinator,
			 int64 fence)
{
	memset(l, 0, sizeof(Leader));
	l->coordinator_id = coordinator_id;
	snprintf(l->lease_key, sizeof(l->lease_key), "coordinator/%s", coordinator);
	l->fence = fence;
	l->cxt = AllocSetContextCreate(TopMemoryContext, "cluster leader",
								   ALLOCSET_DEFAULT_SIZES);
	l->generation = shmem_config_generation() - 1;	/* load at first work */
}

void
leader_stop(Leader *l)
{
	if (l->cxt == NULL)
		return;
	leader_unload(l);
	MemoryContextDelete(l->cxt);
	l->cxt = NULL;
	delivery_forget_peers();
	transport_stop();
	shmem_worker_forget();
}
