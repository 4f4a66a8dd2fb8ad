/*-------------------------------------------------------------------------
 *
 * handler.h
 *	  A handler as its leader runs it: settings, tracker, and the
 *	  transactional commit of its cursor and state.
 *
 * handler_check_rights() raises an error unless the handler's owner may
 * still read its pump and execute its function: it is called at the start
 * of every round, so a lost right stops the handler (visibly, through the
 * round's error) and never fails an event.
 *
 * The per-event outcomes live here, for the local and the remote path
 * alike: handler_event_failed() (a failed attempt, dead letter at
 * max_attempts), handler_event_refused() (dead-lettered at once) and
 * handler_replay_outcome() (a replayed dead letter done or failed).  This
 * module calls neither delivery.c nor sql_handler.c: they call it.
 *
 * handler_load_all() makes a HandlerRun of each handler of a coordinator,
 * each in its own memory context with its own pump, so that the leader
 * keeps a handler whose definition is unchanged (handler_unchanged) and
 * frees one that changed or went (handler_free) without disturbing the
 * others.  This module alone writes a HandlerRun (its
 * settings once, its epoch at each handler_load()), the tracker writes its
 * own struct.  handler_load() rebuilds the tracker from the handler's row
 * (cursor, done events above it, attempts of failed events), so that a new
 * leader re-sends only what was really in flight.  handler_commit() writes what a
 * batch changed, as deltas, in the caller's transaction, fenced: it
 * returns false when the leader's fence or the handler's epoch is no
 * longer current, and the caller must then roll back.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_HANDLER_H
#define CLUSTER_HANDLER_H

#include "access/tupdesc.h"
#include "fmgr.h"
#include "nodes/pg_list.h"

#include "pump.h"
#include "tracker.h"

typedef struct HandlerRun
{
	MemoryContext cxt;			/* holds all of it, its pump included */
	char	   *definition;		/* what it was made of (handler_unchanged) */
	int32		id;
	char		name[NAMEDATALEN];
	char	   *what;			/* "cluster handler \"name\"", for messages */
	Pump	   *pump;
	Oid			function;		/* InvalidOid: no SQL function */
	Oid			owner;
	bool		key_order;
	int			batch_size;
	int			max_attempts;
	int			max_in_flight;
	int			max_batch_bytes;	/* of a delivery, in stored jsonb */
	int			ack_timeout_ms;
	bool		paused;
	bool		replay_marked;	/* dead letters were marked for replay at load */
	FmgrInfo	flinfo;
	bool		returns_patch;	/* the function returns jsonb */
	TupleDesc	event_desc;		/* it takes cluster.event[]: the row's; NULL: jsonb */
	/* what handler_load() read */
	int32		epoch;
	Tracker    *tracker;
} HandlerRun;

/* An event given up on, copied out of the tracker (which moves on). */
typedef struct DeadLetter
{
	int64		event_id;
	Jsonb	   *event;
	int			attempts;
	char	   *error;
} DeadLetter;

/* What one round changed, for handler_commit. */
typedef struct BatchOutcome
{
	int64		processed;
	int64		failed;
	List	   *dead;			/* DeadLetter * */
	bool		patched;		/* a state patch was applied: commit, fenced */
	char	   *last_error;
} BatchOutcome;

/* how soon handlers whose pump couldn't be loaded are tried again */
#define HANDLER_RELOAD_BROKEN_MS 10000

extern List *handler_load_all(int32 coordinator_id, MemoryContext parent,
							  bool *broken);
extern bool handler_unchanged(const HandlerRun *h, const HandlerRun *loaded);
extern void handler_free(HandlerRun *h);
extern void handler_check_rights(HandlerRun *h);
extern void handler_load(HandlerRun *h);
extern bool handler_commit(HandlerRun *h, BatchOutcome *out,
						   const char *lease_key, int64 fence);
extern void handler_record_error(HandlerRun *h, const char *message);
extern void handler_apply_patch(HandlerRun *h, Jsonb *patch);
extern int	handler_replay_fetch(HandlerRun *h, int limit, int64 **dead_letter_ids,
								 EventPos **positions, Event ***events,
								 int **attempts);
extern void handler_replay_outcome(HandlerRun *h, int64 dead_letter_id,
								   const char *error, BatchOutcome *out);
extern void handler_event_failed(HandlerRun *h, TrackedEvent *ev, char *error,
								 BatchOutcome *out);
extern void handler_event_refused(HandlerRun *h, TrackedEvent *ev, char *error,
								  BatchOutcome *out);

#endif							/* CLUSTER_HANDLER_H */
