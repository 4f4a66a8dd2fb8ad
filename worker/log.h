/*-------------------------------------------------------------------------
 *
 * log.h
 *	  cluster-worker's log: one line to stderr per message.
 *
 * Contract.  wlog writes "time program[pid] LEVEL: message" and a newline
 * to stderr, at once (stderr is unbuffered), from any module; it calls
 * nothing else of the worker, so every module may use it.  Levels are
 * those of PostgreSQL's log: LOG, WARNING, ERROR, FATAL.  progname is the
 * name the worker goes by in its log and its messages.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_LOG_H
#define CLUSTER_WORKER_LOG_H

extern const char *const progname;

extern void wlog(const char *level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

#endif							/* CLUSTER_WORKER_LOG_H */
