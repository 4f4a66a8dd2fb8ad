/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory for the live state: request, attach, wake.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "shmem.h"

ClusterShared *cluster_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
shmem_size(void)
{
	return add_size(offsetof(ClusterShared, engines),
					mul_size(cluster_max_engines, sizeof(EngineSlot)));
}

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shmem_size());
	RequestNamedLWLockTranche("cluster", 1);
}

static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cluster_shared = ShmemInitStruct("cluster", shmem_size(), &found);
	if (!found)
	{
		memset(cluster_shared, 0, shmem_size());
		cluster_shared->lock = &(GetNamedLWLockTranche("cluster"))->lock;
		cluster_shared->max_engines = cluster_max_engines;
		pg_atomic_init_u64(&cluster_shared->recheck, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/*
 * The entry of a database; with "claim", a free one is taken for it (NULL
 * when all are taken).  Entries stay while the database exists, so that
 * its counters only grow across restarts of its scheduler.
 */
DbState *
shmem_db(Oid database, bool claim)
{
	DbState    *free_entry = NULL;

	LWLockAcquire(cluster_shared->lock, claim ? LW_EXCLUSIVE : LW_SHARED);
	for (int i = 0; i < CLUSTER_MAX_DATABASES; i++)
	{
		DbState    *db = &cluster_shared->dbs[i];

		if (db->database == database)
		{
			LWLockRelease(cluster_shared->lock);
			return db;
		}
		if (db->database == InvalidOid && free_entry == NULL)
			free_entry = db;
	}
	if (claim && free_entry)
	{
		memset(free_entry, 0, sizeof(DbState));
		free_entry->database = database;
		pg_atomic_init_u64(&free_entry->config_generation, 1);
		pg_atomic_init_u64(&free_entry->workers_generation, 1);
		pg_atomic_init_u64(&free_entry->publications, 1);
	}
	else
		free_entry = NULL;
	LWLockRelease(cluster_shared->lock);
	return free_entry;
}

/*
 * This process's database entry, found once: an entry stays while its
 * database exists, and a database with connections can't be dropped.
 */
static DbState *
my_db(void)
{
	static DbState *entry = NULL;

	if (entry == NULL || entry->database != MyDatabaseId)
		entry = shmem_db(MyDatabaseId, false);
	return entry;
}

/*
 * DROP DATABASE is about to run: stop the database's scheduler (its engines
 * go with it) and keep the launcher from starting it again for "ms", so
 * that the drop finds no session of ours there.  Should the drop fail, the
 * scheduler comes back once the hold ends.
 */
void
shmem_db_hold(Oid database, int ms)
{
	DbState    *db = shmem_db(database, false);
	pid_t		pid = 0;

	if (db == NULL)
		return;
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	db->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	pid = db->scheduler_pid;
	LWLockRelease(cluster_shared->lock);
	if (pid != 0)
		kill(pid, SIGTERM);
}

/* The database was dropped: its entry is free again. */
void
shmem_db_release(Oid database)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < CLUSTER_MAX_DATABASES; i++)
		if (cluster_shared->dbs[i].database == database)
			cluster_shared->dbs[i].database = InvalidOid;
	LWLockRelease(cluster_shared->lock);
}

/*
 * Set the latch of every running engine of a coordinator, so that a standby
 * contends for the lease at once instead of at its next timeout.
 */
void
shmem_wake_coordinator(int32 coordinator_id)
{
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		EngineSlot *slot = &cluster_shared->engines[i];

		if (slot->in_use && slot->database == MyDatabaseId &&
			slot->coordinator_id == coordinator_id &&
			slot->pid != 0 && slot->pid != MyProcPid && slot->latch)
			SetLatch(slot->latch);
	}
	LWLockRelease(cluster_shared->lock);
}

/*
 * Coordinators of this database changed: its scheduler looks again, and
 * the launcher starts one where none runs (the extension was just created,
 * perhaps while the last scheduler was deciding there was none).
 */
void
shmem_wake_launcher(void)
{
	DbState    *db = my_db();
	Latch	   *latch = db ? db->scheduler_latch : NULL;

	if (latch)
		SetLatch(latch);
	pg_atomic_fetch_add_u64(&cluster_shared->recheck, 1);
	latch = cluster_shared->launcher_latch;
	if (latch)
		SetLatch(latch);
}

void
shmem_wake_leaders(void)
{
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		EngineSlot *slot = &cluster_shared->engines[i];

		if (slot->in_use && slot->database == MyDatabaseId &&
			slot->role == ENGINE_LEADER && slot->latch)
			SetLatch(slot->latch);
	}
	LWLockRelease(cluster_shared->lock);
}

/* New events are committed in this database: count it, wake its leaders. */
void
shmem_published(void)
{
	DbState    *db = my_db();

	if (db == NULL)
		return;					/* no scheduler yet: nobody to tell */
	pg_atomic_fetch_add_u64(&db->publications, 1);
	shmem_wake_leaders();
}

uint64
shmem_publications(void)
{
	DbState    *db = my_db();

	return db ? pg_atomic_read_u64(&db->publications) : 0;
}

uint64
shmem_config_generation(void)
{
	DbState    *db = my_db();

	return db ? pg_atomic_read_u64(&db->config_generation) : 0;
}

void
shmem_config_changed(void)
{
	DbState    *db = my_db();

	if (db == NULL)
		return;
	pg_atomic_fetch_add_u64(&db->config_generation, 1);
	shmem_published();
}

uint64
shmem_workers_generation(void)
{
	DbState    *db = my_db();

	return db ? pg_atomic_read_u64(&db->workers_generation) : 0;
}

/*
 * Worker registrations, grants or tokens changed: leaders reread their
 * workers, keeping their handlers and the deliveries in flight.
 */
void
shmem_workers_changed(void)
{
	DbState    *db = my_db();

	if (db == NULL)
		return;
	pg_atomic_fetch_add_u64(&db->workers_generation, 1);
	shmem_published();
}

void
shmem_handler_report(int32 handler_id, int in_flight, const char *waiting_for,
					 TimestampTz next_retry_at)
{
	HandlerStat *free_stat = NULL;

	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < CLUSTER_HANDLER_STATS; i++)
	{
		HandlerStat *stat = &cluster_shared->handlers[i];

		if (stat->handler_id == handler_id && stat->database == MyDatabaseId)
		{
			free_stat = stat;
			break;
		}
		if (stat->handler_id == 0 && free_stat == NULL)
			free_stat = stat;
	}
	if (free_stat)
	{
		free_stat->handler_id = handler_id;
		free_stat->database = MyDatabaseId;
		free_stat->leader_pid = MyProcPid;
		free_stat->in_flight = in_flight;
		strlcpy(free_stat->waiting_for, waiting_for ? waiting_for : "",
				sizeof(free_stat->waiting_for));
		free_stat->next_retry_at = next_retry_at;
	}
	LWLockRelease(cluster_shared->lock);
}

/* What this leader reported of a handler it no longer runs. */
void
shmem_handler_forget(int32 handler_id)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < CLUSTER_HANDLER_STATS; i++)
		if (cluster_shared->handlers[i].leader_pid == MyProcPid &&
			cluster_shared->handlers[i].handler_id == handler_id)
			memset(&cluster_shared->handlers[i], 0, sizeof(HandlerStat));
	LWLockRelease(cluster_shared->lock);
}

static WorkerStat *
worker_stat_slot(const char *id)
{
	WorkerStat *free_stat = NULL;

	for (int i = 0; i < CLUSTER_WORKER_STATS; i++)
	{
		WorkerStat *stat = &cluster_shared->workers[i];

		if (strcmp(stat->worker_id, id) == 0 && stat->database == MyDatabaseId)
			return stat;
		if (stat->worker_id[0] == '\0' && free_stat == NULL)
			free_stat = stat;
	}
	return free_stat;
}

/* Entries of this leader's workers go; the lock is held exclusively. */
static void
forget_my_workers(void)
{
	for (int i = 0; i < CLUSTER_WORKER_STATS; i++)
		if (cluster_shared->workers[i].leader_pid == MyProcPid)
			memset(&cluster_shared->workers[i], 0, sizeof(WorkerStat));
}

/* Copy the leader's connection counters where cluster.workers reads them. */
void
shmem_worker_report(WorkerStat *stats, int n)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	/* connections closed since the last report leave no entry behind */
	forget_my_workers();
	for (int i = 0; i < n; i++)
	{
		WorkerStat *stat = worker_stat_slot(stats[i].worker_id);

		if (stat == NULL)
			break;
		*stat = stats[i];
		stat->leader_pid = MyProcPid;
		stat->database = MyDatabaseId;
	}
	LWLockRelease(cluster_shared->lock);
}

void
shmem_worker_forget(void)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	forget_my_workers();
	LWLockRelease(cluster_shared->lock);
}
