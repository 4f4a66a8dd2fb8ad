/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  Wake background workers when a transaction commits.
 *
 * A backend that changes what a worker acts on asks for a wakeup; the
 * worker's latch is set at COMMIT, never before (it would read the old
 * state) and never on abort.  One transaction callback per backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WAKEUP_H
#define CLUSTER_WAKEUP_H

extern void wake_launcher_at_commit(void);

#endif							/* CLUSTER_WAKEUP_H */
