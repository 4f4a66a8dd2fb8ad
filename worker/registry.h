/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The worker's registration in the database, over its own libpq
 *	  connection.
 *
 * Contract.  registry_register registers worker.address for
 * worker.opt.handler; registry_heartbeat keeps the registration alive,
 * registering again when it has lapsed, and returns false once it is gone
 * for good (the worker must stop, and exit with status 3);
 * registry_unregister removes it and closes the connection.  The calls
 * are synchronous (bounded by the timeouts registry.c sets): make them
 * between two turns of the lws loop, never from a callback.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_REGISTRY_H
#define CLUSTER_WORKER_REGISTRY_H

#include <stdbool.h>

typedef enum Registration
{
	REGISTERED,
	NOT_REGISTERED,				/* for now: try again at the next heartbeat */
	REGISTRATION_GONE			/* for good: the worker stops, exit status 3 */
} Registration;

extern Registration registry_register(void);
extern bool registry_heartbeat(void);
extern void registry_unregister(void);

#endif							/* CLUSTER_WORKER_REGISTRY_H */
