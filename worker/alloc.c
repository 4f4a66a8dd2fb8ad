/*-------------------------------------------------------------------------
 *
 * alloc.c
 *	  Memory allocation that does not fail.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

static void out_of_memory(void) __attribute__((noreturn));

static void
out_of_memory(void)
{
	wlog("FATAL", "out of memory");
	exit(1);
}

void *
xmalloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void	   *grown = realloc(p, size);

	if (grown == NULL)
		out_of_memory();
	return grown;
}

char *
xstrdup(const char *s)
{
	size_t		len = strlen(s) + 1;

	return memcpy(xmalloc(len), s, len);
}
