/*-------------------------------------------------------------------------
 *
 * backoff.h
 *	  The one backoff rule: a delay that starts at a minimum and doubles up
 *	  to a maximum.
 *
 * backoff_next() gives the delay after "current" (0: none yet).
 * backoff_restart() is the rule for processes the launcher and the
 * schedulers restart: 1 s doubling to 30 s, back to 1 s once the process
 * had run for 30 s.  Used for dial retries, round errors, blocked reads,
 * event retries and restarts alike.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_BACKOFF_H
#define CLUSTER_BACKOFF_H

#include "utils/timestamp.h"

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 30000
#define RESTART_HEALTHY_MS 30000

static inline int
backoff_next(int current, int min_ms, int max_ms)
{
	return Min(Max(current * 2, min_ms), max_ms);
}

static inline int
backoff_restart(int current, TimestampTz started_at, TimestampTz now)
{
	if (TimestampDifferenceExceeds(started_at, now, RESTART_HEALTHY_MS))
		current = 0;
	return backoff_next(current, RESTART_MIN_MS, RESTART_MAX_MS);
}

#endif							/* CLUSTER_BACKOFF_H */
