/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The settings of cluster-worker and the state its modules share.
 *
 * Contract.  main.c fills worker.opt from the command line before anything
 * starts, and sets the address and the shutdown flags as the worker goes;
 * every other module only reads them.  What a single module keeps (the
 * connections, the deliveries, the database connection) is static in that
 * module, not here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_H
#define CLUSTER_WORKER_H

#include <stdbool.h>

typedef struct Options
{
	const char *handler;
	const char *listen_host;	/* as given: NULL or "" means any address */
	int			listen_port;	/* 0: let the kernel choose */
	const char *advertise;		/* NULL: derived from --listen */
	const char *secret;			/* malloc'd; NULL: no Authorization required;
								 * with connect_url, the token we present */
	int			capacity;		/* deliveries run at once */
	const char *conninfo;		/* NULL: libpq's PG* environment */
	int			heartbeat_secs;
	const char *exec_command;	/* NULL: --print */
	bool		per_event;		/* --exec runs once per event, never a batch */
	const char *tls_cert;
	const char *tls_key;
	const char *connect_url;	/* dial the leader instead (ws:// or wss://) */
	const char *ca_file;		/* with wss://: CAs to verify the leader by */
} Options;

typedef struct Worker
{
	Options		opt;
	char	   *address;		/* what we register */
	bool		shutting_down;	/* refuse new deliveries */
	bool		forced;			/* second signal: kill the children */
} Worker;

extern Worker worker;

#endif							/* CLUSTER_WORKER_H */
