/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher: the one static background worker, connected to no
 *	  database, that keeps a scheduler running in every database that has
 *	  the extension.
 *
 * It lists the databases (pg_database: those that allow connections and
 * are not templates, and that cluster.database names, when it names any)
 * at cluster.poll_interval and when woken, and starts a scheduler in each
 * (scheduler.h).  A scheduler that finds no extension exits and is started
 * again only after a CREATE EXTENSION somewhere (shmem_wake_launcher), so a
 * database without the extension costs one short-lived process when the
 * launcher first sees it, and nothing after.  A scheduler that fails is
 * restarted after 1 s, doubling to 30 s.  Databases created later are
 * found at the next poll, dropped ones are forgotten, and a database named
 * in cluster.database that doesn't exist is skipped quietly.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_LAUNCHER_H
#define CLUSTER_LAUNCHER_H

#include "fmgr.h"

extern void launcher_register(void);
extern PGDLLEXPORT void cluster_launcher_main(Datum arg);

#endif							/* CLUSTER_LAUNCHER_H */
