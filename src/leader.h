/*-------------------------------------------------------------------------
 *
 * leader.h
 *	  The leader's work: pump every handler of the coordinator's pumps.
 *
 * leader_start() is called when an engine takes the lease, leader_stop()
 * when it loses or gives it up (everything in memory is forgotten: the
 * next leader starts from the committed cursors).  leader_work() does one
 * pass over the handlers and returns how long the engine may sleep; it
 * never leaves a transaction open, and it takes no further handler's turn
 * once "until" (the lease's renewal) has passed: the rest go first in the
 * next pass, after the engine has renewed.  It sets fence_lost when a commit found
 * the fence changed, so that the engine re-checks its lease at once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_LEADER_H
#define CLUSTER_LEADER_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

typedef struct Leader
{
	int32		coordinator_id;
	char		lease_key[NAMEDATALEN + 16];
	int64		fence;
	MemoryContext cxt;
	uint64		generation;		/* of the pump and handler settings loaded */
	uint64		workers_generation; /* of the workers loaded */
	TimestampTz reload_at;		/* 0, or when to load again: a pump was broken */
	List	   *pumps;			/* Pump * */
	List	   *handlers;		/* Turn * (leader.c) */
	int			next_turn;		/* whose turn comes first in the next pass */
	TimestampTz next_retention;
	TimestampTz next_worker_load;
	bool		fence_lost;
	/* where workers dial in (the coordinator's "listen"; "": nowhere) */
	char		listen[301];
	bool		listening;
	char		listening_at[301];	/* the endpoint of the transport's listener */
	bool		listen_warned;	/* the refusal or failure was logged */
	int			listen_backoff_ms;
	TimestampTz next_listen;
	uint32		listen_settings;	/* the settings it listens by (a hash) */
} Leader;

extern void leader_start(Leader *l, int32 coordinator_id,
						 const char *coordinator, int64 fence);
extern long leader_work(Leader *l, TimestampTz until);
extern void leader_stop(Leader *l);

/* retention.c */
extern void retention_run(Leader *l);

#endif							/* CLUSTER_LEADER_H */
