/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  An engine: a background worker that competes for one coordinator's
 *	  lease and, while it holds it, does the leader's work.
 *
 * Started by its database's scheduler with its shared-memory slot number
 * as argument.
 * It exits on SIGTERM (within a wait), when its coordinator is dropped, or
 * with an error, after which its database's scheduler restarts it with backoff.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_ENGINE_H
#define CLUSTER_ENGINE_H

#include "fmgr.h"

extern PGDLLEXPORT void cluster_engine_main(Datum arg);

#endif							/* CLUSTER_ENGINE_H */
