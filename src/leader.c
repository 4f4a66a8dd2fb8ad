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
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "cluster.h"
#include "delivery.h"
#include "executor.h"
#include "handler.h"
#include "leader.h"
#include "listen.h"
#include "mesh.h"
#include "shmem.h"
#include "sql_handler.h"
#include "xact.h"

#define SLICE_MS 100			/* one handler's share of a pass */
#define PENDING_MIN_MS 5		/* polls while transactions are in progress */
#define PENDING_MAX_MS 1000
#define ERROR_MIN_MS 1000
#define ERROR_MAX_MS 30000
#define RETENTION_EVERY_MS 60000
#define SAVE_EVERY_MS 10		/* acked events are committed within this */
#define LISTEN_MIN_MS 100		/* retries while the port is taken */
#define LISTEN_MAX_MS 2000

/* What the leader keeps of a handler's turns; only this module writes it. */
typedef struct Turn
{
	HandlerRun *h;
	bool		needs_load;		/* the tracker must be rebuilt from the row */
	bool		replay_pending; /* dead letters may be marked for replay */
	int			pending_ms;		/* poll backoff while transactions are open */
	TimestampTz due;			/* when the last round asked to be run again */
	uint64		publications;	/* shmem_publications() before that round */
	/* workers' answers settled but not yet committed (see may_defer) */
	bool		force_save;
	bool		unsaved;
	int64		unsaved_processed;
	TimestampTz unsaved_since;
	/* the last read that found everything there was, none pending */
	bool		read_all;
	uint64		read_publications;	/* shmem_publications() before it */
	TimestampTz read_at;
	int			error_backoff_ms;
	TimestampTz retry_after;	/* after an unexpected error */
} Turn;

/* Both settle every round; one of them runs it. */
static const Executor *const executors[] = {&remote_executor, &local_executor};

static void leader_load(Leader *l);
static void leader_listen(Leader *l);
static uint32 listen_settings(void);
static void leader_restart(Leader *l);
static void leader_load_workers(Leader *l);
static void leader_load_listen(Leader *l);

static long
round_wait(Turn *turn)
{
	HandlerRun *h = turn->h;
	long		wait = cluster_poll_interval;
	long		due = tracker_next_due_ms(h->tracker, GetCurrentTimestamp());

	if (due >= 0)
		wait = Min(wait, due);
	if (turn->pending_ms > 0)
		wait = Min(wait, turn->pending_ms);
	return wait;
}

/*
 * What a read says of the next ones.  A transaction in progress at its
 * snapshot may commit events without waking anyone (COMMIT PREPARED), so
 * while there is one, every round reads, and a round comes at least every
 * pending_ms: 5 ms, doubling to a second.
 * This holds whatever the rounds in between do, a round that handled
 * events or moved the cursor included.
 */
static void
note_read(Turn *turn, int got, int room, bool pending)
{
	if (!pending)
		turn->pending_ms = 0;
	else if (got < room)
		turn->pending_ms = backoff_next(turn->pending_ms, PENDING_MIN_MS, PENDING_MAX_MS);
	turn->read_all = got < room && !pending;
	turn->read_publications = turn->publications;
	turn->read_at = GetCurrentTimestamp();
}

/*
 * Is there anything to read?  Not when the last read found everything
 * there was, no transaction was pending, and no event has been committed since
 * (the publications counter moves at every commit that adds events to a
 * pump's source): a round that only settles workers' answers then reads
 * nothing.  Sources written without the wake trigger are read at least
 * once per poll interval.
 */
static bool
worth_reading(Turn *turn, TimestampTz now)
{
	return !turn->read_all || turn->read_publications != turn->publications ||
		TimestampDifferenceExceeds(turn->read_at, now, cluster_poll_interval);
}

/* The executor that runs this round: the workers if one is connected. */
static const Executor *
executor_for(HandlerRun *h)
{
	for (size_t i = 0; i < lengthof(executors); i++)
		if (executors[i]->ready(h))
			return executors[i];
	return NULL;
}

/*
 * ms until deferred acks must be committed; -1 when none wait.  The one
 * measure of "due": a round that found them not yet due waits this long,
 * never zero, so that it does not spin until they are.
 */
static long
save_due_ms(Turn *turn, TimestampTz now)
{
	if (!turn->unsaved)
		return -1;
	return Max(0, SAVE_EVERY_MS - TimestampDifferenceMilliseconds(turn->unsaved_since, now));
}

/*
 * Workers' acks alone need not be committed at once: the events' effects
 * are the workers', outside this transaction, and what a lost commit costs
 * is sending them again, as after any crash.  They are committed with the
 * next round that writes anything, and at the latest SAVE_EVERY_MS after
 * the first of them: under a stream of small deliveries that is one commit
 * for many acks instead of one each.  A failure, a dead letter, a patch or
 * an error commits at once, as does everything a SQL function did.
 */
static bool
may_defer(Turn *turn, const Executor *ex, BatchOutcome *out, TimestampTz now)
{
	if (ex != &remote_executor || out->failed > 0 || out->dead != NIL ||
		out->patched || out->last_error != NULL)
		return false;
	return !turn->unsaved || save_due_ms(turn, now) > 0;
}

/*
 * One transaction; returns 0 when it did work that may continue at once,
 * else how long to wait.
 */
static long
handler_round(Leader *l, Turn *turn)
{
	HandlerRun *h = turn->h;
	Tracker    *t = h->tracker;
	const Executor *ex;
	BatchOutcome out = {0};
	int			room,
				got = 0;
	bool		reading = false;
	bool		pending = false;
	bool		passed = false;
	long		wait = cluster_poll_interval;

	worker_xact_begin("cluster: pumping");
	handler_check_rights(h);
	if (turn->needs_load)
	{
		for (size_t i = 0; i < lengthof(executors); i++)
			executors[i]->forget(h);
		handler_load(h);
		turn->needs_load = false;
		turn->read_all = false;
		turn->unsaved = false;	/* the tracker forgot them: they go out again */
		turn->unsaved_processed = 0;
	}
	for (size_t i = 0; i < lengthof(executors); i++)
		executors[i]->settle(l, h, &out);
	/* a paused handler settles what its workers say, and sends nothing */
	ex = turn->force_save || h->paused ? NULL : executor_for(h);
	if (ex != NULL)
	{
		int64		settled = out.processed + out.failed;
		bool		more_replays = false;
		long		run_wait;

		/* dead letters to replay go where live events would */
		if (turn->replay_pending)
		{
			turn->replay_pending = ex->replay(l, h, &out);
			/* replays handled here and now: more may follow at once */
			more_replays = turn->replay_pending && out.processed + out.failed > settled;
		}
		room = Min(tracker_room(t), ex->appetite(h));
		reading = room > 0 && worth_reading(turn, GetCurrentTimestamp());
		if (reading)
		{
			got = pump_read(h->pump, t, room, &pending);
			note_read(turn, got, room, pending);
			/* events a previous leader did (restored as done) pass at once */
			passed = tracker_advance(t);
		}
		run_wait = ex->run(l, h, &out);
		/* the deliveries go out now, not after this round's bookkeeping */
		mesh_flush();
		if (run_wait == 0 || more_replays || passed)
			wait = 0;
		else
		{
			wait = round_wait(turn);
			if (run_wait > 0)
				wait = Min(wait, run_wait);
		}
	}

	if (out.processed > 0 || out.failed > 0 || out.patched || turn->unsaved || passed)
	{
		TimestampTz now = GetCurrentTimestamp();

		tracker_advance(t);
		if (!turn->force_save && may_defer(turn, ex, &out, now))
		{
			if (!turn->unsaved)
				turn->unsaved_since = now;
			turn->unsaved = true;
			turn->unsaved_processed += out.processed;
			wait = Min(wait, save_due_ms(turn, now));
		}
		else
		{
			out.processed += turn->unsaved_processed;
			turn->unsaved = false;
			turn->unsaved_processed = 0;
			if (!handler_commit(h, &out, l->lease_key, l->fence))
			{
				/* deposed, or the handler was reset: undo the round */
				worker_xact_abort();
				turn->needs_load = true;
				l->fence_lost = true;
				return 0;
			}
		}
	}
	worker_xact_commit();
	return wait;
}

static long
handler_failed(Turn *turn, MemoryContext cxt)
{
	ErrorData  *edata = worker_xact_recover(cxt);

	ereport(WARNING,
			(errmsg("cluster handler \"%s\" failed: %s", turn->h->name, edata->message)));
	turn->needs_load = true;
	turn->error_backoff_ms = backoff_next(turn->error_backoff_ms, ERROR_MIN_MS, ERROR_MAX_MS);
	turn->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), turn->error_backoff_ms);

	worker_xact_begin("cluster: recording a handler error");
	handler_record_error(turn->h, edata->message);
	worker_xact_commit();
	FreeErrorData(edata);
	return turn->error_backoff_ms;
}

/* Has an executor something to settle: an answer, a connection? */
static bool
handler_stirred(HandlerRun *h)
{
	for (size_t i = 0; i < lengthof(executors); i++)
		if (executors[i]->stirred(h))
			return true;
	return false;
}

/*
 * Nothing for this handler since its last round: no event committed, no
 * word from its workers, its own timer not due.  Then the engine's other
 * wakeups (lease renewals) cost it nothing.
 */
static bool
handler_quiet(Turn *turn, TimestampTz now)
{
	return !turn->needs_load && !turn->replay_pending && now < turn->due &&
		turn->publications == shmem_publications() && !handler_stirred(turn->h);
}

/*
 * What the handler waits for now, in a few fixed words (cluster.handlers'
 * waiting_for, and a Prometheus label: the counts are in other columns),
 * and when its next retry or the end of its backoff is due.  NULL: for
 * nothing, everything read is done.
 */
static const char *
turn_waits(Turn *turn, TimestampTz now, TimestampTz *next_retry)
{
	HandlerRun *h = turn->h;
	const Executor *ex = executor_for(h);
	TrackerSummary sum;

	*next_retry = 0;
	if (h->paused)
		return "paused";
	if (now < turn->retry_after)
	{
		*next_retry = turn->retry_after;
		return "error backoff";
	}
	tracker_summarize(h->tracker, now, &sum);
	if (sum.retrying > 0)
		*next_retry = sum.next_retry;
	if (ex == NULL)
		return "no worker connected";
	if (sum.ready > 0)
		return ex == &remote_executor ? "worker slots" : NULL;
	if (sum.retrying > 0)
		return "retries";
	if (sum.key_blocked > 0)
		return "key order";
	if (sum.in_flight > 0)
		return "answers";
	return NULL;
}

/* Push what cluster.handlers shows of the turn; returns "wait". */
static long
turn_report(Turn *turn, TimestampTz now, long wait)
{
	TimestampTz next_retry;
	const char *waits = turn_waits(turn, now, &next_retry);

	shmem_handler_report(turn->h->id, tracker_waiting(turn->h->tracker), waits, next_retry);
	return wait;
}

static long
handler_work(Leader *l, Turn *turn)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	volatile long wait = 0;

	/* paused: its workers that dial in stay connected, and are heard */
	if (turn->h->paused && !handler_stirred(turn->h) && !turn->needs_load)
		return turn_report(turn, start, cluster_poll_interval);
	/* nothing could run it, and nothing is left to settle */
	if (executor_for(turn->h) == NULL && !handler_stirred(turn->h) && !turn->needs_load)
		return turn_report(turn, start, cluster_poll_interval);
	if (start < turn->retry_after)
		return turn_report(turn, start, TimestampDifferenceMilliseconds(start, turn->retry_after));
	if (handler_quiet(turn, start))
		return TimestampDifferenceMilliseconds(start, turn->due);

	while (wait == 0 && !l->fence_lost &&
		   !TimestampDifferenceExceeds(start, GetCurrentTimestamp(), SLICE_MS))
	{
		turn->publications = shmem_publications();
		PG_TRY();
		{
			wait = handler_round(l, turn);
			turn->error_backoff_ms = 0;
		}
		PG_CATCH();
		{
			wait = handler_failed(turn, cxt);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	turn->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait);
	return turn_report(turn, GetCurrentTimestamp(), wait);
}

long
leader_work(Leader *l, TimestampTz until)
{
	long		wait = cluster_poll_interval;
	MemoryContext old = MemoryContextSwitchTo(l->cxt);

	if (l->generation != shmem_config_generation() ||
		(l->reload_at != 0 && GetCurrentTimestamp() >= l->reload_at))
		leader_load(l);
	/* heartbeats change nothing: look for silent workers from time to time */
	if (l->handlers != NIL && (l->workers_generation != shmem_workers_generation() ||
							   GetCurrentTimestamp() >= l->next_worker_load))
		leader_load_workers(l);
	if (l->listening && (strcmp(l->listening_at, l->listen) != 0 ||
						 l->listen_settings != listen_settings()))
	{
		MemoryContextSwitchTo(old);
		leader_restart(l);
		return 0;
	}
	if (l->listen[0] && !l->listening && GetCurrentTimestamp() >= l->next_listen)
		leader_listen(l);
	if (l->listen[0] && !l->listening)
		wait = Min(wait, l->listen_backoff_ms);
	wait = mesh_pass(wait);
	for (int k = 0, n = list_length(l->handlers); k < n; k++)
	{
		if (k > 0 && GetCurrentTimestamp() >= until)
		{
			l->next_turn = (l->next_turn + k) % n;
			wait = 0;			/* renew, then the others */
			break;
		}
		wait = Min(wait, handler_work(l, list_nth(l->handlers, (l->next_turn + k) % n)));
	}
	/* workers that dialed in or went: after the rounds settled what they held */
	if (mesh_take_dialins_changed())
	{
		leader_load_workers(l);
		wait = 0;				/* their handlers' rounds say hello */
	}
	wait = mesh_report(wait);
	if (GetCurrentTimestamp() >= l->next_retention)
	{
		retention_run(l);
		l->next_retention = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														RETENTION_EVERY_MS);
	}
	MemoryContextSwitchTo(old);
	return wait;
}

/*
 * Commit the acks that wait (see may_defer) before a handler is unloaded;
 * a deposed leader's commit is refused, and the events go out again from
 * the new leader.
 */
static void
turn_save(Leader *l, Turn *turn)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!turn->unsaved || turn->needs_load || l->fence_lost)
		return;
	turn->force_save = true;
	PG_TRY();
	{
		(void) handler_round(l, turn);
	}
	PG_CATCH();
	{
		(void) handler_failed(turn, cxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	turn->force_save = false;
}

static void
leader_save(Leader *l)
{
	ListCell   *lc;

	foreach(lc, l->handlers)
		turn_save(l, lfirst(lc));
}

/*
 * A handler the leader no longer runs as it was: its deliveries are given
 * back (their answers no longer count) and its memory goes.
 */
static void
turn_drop(Turn *turn)
{
	for (size_t i = 0; i < lengthof(executors); i++)
		executors[i]->forget(turn->h);
	delivery_forget_handler(turn->h);
	shmem_handler_forget(turn->h->id);
	handler_free(turn->h);
	pfree(turn);
}

static void
leader_unload(Leader *l)
{
	ListCell   *lc;

	foreach(lc, l->handlers)
		turn_drop(lfirst(lc));
	list_free(l->handlers);
	list_free(l->pumps);
	l->pumps = NIL;
	l->handlers = NIL;
	l->next_turn = 0;
}

/* The handler of "loaded" with h's id and definition, taken out of it. */
static HandlerRun *
take_unchanged(List **loaded, HandlerRun *h)
{
	ListCell   *lc;

	foreach(lc, *loaded)
	{
		HandlerRun *same = lfirst(lc);

		if (handler_unchanged(h, same))
		{
			*loaded = foreach_delete_current(*loaded, lc);
			return same;
		}
	}
	return NULL;
}

/* one Pump per pump id, for retention (each handler has its own copy) */
static void
collect_pumps(Leader *l)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(l->cxt);

	list_free(l->pumps);
	l->pumps = NIL;
	foreach(lc, l->handlers)
	{
		Pump	   *pump = ((Turn *) lfirst(lc))->h->pump;
		ListCell   *seen;
		bool		found = false;

		foreach(seen, l->pumps)
			found = found || ((Pump *) lfirst(seen))->id == pump->id;
		if (!found)
			l->pumps = lappend(l->pumps, pump);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Pumps and handlers of this coordinator, as they are now.  A handler
 * whose definition is unchanged runs on as it was, with its deliveries in
 * flight and its unsaved acks: a change to one handler, pump or grant
 * disturbs no other.  One that changed starts again from its committed
 * row, after its waiting acks are committed.
 */
static void
leader_load(Leader *l)
{
	List	   *loaded;
	List	   *turns = NIL;
	ListCell   *lc;
	MemoryContext old;
	bool		broken = false;

	l->generation = shmem_config_generation();
	worker_xact_begin("cluster: loading pumps and handlers");
	/* the coordinator first: cluster._before_drop locks in that order */
	leader_load_listen(l);
	loaded = handler_load_all(l->coordinator_id, l->cxt, &broken);
	worker_xact_commit();
	l->reload_at = broken ?
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HANDLER_RELOAD_BROKEN_MS) : 0;
	old = MemoryContextSwitchTo(l->cxt);
	foreach(lc, l->handlers)
	{
		Turn	   *turn = lfirst(lc);
		HandlerRun *same = take_unchanged(&loaded, turn->h);

		if (same)
		{
			turn->replay_pending = turn->replay_pending || same->replay_marked;
			handler_free(same);
			turns = lappend(turns, turn);
			continue;
		}
		turn_save(l, turn);
		turn_drop(turn);
	}
	foreach(lc, loaded)
	{
		Turn	   *turn = palloc0(sizeof(Turn));

		turn->h = lfirst(lc);
		turn->needs_load = true;
		turn->replay_pending = turn->h->replay_marked;
		turns = lappend(turns, turn);
	}
	list_free(loaded);
	list_free(l->handlers);
	l->handlers = turns;
	l->next_turn = 0;
	MemoryContextSwitchTo(old);
	collect_pumps(l);
	leader_load_workers(l);
}

/*
 * The coordinator's listen endpoint, inside leader_load's transaction; a
 * changed one is listened at from the next pass on.
 */
static void
leader_load_listen(Leader *l)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(l->coordinator_id)};
	bool		isnull = true;
	Datum		d = (Datum) 0;
	char		listen[sizeof(l->listen)] = "";

	spi_exec_checked("SELECT listen FROM cluster.coordinator WHERE id = $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
		d = spi_getdatum(0, 1, &isnull);
	if (!isnull)
		text_to_cstring_buffer(DatumGetTextPP(d), listen, sizeof(listen));
	if (strcmp(listen, l->listen) == 0)
		return;
	/* a listening leader moves in leader_work (leader_restart) */
	strlcpy(l->listen, listen, sizeof(l->listen));
	l->listen_warned = false;
	l->listen_backoff_ms = 0;
	l->next_listen = 0;
}

/*
 * Start afresh under the same lease.  A transport listens at one endpoint,
 * with one certificate, for its life (mesh_listen), so when the
 * coordinator's listen, cluster.worker_listen or the certificate changes,
 * the leader stops everything it holds, as when it steps down (waiting
 * acks are committed first, deliveries go out again), and its next pass
 * loads, dials and listens anew.  Workers reconnect.
 */
static void
leader_restart(Leader *l)
{
	int32		coordinator_id = l->coordinator_id;
	int64		fence = l->fence;
	char		coordinator[NAMEDATALEN];

	strlcpy(coordinator, l->lease_key + strlen("coordinator/"), sizeof(coordinator));
	ereport(LOG,
			(errmsg("cluster leader of coordinator \"%s\" starts its connections anew", coordinator),
			 errdetail("Where it listens for workers, or with which settings, changed.")));
	leader_stop(l);
	leader_start(l, coordinator_id, coordinator, fence);
}

/* The settings a leader listens by, as one hash: a reload may change them. */
static uint32
listen_settings(void)
{
	const char *settings[] = {cluster_worker_listen, cluster_listen_cert_file,
	cluster_listen_key_file};
	uint32		h = 0;

	for (size_t i = 0; i < lengthof(settings); i++)
		h = hash_combine(h, settings[i] ? hash_bytes((const unsigned char *) settings[i],
													 strlen(settings[i])) : 0);
	return h;
}

/*
 * Listen where the coordinator says, if cluster.worker_listen (still)
 * allows it.  A port another process holds (the leader before this one,
 * on the same host, letting go) is tried again soon, then less often.
 */
static void
leader_listen(Leader *l)
{
	ListenAddress addr;
	const char *why;

	l->listen_backoff_ms = backoff_next(l->listen_backoff_ms, LISTEN_MIN_MS, LISTEN_MAX_MS);
	l->next_listen = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), l->listen_backoff_ms);
	if (!listen_allowed(l->listen, &addr, &why))
	{
		if (!l->listen_warned)
			ereport(WARNING,
					(errmsg("cluster leader does not listen at \"%s\" for workers", l->listen),
					 errdetail("It is refused because %s.", why),
					 errhint("A superuser can allow it in cluster.worker_listen, with cluster.listen_cert_file and cluster.listen_key_file off the loopback interface.")));
		l->listen_warned = true;
		return;
	}
	if (!mesh_listen(addr.host, addr.port))
	{
		if (!l->listen_warned)
			ereport(WARNING,
					(errmsg("cluster leader could not listen at \"%s\" for workers yet", l->listen),
					 errdetail("The port may still be held by the previous leader; trying again every %d ms at most.",
							   LISTEN_MAX_MS)));
		l->listen_warned = true;
		return;
	}
	ereport(LOG,
			(errmsg("cluster leader listens at \"%s\" for workers that dial in%s",
					l->listen, cluster_listen_cert_file[0] ? " (TLS)" : "")));
	l->listening = true;
	strlcpy(l->listening_at, l->listen, sizeof(l->listening_at));
	l->listen_settings = listen_settings();
	l->listen_warned = false;
	l->listen_backoff_ms = 0;
	leader_load_workers(l);		/* the tokens */
}

/* MeshLookup: the leader's HandlerRun of a handler id */
static HandlerRun *
handler_by_id(void *arg, int32 id)
{
	Leader	   *l = arg;
	ListCell   *lc;

	foreach(lc, l->handlers)
	{
		HandlerRun *h = ((Turn *) lfirst(lc))->h;

		if (h->id == id)
			return h;
	}
	return NULL;
}

/* The handlers' workers, as they are now (mesh_load_workers). */
static void
leader_load_workers(Leader *l)
{
	/* a change committed while this reads is seen at the next pass */
	l->workers_generation = shmem_workers_generation();
	/* silent workers are dropped within a third of their timeout */
	l->next_worker_load = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   cluster_worker_timeout / 3);
	mesh_load_workers(l->coordinator_id, l->listening, handler_by_id, l);
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
	leader_save(l);
	leader_unload(l);
	MemoryContextDelete(l->cxt);
	l->cxt = NULL;
	mesh_stop();
}
