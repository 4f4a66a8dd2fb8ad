/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  The engine's side of its coordinator's lease.
 *
 * The row work is done by the extension's internal SQL functions
 * (cluster._engine_take and friends), so that the rules for fences live in
 * one place, next to the public lease functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "lease.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(cluster_timeline_floor);

/* first key of the coordinators' advisory locks: 'clus' */
#define LEASE_LOCK_CLASS 0x636c7573
#define LEASE_LOCK_KIND 3

/*
 * The engine commits asynchronously; a lease change must be durable before
 * anything is done under its fence.
 */
static void
lease_xact_begin(const char *activity)
{
	worker_xact_begin(activity);
	(void) set_config_option("synchronous_commit", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * The coordinator's advisory lock: (database, 'clus', coordinator id) with
 * a fourth field of 3, which no SQL function produces (the built-in ones
 * use 1 and 2).  So code of a user running inside the engine can't take
 * another coordinator's lock; it can only release everything with
 * pg_advisory_unlock_all(), which lease_relock() repairs.
 */
static void
lease_locktag(LOCKTAG *tag, int32 coordinator_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, LEASE_LOCK_CLASS,
						 (uint32) coordinator_id, LEASE_LOCK_KIND);
}

static bool
try_advisory_lock(int32 coordinator_id)
{
	LOCKTAG		tag;

	lease_locktag(&tag, coordinator_id);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

static void
advisory_unlock(int32 coordinator_id)
{
	LOCKTAG		tag;

	lease_locktag(&tag, coordinator_id);
	if (LockHeldByMe(&tag, ExclusiveLock))
		LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Does the leader still hold its advisory lock?  User code running in the
 * engine can release it (pg_advisory_unlock_all releases every advisory
 * lock of the session); then take it again at once.  A standby that got it
 * in between takes the lease with the next fence, and this engine's next
 * commit or renewal finds the fence gone: false only if it can't be had.
 */
bool
lease_relock(int32 coordinator_id)
{
	LOCKTAG		tag;

	lease_locktag(&tag, coordinator_id);
	if (LockHeldByMe(&tag, ExclusiveLock))
		return true;
	if (!try_advisory_lock(coordinator_id))
		return false;
	ereport(WARNING,
			(errmsg("cluster engine took its coordinator's advisory lock again"),
			 errdetail("Code that ran in the engine released it, probably with pg_advisory_unlock_all().")));
	return true;
}

LeaseTake
lease_take(int32 coordinator_id, const char *holder, int64 *fence,
		   int *ttl_ms)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(coordinator_id),
	CStringGetTextDatum(holder)};
	LeaseTake	result = LEASE_BUSY;
	bool		isnull;

	lease_xact_begin("cluster: taking the coordinator lease");
	if (try_advisory_lock(coordinator_id))
	{
		spi_exec_checked("SELECT fence, ttl_ms FROM cluster._engine_take($1, $2)",
						 2, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			*fence = DatumGetInt64(spi_getdatum(0, 1, &isnull));
			*ttl_ms = DatumGetInt32(spi_getdatum(0, 2, &isnull));
			result = LEASE_TAKEN;
		}
		else
		{
			advisory_unlock(coordinator_id);
			result = LEASE_NO_COORDINATOR;
		}
	}
	worker_xact_commit();
	return result;
}

bool
lease_renew(int32 coordinator_id, const char *holder, int64 fence,
			int *ttl_ms)
{
	Oid			types[3] = {INT4OID, TEXTOID, INT8OID};
	Datum		values[3] = {Int32GetDatum(coordinator_id),
		CStringGetTextDatum(holder),
	Int64GetDatum(fence)};
	bool		isnull;
	Datum		ttl;

	lease_xact_begin("cluster: renewing the coordinator lease");
	spi_exec_checked("SELECT cluster._engine_renew($1, $2, $3)",
					 3, types, values, NULL, SPI_OK_SELECT);
	ttl = spi_getdatum(0, 1, &isnull);
	if (!isnull)
		*ttl_ms = DatumGetInt32(ttl);
	worker_xact_commit();
	return !isnull;
}

void
lease_release(int32 coordinator_id, const char *holder, int64 fence)
{
	Oid			types[3] = {INT4OID, TEXTOID, INT8OID};
	Datum		values[3] = {Int32GetDatum(coordinator_id),
		CStringGetTextDatum(holder),
	Int64GetDatum(fence)};

	lease_xact_begin("cluster: releasing the coordinator lease");
	spi_exec_checked("SELECT cluster._engine_release($1, $2, $3)",
					 3, types, values, NULL, SPI_OK_SELECT);
	advisory_unlock(coordinator_id);
	worker_xact_commit();
}

/*
 * For a standby: how long until the lease expires (ms), or -1 when the
 * coordinator is gone.  A leader that lets its lease expire while it still
 * holds the advisory lock is stuck (it would have stepped down otherwise),
 * and nobody else can lead until it exits: terminate it.
 */
int
lease_watch(int32 coordinator_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(coordinator_id)};
	bool		isnull;
	int			wait_ms = -1;
	Datum		stuck;

	worker_xact_begin("cluster: watching the coordinator lease");
	spi_exec_checked("SELECT wait_ms, stuck_pid FROM cluster._engine_watch($1)",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		wait_ms = DatumGetInt32(spi_getdatum(0, 1, &isnull));
		stuck = spi_getdatum(0, 2, &isnull);
		if (!isnull)
		{
			ereport(WARNING,
					(errmsg("terminating the leader of coordinator %d (pid %d): its lease expired without renewal",
							coordinator_id, DatumGetInt32(stuck))));
			values[0] = stuck;
			spi_exec_checked("SELECT pg_catalog.pg_terminate_backend($1)",
							 1, types, values, NULL, SPI_OK_SELECT);
		}
	}
	worker_xact_commit();
	return wait_ms;
}

/*
 * cluster._timeline_floor() returns bigint: the lowest fence this timeline
 * may hand out, (timeline - 1) << 32.  A standby promoted to a new timeline
 * then hands out fences above any its old primary could have handed out
 * on an earlier timeline without replicating them (fewer than 2^32 per
 * timeline).  0 during recovery, where no lease can be taken anyway.
 */
Datum
cluster_timeline_floor(PG_FUNCTION_ARGS)
{
	if (RecoveryInProgress())
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(((int64) GetWALInsertionTimeLine() - 1) << 32);
}
