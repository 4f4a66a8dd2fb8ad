/*-------------------------------------------------------------------------
 *
 * mesh.h
 *	  The leader's workers: which connections each handler has, dialling
 *	  and listening, and their figures for cluster.workers.
 *
 * The leader knows handlers and executors; this module alone knows that
 * the remote executor's workers are transport connections.
 * mesh_load_workers() reads the registered workers (and, when listening,
 * the tokens) of a coordinator in a transaction of its own and gives each
 * handler its connections (delivery_add_worker); connections no longer
 * wanted are closed, after the remote executor took back what they held.
 * mesh_pass() dials what is due and returns the wait until the next dial;
 * mesh_report() pushes the connections' counters into shared memory at
 * most every MESH_REPORT_EVERY_MS while busy and before a longer wait.
 * It calls down to transport, tokens, delivery and shmem, never up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_MESH_H
#define CLUSTER_MESH_H

#include "datatype/timestamp.h"

#include "handler.h"

/* the leader's HandlerRun of a handler id, or NULL: it does not run it */
typedef HandlerRun *(*MeshLookup) (void *arg, int32 handler_id);

extern void mesh_load_workers(int32 coordinator_id, bool listening,
							  MeshLookup lookup, void *arg);
extern bool mesh_listen(const char *host, int port);
extern long mesh_pass(long wait);
extern bool mesh_take_dialins_changed(void);
extern void mesh_flush(void);
extern long mesh_report(long wait);
extern void mesh_stop(void);

#endif							/* CLUSTER_MESH_H */
