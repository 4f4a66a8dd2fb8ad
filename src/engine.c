/*-------------------------------------------------------------------------
 *
 * engine.c
 *	  The engine's loop: stand by, take the lease, lead, renew, step down.
 *
 * A leader renews its lease when a third of the TTL has passed, and steps
 * down by itself when a renewal fails or its own deadline passes first
 * (it may have been stuck): it releases the advisory lock and forgets its
 * leadership.  A standby sleeps until the lease would expire; the exit of
 * any engine of its coordinator sets its latch, so it contends at once.
 * On a hot standby server every engine idles until promotion.  Between
 * steps the engine waits in transport_wait(): on its latch, postmaster
 * death and, once it leads handlers with workers, their connections.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "engine.h"
#include "leader.h"
#include "lease.h"
#include "restricted.h"
#include "shmem.h"
#include "transport.h"

/*
 * How often an idle engine on a hot standby checks for promotion: a read
 * of shared memory, ten wakeups a second on standby servers only, so that
 * a promoted server's engines lead within about this long (under an HA
 * manager every second here was a second of the failover).
 */
#define RECOVERY_CHECK_MS 100

typedef struct Engine
{
	int			slotno;
	EngineSlot *slot;
	int32		coordinator_id;
	char		holder[NAMEDATALEN + 32];
	bool		leading;
	int64		fence;
	int			ttl_ms;
	TimestampTz renew_at;		/* next renewal */
	TimestampTz deadline;		/* our lease ends here unless renewed */
	Leader		leader;
} Engine;

static void
engine_set_role(Engine *e, EngineRole role)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	if (role == ENGINE_LEADER && e->slot->role != ENGINE_LEADER)
		e->slot->leader_since = now;
	if (role == ENGINE_LEADER)
		e->slot->last_renewal = now;
	e->slot->role = role;
	e->slot->fence = e->fence;
	LWLockRelease(cluster_shared->lock);
}

/* Started and lost leadership both move the renewal clock. */
static void
engine_schedule(Engine *e, TimestampTz granted)
{
	e->deadline = TimestampTzPlusMilliseconds(granted, e->ttl_ms);
	e->renew_at = TimestampTzPlusMilliseconds(granted, e->ttl_ms / 3);
}

static void
engine_step_down(Engine *e, const char *why)
{
	ereport(WARNING,
			(errmsg("cluster engine stepping down as leader of coordinator \"%s\" (fence " INT64_FORMAT ")",
					e->slot->coordinator, e->fence),
			 errdetail("%s", why)));
	e->leading = false;
	leader_stop(&e->leader);
	engine_set_role(e, ENGINE_STANDBY);
	lease_release(e->coordinator_id, e->holder, e->fence);
}

/* The coordinator is gone: nothing more to do. */
static void
engine_retire(void)
{
	ereport(LOG, (errmsg("cluster engine exiting: its coordinator was dropped")));
	proc_exit(0);
}

static long
engine_try_lead(Engine *e)
{
	TimestampTz asked = GetCurrentTimestamp();
	int			wait_ms;

	switch (lease_take(e->coordinator_id, e->holder, &e->fence, &e->ttl_ms))
	{
		case LEASE_TAKEN:
			e->leading = true;
			engine_schedule(e, asked);
			leader_start(&e->leader, e->coordinator_id, e->slot->coordinator,
						 e->fence);
			engine_set_role(e, ENGINE_LEADER);
			ereport(LOG,
					(errmsg("cluster engine is now leader of coordinator \"%s\" with fence " INT64_FORMAT,
							e->slot->coordinator, e->fence)));
			return 0;			/* start leading at once */
		case LEASE_NO_COORDINATOR:
			engine_retire();
			break;
		case LEASE_BUSY:
			break;
	}
	engine_set_role(e, ENGINE_STANDBY);
	wait_ms = lease_watch(e->coordinator_id);
	if (wait_ms < 0)
		engine_retire();
	/* look again just after the lease would expire */
	return Min(wait_ms + 10, 60 * 1000);
}

static long
engine_lead(Engine *e)
{
	TimestampTz now = GetCurrentTimestamp();
	long		work_ms;

	if (now >= e->deadline)
	{
		engine_step_down(e, "The lease expired before it could be renewed.");
		return 0;
	}
	if (now >= e->renew_at)
	{
		if (!lease_renew(e->coordinator_id, e->holder, e->fence, &e->ttl_ms))
		{
			engine_step_down(e, "The lease was taken over or expired.");
			return 0;
		}
		engine_schedule(e, now);
		engine_set_role(e, ENGINE_LEADER);
	}
	work_ms = leader_work(&e->leader, e->renew_at);
	if (!lease_relock(e->coordinator_id))
	{
		engine_step_down(e, "Its advisory lock was released by code that ran in the engine, and another engine took it.");
		return 0;
	}
	if (e->leader.fence_lost)
	{
		/* a commit saw another fence: verify the lease now */
		e->leader.fence_lost = false;
		e->renew_at = now;
		return 0;
	}
	now = GetCurrentTimestamp();
	return Min(work_ms, Max(1, TimestampDifferenceMilliseconds(now, e->renew_at)));
}

static long
engine_step(Engine *e)
{
	if (RecoveryInProgress())
	{
		engine_set_role(e, ENGINE_IDLE);
		return RECOVERY_CHECK_MS;
	}
	if (!e->leading)
		return engine_try_lead(e);
	return engine_lead(e);
}

/* on_shmem_exit: runs after the advisory lock is gone, so wake the rest */
static void
engine_detach(int code, Datum arg)
{
	EngineSlot *slot = &cluster_shared->engines[DatumGetInt32(arg)];
	int32		coordinator_id = slot->coordinator_id;
	bool		mine;

	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	mine = (slot->pid == MyProcPid);
	if (mine)
	{
		slot->pid = 0;
		slot->latch = NULL;
		slot->role = ENGINE_STARTING;
	}
	LWLockRelease(cluster_shared->lock);
	if (mine)
		shmem_wake_coordinator(coordinator_id);
}

static void
engine_attach(Engine *e, int slotno)
{
	char		appname[NAMEDATALEN + 32];

	e->slotno = slotno;
	e->slot = &cluster_shared->engines[slotno];
	LWLockAcquire(cluster_shared->lock, LW_EXCLUSIVE);
	e->coordinator_id = e->slot->coordinator_id;
	e->slot->pid = MyProcPid;
	e->slot->latch = MyLatch;
	e->slot->started_at = GetCurrentTimestamp();
	LWLockRelease(cluster_shared->lock);
	on_shmem_exit(engine_detach, Int32GetDatum(slotno));

	snprintf(e->holder, sizeof(e->holder), "%s/%d",
			 e->slot->coordinator, MyProcPid);
	snprintf(appname, sizeof(appname), "cluster engine %s",
			 e->slot->coordinator);
	SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);

	/*
	 * A round's commit need not wait for the disk: losing it in a crash
	 * loses its side effects and its cursor move together, and the next
	 * leader does the round again.  Lease changes are synchronous.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(appname);
}

/*
 * A backlog's rounds allocate and free megabytes each (batches, their
 * function calls' results): let malloc keep that memory for the next
 * round instead of handing it back to the kernel and faulting it in again,
 * which cost a leader a quarter of its time at batch_size 1000.
 */
static void
keep_memory(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}

void
cluster_engine_main(Datum arg)
{
	Engine		engine = {0};

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* the slot's database is set before the scheduler starts the engine */
	BackgroundWorkerInitializeConnectionByOid(cluster_shared->engines[DatumGetInt32(arg)].database,
											  InvalidOid, 0);
	restricted_engine_init();
	keep_memory();
	engine_attach(&engine, DatumGetInt32(arg));

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		timeout = engine_step(&engine);
		transport_wait(timeout);
		ResetLatch(MyLatch);
	}
}
