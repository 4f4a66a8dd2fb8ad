/*-------------------------------------------------------------------------
 *
 * lease.h
 *	  The engine's side of its coordinator's lease.
 *
 * An engine leads only while it holds both the session advisory lock of its
 * coordinator and the lease row.  The server releases the advisory lock the
 * moment the holder exits, so a standby can take over at once; the row's
 * expiry covers a holder that is alive but stuck.  Every take raises the
 * fence by one, and renewals are conditional on the fence.  Each function
 * runs one short transaction of its own.  No fence is ever below the floor
 * of cluster._fence_floor(): the fence a dropped extension left, and
 * cluster_timeline_floor(), (timeline - 1) << 32, so that a promoted
 * standby's fences pass whatever its old primary handed out unreplicated.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_LEASE_H
#define CLUSTER_LEASE_H

#include "fmgr.h"

typedef enum LeaseTake
{
	LEASE_TAKEN,				/* we lead: fence and ttl are set */
	LEASE_BUSY,					/* another engine holds the advisory lock */
	LEASE_NO_COORDINATOR		/* the coordinator was dropped */
} LeaseTake;

extern LeaseTake lease_take(int32 coordinator_id, const char *holder,
							int64 *fence, int *ttl_ms);
extern bool lease_renew(int32 coordinator_id, const char *holder,
						int64 fence, int *ttl_ms);
extern void lease_release(int32 coordinator_id, const char *holder,
						  int64 fence);
extern int	lease_watch(int32 coordinator_id);
extern bool lease_relock(int32 coordinator_id);
extern Datum cluster_timeline_floor(PG_FUNCTION_ARGS);

#endif							/* CLUSTER_LEASE_H */
