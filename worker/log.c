/*-------------------------------------------------------------------------
 *
 * log.c
 *	  cluster-worker's log: one line to stderr per message.
 *
 * A supervisor (systemd, a container runtime) keeps stderr, so that is
 * where the log goes, stamped so that lines from several workers can be
 * told apart and put in order.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* not argv[0]: the log reads the same however the worker was started */
const char *const progname = "cluster-worker";

/*
 * Log one line to stderr: time, program, pid, level, message.
 */
void
wlog(const char *level, const char *fmt,...)
{
	struct timeval tv;
	struct tm	tm;
	char		stamp[32];
	va_list		ap;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03d %s[%d] %s: ", stamp, (int) (tv.tv_usec / 1000),
			progname, (int) getpid(), level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
