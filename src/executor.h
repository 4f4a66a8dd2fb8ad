/*-------------------------------------------------------------------------
 *
 * executor.h
 *	  What handles a handler's events: its remote workers (delivery.c) or
 *	  its SQL function in the leader (sql_handler.c), behind one shape.
 *
 * The leader settles both executors at the start of each round (what one
 * still holds is taken in even when the other runs), then picks the remote
 * one when a worker is connected, else the local one when the handler has
 * a function, and calls nothing else of either.  All of it runs inside the
 * round's transaction, SPI connected; the per-event outcomes are decided
 * in handler.c, which both call.
 *
 * ready	 can it take events now?
 * appetite	 how many events the round should read for it (the tracker's
 *			 room bounds it)
 * stirred	 has something happened since the last round (answers, a
 *			 connection made or lost) that the round must look at?
 * settle	 take in answers, losses and deadlines since the last round
 * replay	 hand over dead letters marked for replay; false once none is
 *			 left marked (nor in flight)
 * run		 handle or hand out what the tracker has ready, reading more
 *			 from the pump as it goes; 0 to be run again at once, else ms
 *			 until its next deadline, or -1 for none
 * forget	 give up what is in flight: the tracker is about to be reloaded
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_EXECUTOR_H
#define CLUSTER_EXECUTOR_H

#include "handler.h"
#include "leader.h"

typedef struct Executor
{
	const char *name;
	bool		(*ready) (HandlerRun *h);
	int			(*appetite) (HandlerRun *h);
	bool		(*stirred) (HandlerRun *h);
	void		(*settle) (Leader *l, HandlerRun *h, BatchOutcome *out);
	bool		(*replay) (Leader *l, HandlerRun *h, BatchOutcome *out);
	long		(*run) (Leader *l, HandlerRun *h, BatchOutcome *out);
	void		(*forget) (HandlerRun *h);
} Executor;

#endif							/* CLUSTER_EXECUTOR_H */
