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

static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (launcher_pending)
				shmem_wake_launcher();
			launcher_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			launcher_pending = false;
			break;
		default:
			break;
	}
}

void
wake_launcher_at_commit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		callback_registered = true;
	}
	launcher_pending = true;
}

PG_FUNCTION_INFO_V1(cluster_wake_launcher);

/* Statement trigger on cluster.coordinator. */
Datum
cluster_wake_launcher(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s can only be called as a trigger",
						"cluster._wake_launcher()")));
	wake_launcher_at_commit();
	return PointerGetDatum(NULL);
}
