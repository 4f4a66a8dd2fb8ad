/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher: the one static background worker that starts, watches
 *	  and restarts the engines.
 *
 * For each coordinator it keeps 1 + standby_engines engines running.  It
 * rereads the coordinators when woken (a commit that changed them sets its
 * latch, an engine's exit is reported by the postmaster) and at
 * cluster.poll_interval.  An engine that exits unplanned is restarted after
 * 1 s, doubling to 30 s; the delay is reset once an engine stayed up 30 s.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_LAUNCHER_H
#define CLUSTER_LAUNCHER_H

#include "fmgr.h"

extern void launcher_register(void);
extern PGDLLEXPORT void cluster_launcher_main(Datum arg);

#endif							/* CLUSTER_LAUNCHER_H */
