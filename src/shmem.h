/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The live state of the launcher and the engines, in shared memory.
 *
 * The launcher claims a database entry for every database it starts a
 * scheduler in; that database's scheduler owns its engine slots: it assigns
 * one to each (coordinator, ordinal) pair and frees it when the coordinator
 * is dropped.  An engine writes only its own slot.  Everything is tagged
 * with its database: wakers reach only their own database's processes, and
 * the SQL views show only their own database's state.  Readers take the
 * lock in shared mode.  Nothing here is durable: the tables are the truth,
 * this is what the processes are doing right now.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_SHMEM_H
#define CLUSTER_SHMEM_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

typedef enum EngineRole
{
	ENGINE_STARTING = 0,		/* launched, not yet connected */
	ENGINE_IDLE,				/* server is a hot standby: nothing to do */
	ENGINE_STANDBY,				/* waiting for the lease */
	ENGINE_LEADER				/* holds the lease and the advisory lock */
} EngineRole;

typedef struct EngineSlot
{
	bool		in_use;
	Oid			database;
	int32		coordinator_id;
	char		coordinator[NAMEDATALEN];
	int32		ordinal;		/* 0 .. standby_engines */
	pid_t		pid;			/* 0 while not running */
	Latch	   *latch;
	EngineRole	role;
	int64		fence;			/* fence of the current or last lease held */
	TimestampTz started_at;
	TimestampTz leader_since;
	TimestampTz last_renewal;
	int32		restarts;		/* unplanned exits seen by the scheduler */
} EngineSlot;

/* What a leader reports about a handler it runs, for cluster.handlers. */
typedef struct HandlerStat
{
	int32		handler_id;		/* 0: free */
	Oid			database;
	pid_t		leader_pid;
	int32		in_flight;		/* read and not yet done */
	char		waiting_for[32];	/* what it waits for; "": nothing */
	TimestampTz next_retry_at;	/* the next retry or end of backoff; 0: none */
} HandlerStat;

#define CLUSTER_HANDLER_STATS 1024

/* What a leader reports about its connection to a worker. */
typedef struct WorkerStat
{
	char		worker_id[65];	/* "": free */
	Oid			database;
	pid_t		leader_pid;
	bool		connected;
	int32		in_flight;
	int64		delivered;
	int64		acked;
	int64		failed;
	int64		reconnects;
	double		rtt_ms;			/* 0: not measured */
	TimestampTz unhealthy_until;	/* 0: healthy */
	char		last_error[128];
	char		peer[64];		/* a dial-in worker's address; "" for the others */
} WorkerStat;

#define CLUSTER_WORKER_STATS 1024

/* A database the launcher serves. */
#define CLUSTER_MAX_DATABASES 256

typedef struct DbState
{
	Oid			database;		/* InvalidOid: free */
	pg_atomic_uint64 config_generation; /* bumped at commit of pump/handler changes */
	pg_atomic_uint64 workers_generation;	/* ... of worker, grant and token changes */
	pg_atomic_uint64 publications;	/* bumped at commit of inserts into event tables */
	pid_t		scheduler_pid;
	Latch	   *scheduler_latch;
	bool		no_extension;	/* its scheduler found no extension and left */
	TimestampTz hold_until;		/* DROP DATABASE asked for it to stay away */
} DbState;

typedef struct ClusterShared
{
	LWLock	   *lock;
	pg_atomic_uint64 recheck;	/* bumped by CREATE EXTENSION where no scheduler runs */
	DbState		dbs[CLUSTER_MAX_DATABASES];
	HandlerStat handlers[CLUSTER_HANDLER_STATS];
	WorkerStat	workers[CLUSTER_WORKER_STATS];
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	int			max_engines;
	EngineSlot	engines[FLEXIBLE_ARRAY_MEMBER];
} ClusterShared;

extern ClusterShared *cluster_shared;

extern void shmem_install_hooks(void);
extern DbState *shmem_db(Oid database, bool claim);
extern void shmem_db_release(Oid database);
extern void shmem_db_hold(Oid database, int ms);
extern void shmem_wake_coordinator(int32 coordinator_id);
extern void shmem_wake_launcher(void);
extern void shmem_wake_leaders(void);
extern void shmem_published(void);
extern uint64 shmem_publications(void);
extern uint64 shmem_config_generation(void);
extern void shmem_config_changed(void);
extern uint64 shmem_workers_generation(void);
extern void shmem_workers_changed(void);
extern void shmem_handler_report(int32 handler_id, int in_flight,
								 const char *waiting_for, TimestampTz next_retry_at);
extern void shmem_handler_forget(int32 handler_id);
extern void shmem_worker_report(WorkerStat *stats, int n);
extern void shmem_worker_forget(void);

#endif							/* CLUSTER_SHMEM_H */
