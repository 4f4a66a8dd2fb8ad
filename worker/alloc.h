/*-------------------------------------------------------------------------
 *
 * alloc.h
 *	  Memory allocation that does not fail.
 *
 * Contract.  xmalloc, xrealloc and xstrdup are malloc, realloc and strdup
 * that never return NULL: out of memory, they log FATAL and exit(1), since
 * the worker has no way to go on with half a delivery or half a message
 * (the leader sends again whatever was not answered).  What they return
 * is released with free().
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_ALLOC_H
#define CLUSTER_WORKER_ALLOC_H

#include <stddef.h>

extern void *xmalloc(size_t size);
extern void *xrealloc(void *p, size_t size);
extern char *xstrdup(const char *s);

#endif							/* CLUSTER_WORKER_ALLOC_H */
