/*-------------------------------------------------------------------------
 *
 * cluster.h
 *	  Settings shared by every part of the extension.
 *
 * The library must be loaded through shared_preload_libraries: it asks for
 * shared memory and registers the launcher at postmaster start.  The
 * settings below are defined in cluster.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_H
#define CLUSTER_H

/*
 * The extension version this library installs (default_version in
 * cluster.control), and the versions whose tables it reads and writes:
 * engines run only in databases at one of them.  0.6 changed the shape
 * of a handler's cursor (snapshot steps, position.h): a database still at
 * 0.5 waits for ALTER EXTENSION cluster UPDATE.
 */
#define CLUSTER_VERSION "0.6"
#define CLUSTER_SCHEMA_VERSIONS {"0.6"}

/* cluster.database: the database the extension lives in */
extern char *cluster_database;

/* cluster.max_engines: engine slots in shared memory */
extern int	cluster_max_engines;

/* cluster.poll_interval (ms): fallback poll of the launcher */
extern int	cluster_poll_interval;

/* cluster.worker_timeout (ms): a worker without heartbeat for this long is not dialled */
extern int	cluster_worker_timeout;

/* cluster.ca_file: CA certificates that wss:// workers are verified against */
extern char *cluster_ca_file;

/* cluster.worker_hosts: where the leader may dial workers (allowlist.c) */
extern char *cluster_worker_hosts;

/* cluster.worker_listen: where leaders may listen for workers (listen.c) */
extern char *cluster_worker_listen;

/* cluster.listen_cert_file, cluster.listen_key_file: TLS for listening leaders */
extern char *cluster_listen_cert_file;
extern char *cluster_listen_key_file;

#endif							/* CLUSTER_H */
