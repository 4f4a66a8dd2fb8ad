/*-------------------------------------------------------------------------
 *
 * status.c
 *	  SQL functions that show the live state kept in shared memory.
 *
 * They read only; the views over them are what PUBLIC may see.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(cluster_engine_status);
PG_FUNCTION_INFO_V1(cluster_handler_status);
PG_FUNCTION_INFO_V1(cluster_handler_waits);
PG_FUNCTION_INFO_V1(cluster_worker_status);

static const char *const role_names[] = {
	[ENGINE_STARTING] = "starting",
	[ENGINE_IDLE] = "idle",
	[ENGINE_STANDBY] = "standby",
	[ENGINE_LEADER] = "leader",
};

#define ENGINE_STATUS_COLS 9

Datum
cluster_engine_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < cluster_shared->max_engines; i++)
	{
		EngineSlot *slot = &cluster_shared->engines[i];
		Datum		values[ENGINE_STATUS_COLS] = {0};
		bool		nulls[ENGINE_STATUS_COLS] = {0};
		bool		leader = (slot->role == ENGINE_LEADER);

		if (!slot->in_use || slot->database != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(slot->pid);
		nulls[0] = (slot->pid == 0);
		values[1] = CStringGetTextDatum(slot->coordinator);
		values[2] = Int32GetDatum(slot->ordinal);
		values[3] = CStringGetTextDatum(slot->pid == 0 ? "stopped" : role_names[slot->role]);
		values[4] = Int64GetDatum(slot->fence);
		nulls[4] = (slot->fence == 0);
		values[5] = TimestampTzGetDatum(slot->leader_since);
		nulls[5] = !leader;
		values[6] = TimestampTzGetDatum(slot->last_renewal);
		nulls[6] = !leader;
		values[7] = TimestampTzGetDatum(slot->started_at);
		nulls[7] = (slot->started_at == 0);
		values[8] = Int32GetDatum(slot->restarts);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(cluster_shared->lock);
	return (Datum) 0;
}

Datum
cluster_handler_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < CLUSTER_HANDLER_STATS; i++)
	{
		HandlerStat *stat = &cluster_shared->handlers[i];
		Datum		values[3];
		bool		nulls[3] = {0};

		if (stat->handler_id == 0 || stat->database != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(stat->handler_id);
		values[1] = Int32GetDatum(stat->in_flight);
		values[2] = Int32GetDatum(stat->leader_pid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(cluster_shared->lock);
	return (Datum) 0;
}

#define HANDLER_WAITS_COLS 3

/* What each handler waits for, as its leader last said (0.6). */
Datum
cluster_handler_waits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < CLUSTER_HANDLER_STATS; i++)
	{
		HandlerStat *stat = &cluster_shared->handlers[i];
		Datum		values[HANDLER_WAITS_COLS];
		bool		nulls[HANDLER_WAITS_COLS] = {0};
		int			col = 0;

		if (stat->handler_id == 0 || stat->database != MyDatabaseId)
			continue;
		values[col++] = Int32GetDatum(stat->handler_id);
		nulls[col] = (stat->waiting_for[0] == '\0');
		values[col++] = CStringGetTextDatum(stat->waiting_for);
		nulls[col] = (stat->next_retry_at == 0 || stat->next_retry_at == DT_NOEND);
		values[col++] = TimestampTzGetDatum(stat->next_retry_at);
		Assert(col == HANDLER_WAITS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(cluster_shared->lock);
	return (Datum) 0;
}

#define WORKER_STATUS_COLS 11

Datum
cluster_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(cluster_shared->lock, LW_SHARED);
	for (int i = 0; i < CLUSTER_WORKER_STATS; i++)
	{
		WorkerStat *stat = &cluster_shared->workers[i];
		Datum		values[WORKER_STATUS_COLS];
		bool		nulls[WORKER_STATUS_COLS] = {0};
		int			col = 0;

		if (stat->worker_id[0] == '\0' || stat->database != MyDatabaseId)
			continue;
		values[col++] = CStringGetTextDatum(stat->worker_id);
		values[col++] = BoolGetDatum(stat->connected);
		values[col++] = Int32GetDatum(stat->in_flight);
		values[col++] = Int64GetDatum(stat->delivered);
		values[col++] = Int64GetDatum(stat->acked);
		values[col++] = Int64GetDatum(stat->failed);
		values[col++] = Int64GetDatum(stat->reconnects);
		nulls[col] = (stat->last_error[0] == '\0');
		values[col++] = CStringGetTextDatum(stat->last_error);
		nulls[col] = (stat->rtt_ms <= 0);
		values[col++] = Float8GetDatum(stat->rtt_ms);
		nulls[col] = (stat->unhealthy_until <= GetCurrentTimestamp());
		values[col++] = TimestampTzGetDatum(stat->unhealthy_until);
		nulls[col] = (stat->peer[0] == '\0');
		values[col++] = CStringGetTextDatum(stat->peer);
		Assert(col == WORKER_STATUS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(cluster_shared->lock);
	return (Datum) 0;
}
