/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *	  A database's scheduler: starts, watches and restarts the engines of
 *	  that database's coordinators.
 *
 * The launcher starts one scheduler per database (scheduler_start).  For
 * each coordinator it keeps 1 + standby_engines engines running.  It
 * rereads the coordinators when woken (a commit that changed them sets its
 * latch, an engine's exit is reported by the postmaster) and at
 * cluster.poll_interval.  An engine that exits unplanned is restarted after
 * 1 s, doubling to 30 s; the delay is reset once an engine stayed up 30 s.
 * In a database without the extension, or once it is dropped, the
 * scheduler stops its engines, says so in its database entry and exits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_SCHEDULER_H
#define CLUSTER_SCHEDULER_H

#include "fmgr.h"
#include "postmaster/bgworker.h"

extern bool scheduler_start(Oid database, const char *name,
							BackgroundWorkerHandle **handle);
extern PGDLLEXPORT void cluster_scheduler_main(Datum arg);

#endif							/* CLUSTER_SCHEDULER_H */
