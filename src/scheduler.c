/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  Start, watch and restart the engines of one database's coordinators.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "cluster.h"
#include "restricted.h"
#include "scheduler.h"
#include "shmem.h"
#include "xact.h"

/* What the scheduler alone knows about each of its database's slots. */
typedef struct SlotControl
{
	BackgroundWorkerHandle *handle;
	int			backoff_ms;
	TimestampTz next_start;
	bool		wanted;			/* seen in the last read of coordinators */
} SlotControl;

static SlotControl *control;
static DbState *my_db;

/* Is the slot one of this database's? */
#define MINE(slot) ((slot)->in_use && (slot)->database == MyDatabaseId)

/*
 * A dynamic background worker of this library connected to a database,
 * never restarted by the postmaster: the process that starts it watches it.
 */
static bool
start_worker(const char *function, const char *type, const char *name, Datum arg,
			 BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cluster");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = arg;
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/* Called by the launcher: a scheduler for "database", watched by it. */
bool
scheduler_start(Oid database, const char *name, BackgroundWorkerHandle **handle)
{
	char		title[BGW_MAXLEN];

	snprintf(title, sizeof(title), "cluster scheduler of database %s", name);
	return start_worker("cluster_scheduler_main", "cluster scheduler", title,
						ObjectIdGetDatum(database), handle);
}

static bool
engine_start(int slotno)
{
	EngineSlot *slot = &cluster_shared->engines[slotno];
	char		title[BGW_MAXLEN];

	snprintf(title, sizeof(title), "cluster engine %d of coordinator %s",
			 slot->ordinal, slot->coordinator);
	if (!start_worker("cluster_engine_main", "cluster engine", title,
					  Int32GetDatum(slotno), &control[slotno].handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start an engine for coordinator \"%s\"",
						slot->coordinator),
				 errhint("Raise max_worker_processes: it must leave room for the engines of every coordinator.")));
		control[slotno].handle = NULL;
		return false;
	}
	slot->started_at = GetCurrentTimestamp();
	return true;
}

/* Find the slot of (coordinator, ordinal), or claim a free one. */
static int
slot_for(int32 coordinator_id, const char *name, int ordinal)
{
	int			free_slot = -1;

	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		EngineSlot *slot = &cluster_shared->engines[i];

		if (MINE(slot) && slot->coordinator_id == coordinator_id &&
			slot->ordinal == ordinal)
			return i;
		if (!slot->in_use && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free engine slot for coordinator \"%s\"", name),
				 errhint("Raise cluster.max_engines (currently %d).",
						 cluster_max_engines)));
		return -1;
	}
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	memset(&cluster_shared->engines[free_slot], 0, sizeof(EngineSlot));
	cluster_shared->engines[free_slot].in_use = true;
	cluster_shared->engines[free_slot].database = MyDatabaseId;
	cluster_shared->engines[free_slot].coordinator_id = coordinator_id;
	cluster_shared->engines[free_slot].ordinal = ordinal;
	strlcpy(cluster_shared->engines[free_slot].coordinator, name, NAMEDATALEN);
	LWLockRelease(cluster_shared->lock);
	memset(&control[free_slot], 0, sizeof(SlotControl));
	control[free_slot].next_start = GetCurrentTimestamp();
	return free_slot;
}

/*
 * Is the extension's schema one this library runs?  After a new build
 * whose tables differ is installed, a database's engines wait for ALTER
 * EXTENSION cluster UPDATE (said once in the log): the library reads and
 * writes the tables in their current shape only.
 */
static bool
schema_current(const char *version)
{
	static const char *const versions[] = CLUSTER_SCHEMA_VERSIONS;
	static bool said = false;

	for (size_t i = 0; i < lengthof(versions); i++)
	{
		if (strcmp(version, versions[i]) == 0)
		{
			said = false;
			return true;
		}
	}
	if (!said)
		ereport(LOG,
				(errmsg("cluster engines of database \"%s\" wait for ALTER EXTENSION cluster UPDATE",
						get_database_name(MyDatabaseId)),
				 errdetail("The extension's version here is %s; this build of the library runs %s.",
						   version, CLUSTER_VERSION)));
	said = true;
	return false;
}

/* Mark the slots every coordinator wants; false when the extension is absent. */
static bool
read_coordinators(void)
{
	bool		present;
	bool		isnull;

	for (int i = 0; i < cluster_shared->max_engines; i++)
		control[i].wanted = false;

	worker_xact_begin("cluster: reading coordinators");
	spi_exec_checked("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'cluster'",
					 0, NULL, NULL, NULL, SPI_OK_SELECT);
	present = (SPI_processed > 0);
	if (present && schema_current(TextDatumGetCString(spi_getdatum(0, 1, &isnull))))
	{
		spi_exec_checked("SELECT id, name, standby_engines FROM cluster.coordinator ORDER BY id",
						 0, NULL, NULL, NULL, SPI_OK_SELECT);
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			int32		id = DatumGetInt32(spi_getdatum(row, 1, &isnull));
			char	   *name = TextDatumGetCString(spi_getdatum(row, 2, &isnull));
			int32		standbys = DatumGetInt32(spi_getdatum(row, 3, &isnull));

			for (int ordinal = 0; ordinal <= standbys; ordinal++)
			{
				int			slotno = slot_for(id, name, ordinal);

				if (slotno >= 0)
					control[slotno].wanted = true;
			}
		}
	}
	worker_xact_commit();
	return present;
}

/* An engine that stopped without being asked to: schedule its restart. */
static void
engine_exited(int slotno, TimestampTz now)
{
	EngineSlot *slot = &cluster_shared->engines[slotno];
	SlotControl *ctl = &control[slotno];

	ctl->backoff_ms = backoff_restart(ctl->backoff_ms, slot->started_at, now);
	ctl->next_start = TimestampTzPlusMilliseconds(now, ctl->backoff_ms);
	ctl->handle = NULL;

	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	slot->restarts++;
	LWLockRelease(cluster_shared->lock);
	ereport(LOG,
			(errmsg("cluster engine %d of coordinator \"%s\" exited; restarting it in %d ms",
					slot->ordinal, slot->coordinator, ctl->backoff_ms)));
	shmem_wake_coordinator(slot->coordinator_id);
}

static void
slot_release(int slotno)
{
	if (control[slotno].handle)
		TerminateBackgroundWorker(control[slotno].handle);
	control[slotno].handle = NULL;
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	cluster_shared->engines[slotno].in_use = false;
	LWLockRelease(cluster_shared->lock);
}

/*
 * Bring the engines in line with the coordinators; returns ms to sleep.
 * Without the extension (dropped, or never created here), the engines go
 * and so does the scheduler: the launcher starts it again when the
 * extension is created.
 */
static long
scheduler_reconcile(void)
{
	TimestampTz now;
	long		timeout = cluster_poll_interval;

	if (!read_coordinators())
	{
		my_db->no_extension = true;
		proc_exit(0);			/* scheduler_detach stops the engines */
	}
	now = GetCurrentTimestamp();
	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		SlotControl *ctl = &control[i];
		pid_t		pid;

		if (!MINE(&cluster_shared->engines[i]))
			continue;
		if (!ctl->wanted)
		{
			slot_release(i);
			continue;
		}
		if (ctl->handle &&
			GetBackgroundWorkerPid(ctl->handle, &pid) == BGWH_STOPPED)
			engine_exited(i, now);
		if (ctl->handle == NULL && ctl->next_start <= now && !engine_start(i))
			ctl->next_start = TimestampTzPlusMilliseconds(now, cluster_poll_interval);
		if (ctl->handle == NULL)
			timeout = Min(timeout,
						  TimestampDifferenceMilliseconds(now, ctl->next_start));
	}
	return timeout;
}

/*
 * Engines of this database left by a previous scheduler can't be watched
 * (their handles died with it): stop them, so that every engine has a
 * known state.
 */
static void
scheduler_adopt(void)
{
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	my_db->scheduler_pid = MyProcPid;
	my_db->scheduler_latch = MyLatch;
	my_db->no_extension = false;
	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		EngineSlot *slot = &cluster_shared->engines[i];

		if (!MINE(slot))
			continue;
		if (slot->pid != 0)
			kill(slot->pid, SIGTERM);
		slot->in_use = false;
	}
	LWLockRelease(cluster_shared->lock);
}

/*
 * The engines go with their scheduler (stopped by the launcher, or failed):
 * only a running scheduler can restart them.
 */
static void
scheduler_detach(int code, Datum arg)
{
	for (int i = 0; i < cluster_shared->max_engines; i++)
		if (MINE(&cluster_shared->engines[i]))
			slot_release(i);
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	my_db->scheduler_pid = 0;
	my_db->scheduler_latch = NULL;
	LWLockRelease(cluster_shared->lock);
}

void
cluster_scheduler_main(Datum arg)
{
	Oid			database = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
	restricted_engine_init();
	pgstat_report_appname("cluster scheduler");

	/* the launcher claimed the entry before it started us */
	my_db = shmem_db(database, false);
	if (my_db == NULL)
		proc_exit(0);
	control = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(SlotControl) * cluster_shared->max_engines);
	scheduler_adopt();
	on_shmem_exit(scheduler_detach, (Datum) 0);

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		timeout = scheduler_reconcile();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
