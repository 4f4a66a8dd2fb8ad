/*-------------------------------------------------------------------------
 *
 * mesh.c
 *	  The leader's workers: connections per handler, dialling, listening,
 *	  and their figures for cluster.workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "delivery.h"
#include "mesh.h"
#include "shmem.h"
#include "tokens.h"
#include "transport.h"
#include "xact.h"

#define MESH_REPORT_EVERY_MS 100	/* cluster.workers lags the leader by this */

static TimestampTz next_report = 0;

/* the columns of mesh_load_workers' query */
#define Anum_w_id				1
#define Anum_w_handler_id		2
#define Anum_w_address			3
#define Anum_w_secret			4
#define Anum_w_capacity			5

/* mesh_load_workers' query's rows: the workers to dial */
static void
add_registered(MeshLookup lookup, void *arg)
{
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		HandlerRun *h = lookup(arg, DatumGetInt32(SPI_getbinval(tup, desc, Anum_w_handler_id, &isnull)));

		if (h == NULL)
			continue;
		delivery_add_worker(h, transport_conn(SPI_getvalue(tup, desc, Anum_w_id), h->id,
											  SPI_getvalue(tup, desc, Anum_w_address),
											  SPI_getvalue(tup, desc, Anum_w_secret),
											  DatumGetInt32(SPI_getbinval(tup, desc, Anum_w_capacity, &isnull))));
	}
}

/*
 * The valid tokens, and the workers connected with them: those of a token
 * revoked, expired or no longer its issuer's to give are closed.
 */
static void
add_dialed_in(int32 coordinator_id, MeshLookup lookup, void *arg)
{
	tokens_load(coordinator_id);
	for (int i = 0; i < transport_count(); i++)
	{
		WorkerConn *c = transport_get(i);
		const WorkerToken *token;
		HandlerRun *h;

		if (!c->dialed_in || !c->connected)
			continue;
		token = tokens_find(c->id);
		h = token ? lookup(arg, token->handler_id) : NULL;
		if (h == NULL)
			continue;
		transport_keep(c, token->capacity);
		delivery_add_worker(h, c);
	}
}

/*
 * The registered workers with a recent heartbeat, as connections of their
 * handlers, and with "listening" those that dialed in with a valid token;
 * connections of the others are closed.
 */
void
mesh_load_workers(int32 coordinator_id, bool listening, MeshLookup lookup, void *arg)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(coordinator_id),
	Int32GetDatum(cluster_worker_timeout)};

	worker_xact_begin("cluster: loading workers");
	/* pump, handler, worker: the order cluster._before_drop locks them in */
	spi_exec_checked("SELECT w.id, w.handler_id, w.address, w.secret, w.capacity "
					 "  FROM cluster.pump p JOIN cluster.handler h ON p.id = h.pump_id "
					 "  JOIN cluster.worker w ON h.id = w.handler_id "
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
	delivery_clear_workers();
	add_registered(lookup, arg);
	if (listening)
		add_dialed_in(coordinator_id, lookup, arg);
	worker_xact_commit();
	if (transport_active())
	{
		delivery_workers_added();
		transport_prune();
	}
}

/* Listen for workers that dial in; false while the port is taken. */
bool
mesh_listen(const char *host, int port)
{
	transport_start(cluster_ca_file);
	return transport_listen(host, port, cluster_listen_cert_file, cluster_listen_key_file);
}

/* Dial the workers that are due; "wait", shortened to the next dial. */
long
mesh_pass(long wait)
{
	long		dial;

	if (!transport_active())
		return wait;
	dial = transport_dial(GetCurrentTimestamp());
	return dial >= 0 ? Min(wait, dial) : wait;
}

/* Did a worker dial in, or one that had go, since the last call? */
bool
mesh_take_dialins_changed(void)
{
	return transport_take_dialins_changed();
}

/* What the rounds queued goes out now. */
void
mesh_flush(void)
{
	transport_flush();
}

/*
 * What cluster.workers shows, pushed into shared memory: at most every
 * MESH_REPORT_EVERY_MS while the leader is busy (a pass per event and per
 * answer would take the shared lock for each), and before it waits longer
 * than that.  Returns the pass's wait, shortened to the next report.
 */
long
mesh_report(long wait)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n;
	WorkerStat *stats;

	if (!transport_active())
		return wait;
	if (now < next_report && wait < MESH_REPORT_EVERY_MS)
		return Min(wait, TimestampDifferenceMilliseconds(now, next_report));
	next_report = TimestampTzPlusMilliseconds(now, MESH_REPORT_EVERY_MS);
	n = transport_count();
	stats = palloc0(sizeof(WorkerStat) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		WorkerConn *c = transport_get(i);
		WorkerStat *stat = &stats[i];

		strlcpy(stat->worker_id, c->id, sizeof(stat->worker_id));
		stat->connected = c->connected;
		stat->reconnects = Max(c->dials - 1, 0);
		if (c->dialed_in)
			strlcpy(stat->peer, c->address, sizeof(stat->peer));
		delivery_report(c, stat);
	}
	shmem_worker_report(stats, n);
	pfree(stats);
	return wait;
}

/* The leader stops: every connection, token and figure goes. */
void
mesh_stop(void)
{
	delivery_forget_all(true);
	transport_stop();
	tokens_forget();
	shmem_worker_forget();
	next_report = 0;
}
