/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Keep a scheduler running in every database with the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "backoff.h"
#include "cluster.h"
#include "launcher.h"
#include "scheduler.h"
#include "shmem.h"

/* a hot standby's databases without the extension are looked at this often */
#define STANDBY_RECHECK_MS 1000

/* What the launcher knows of each database's scheduler. */
typedef struct SchedulerControl
{
	Oid			database;
	char		name[NAMEDATALEN];
	BackgroundWorkerHandle *handle;
	int			backoff_ms;
	TimestampTz next_start;
	TimestampTz started_at;
	bool		idle;			/* no extension there: wait for a recheck */
	uint64		recheck_seen;	/* cluster_shared->recheck when last launched */
	bool		seen;			/* in the last list of databases */
	bool		warned;			/* said once that no entry was free */
} SchedulerControl;

static List *schedulers = NIL;

void
launcher_register(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cluster");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cluster_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "cluster launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "cluster launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * The databases cluster.database names, or NIL for every database (its
 * syntax was checked when it was set).
 */
static List *
allowed_databases(void)
{
	List	   *names = NIL;

	if (cluster_database != NULL && cluster_database[0] != '\0')
		(void) SplitGUCList(pstrdup(cluster_database), ',', &names);
	return names;
}

static bool
database_allowed(List *allowed, const char *name)
{
	ListCell   *lc;

	if (allowed == NIL)
		return true;
	foreach(lc, allowed)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

static SchedulerControl *
control_for(Oid database, const char *name)
{
	ListCell   *lc;
	SchedulerControl *c;
	MemoryContext old;

	foreach(lc, schedulers)
	{
		c = lfirst(lc);
		if (c->database == database)
			return c;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	c = palloc0(sizeof(SchedulerControl));
	c->database = database;
	strlcpy(c->name, name, NAMEDATALEN);
	c->next_start = GetCurrentTimestamp();
	schedulers = lappend(schedulers, c);
	MemoryContextSwitchTo(old);
	return c;
}

/* Mark the databases the launcher serves now (as autovacuum lists them). */
static void
read_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	ListCell   *lc;
	List	   *allowed;

	foreach(lc, schedulers)
		((SchedulerControl *) lfirst(lc))->seen = false;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	allowed = allowed_databases();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate &&
			database_allowed(allowed, NameStr(db->datname)))
			control_for(db->oid, NameStr(db->datname))->seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/*
 * The scheduler stopped: idle without the extension, else a restart.  An
 * idle one is launched again once "recheck" moved past its value at the
 * last launch: a CREATE EXTENSION that committed while that scheduler was
 * still looking is not missed.
 */
static void
scheduler_exited(SchedulerControl *c, TimestampTz now)
{
	DbState    *db = shmem_db(c->database, false);

	c->handle = NULL;
	if (db && db->no_extension)
	{
		c->idle = true;
		c->backoff_ms = 0;
		c->next_start = TimestampTzPlusMilliseconds(now, STANDBY_RECHECK_MS);
		return;
	}
	c->backoff_ms = backoff_restart(c->backoff_ms, c->started_at, now);
	c->next_start = TimestampTzPlusMilliseconds(now, c->backoff_ms);
	ereport(LOG,
			(errmsg("cluster scheduler of database \"%s\" exited; restarting it in %d ms",
					c->name, c->backoff_ms)));
}

static void
scheduler_launch(SchedulerControl *c, TimestampTz now, uint64 recheck)
{
	DbState    *db = shmem_db(c->database, true);

	if (db == NULL)
	{
		if (!c->warned)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("cluster serves at most %d databases; database \"%s\" is left out",
							CLUSTER_MAX_DATABASES, c->name),
					 errhint("Name the databases with the extension in cluster.database.")));
		c->warned = true;
		c->next_start = TimestampTzPlusMilliseconds(now, cluster_poll_interval);
		return;
	}
	db->no_extension = false;
	c->started_at = now;
	c->recheck_seen = recheck;
	if (!scheduler_start(c->database, c->name, &c->handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the cluster scheduler of database \"%s\"", c->name),
				 errhint("Raise max_worker_processes: it must leave room for the launcher, a scheduler per database with the extension, and the engines.")));
		c->handle = NULL;
		c->next_start = TimestampTzPlusMilliseconds(now, cluster_poll_interval);
	}
}

/* Bring the schedulers in line with the databases; returns ms to sleep. */
static long
launcher_reconcile(void)
{
	uint64		recheck = pg_atomic_read_u64(&cluster_shared->recheck);
	long		timeout = cluster_poll_interval;
	TimestampTz now;
	ListCell   *lc;

	read_databases();
	now = GetCurrentTimestamp();
	foreach(lc, schedulers)
	{
		SchedulerControl *c = lfirst(lc);
		DbState    *held;
		pid_t		pid;

		if (!c->seen)
		{
			/* dropped, or no longer named in cluster.database */
			if (c->handle && GetBackgroundWorkerPid(c->handle, &pid) != BGWH_STOPPED)
			{
				TerminateBackgroundWorker(c->handle);
				continue;		/* forgotten once it has stopped */
			}
			shmem_db_release(c->database);
			schedulers = foreach_delete_current(schedulers, lc);
			pfree(c);
			continue;
		}
		if (c->handle && GetBackgroundWorkerPid(c->handle, &pid) == BGWH_STOPPED)
			scheduler_exited(c, now);
		if (c->handle)
			continue;
		if (c->idle && c->recheck_seen == recheck)
		{
			/*
			 * A CREATE EXTENSION replayed on a hot standby wakes nobody
			 * here: look again every STANDBY_RECHECK_MS while in recovery.
			 */
			if (!RecoveryInProgress())
				continue;
			if (c->next_start > now)
			{
				timeout = Min(timeout, TimestampDifferenceMilliseconds(now, c->next_start));
				continue;
			}
		}
		c->idle = false;
		held = shmem_db(c->database, false);
		if (held && held->hold_until > c->next_start)
			c->next_start = held->hold_until;	/* DROP DATABASE may be running */
		if (c->next_start <= now)
			scheduler_launch(c, now, recheck);
		if (c->handle == NULL)
			timeout = Min(timeout, TimestampDifferenceMilliseconds(now, c->next_start));
	}
	return timeout;
}

/*
 * Schedulers left by a previous launcher can't be watched: stop them (the
 * new ones stop the engines they left in turn).
 */
static void
launcher_adopt(void)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	cluster_shared->launcher_pid = MyProcPid;
	cluster_shared->launcher_latch = MyLatch;
	for (int i = 0; i < CLUSTER_MAX_DATABASES; i++)
		if (cluster_shared->dbs[i].scheduler_pid != 0)
			kill(cluster_shared->dbs[i].scheduler_pid, SIGTERM);
	LWLockRelease(cluster_shared->lock);
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	cluster_shared->launcher_pid = 0;
	cluster_shared->launcher_latch = NULL;
	LWLockRelease(cluster_shared->lock);
}

void
cluster_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: it reads only pg_database, a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("cluster launcher");
	launcher_adopt();
	on_shmem_exit(launcher_detach, (Datum) 0);

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		timeout = launcher_reconcile();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
