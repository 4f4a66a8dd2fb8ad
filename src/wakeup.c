/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake background workers when a transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"

#include "shmem.h"
#include "wakeup.h"

static bool callback_registered = false;
static bool launcher_pending = false;
static bool leaders_pending = false;
static bool config_pending = false;
static bool workers_pending = false;

static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (launcher_pending)
				shmem_wake_launcher();
			if (config_pending)
				shmem_config_changed();
			if (workers_pending)
				shmem_workers_changed();
			if (leaders_pending && !config_pending && !workers_pending)
				shmem_published();
			launcher_pending = leaders_pending = config_pending = workers_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			launcher_pending = leaders_pending = config_pending = workers_pending = false;
			break;
		default:
			break;
	}
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		callback_registered = true;
	}
}

void
wake_launcher_at_commit(void)
{
	register_callback();
	launcher_pending = true;
}

static void
check_trigger(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s can only be called as a trigger", name)));
}

PG_FUNCTION_INFO_V1(cluster_wake_launcher);
PG_FUNCTION_INFO_V1(cluster_wake_leaders);
PG_FUNCTION_INFO_V1(cluster_config_changed);
PG_FUNCTION_INFO_V1(cluster_workers_changed);

/* Statement trigger on cluster.coordinator. */
Datum
cluster_wake_launcher(PG_FUNCTION_ARGS)
{
	check_trigger(fcinfo, "cluster._wake_launcher()");
	wake_launcher_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * Statement trigger on event tables: leaders read the new events at
 * commit instead of at their next poll.  Setting an already set latch
 * costs nothing, so a busy publisher adds no work.
 */
Datum
cluster_wake_leaders(PG_FUNCTION_ARGS)
{
	check_trigger(fcinfo, "cluster._wake_leaders()");
	register_callback();
	leaders_pending = true;
	return PointerGetDatum(NULL);
}

/* Statement trigger on pumps, handlers and replays: leaders reload. */
Datum
cluster_config_changed(PG_FUNCTION_ARGS)
{
	check_trigger(fcinfo, "cluster._config_changed()");
	register_callback();
	config_pending = true;
	return PointerGetDatum(NULL);
}

/*
 * Statement trigger on worker registrations, grants and tokens (0.5):
 * leaders reread their workers only.  Reloading the handlers as well would
 * give every delivery in flight back, and a worker joining would send its
 * handler's (and every other handler's) batches round again.
 */
Datum
cluster_workers_changed(PG_FUNCTION_ARGS)
{
	check_trigger(fcinfo, "cluster._workers_changed()");
	register_callback();
	workers_pending = true;
	return PointerGetDatum(NULL);
}
