/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  Processing deliveries: --print writes events out and acks at once,
 *	  --exec runs a shell command per delivery, or per event.
 *
 * An --exec delivery's command runs on the whole batch.  If it fails on a
 * batch of several events, it runs again on each event alone, one run
 * after another in the delivery's slot, the way the leader's SQL path
 * narrows a failing batch: one event's failure must not fail the others,
 * which would be retried and dead-lettered with its error.  The delivery
 * is then answered once, with an ack whose "failed" lists the events whose
 * own run failed.  --per-event skips the batch run.
 *
 * The events of a run are written to an anonymous memory file (memfd)
 * that becomes the command's stdin, so handing over a batch of up to
 * 16 MiB never waits on the child.  The command's stderr is a
 * non-blocking pipe that server.c watches, reporting back through
 * delivery_stderr_readable; its exit is noticed through SIGCHLD, which
 * wakes the loop, and reaped with waitpid(WNOHANG).  Each command
 * runs in a process group of its own, so that a forced shutdown can kill
 * it with whatever it started, and so that a Ctrl-C at the terminal
 * reaches only the worker, which lets the commands finish.
 *
 * Up to --capacity commands run at once; further deliveries wait in a FIFO
 * of at most QUEUE_FACTOR * capacity (a leader respects the capacity, so
 * the queue only fills when connections overlap, e.g. during a failover),
 * and beyond that they fail at once.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "delivery.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"
#include "server.h"
#include "worker.h"

#define QUEUE_FACTOR	4
#define STDERR_READS	16		/* reads per wakeup: a flood can't starve us */

/*
 * One events message in --exec mode, from acceptance to its answer.  Its
 * command runs on the whole batch, or (--per-event, or after the batch
 * failed) on each event alone, one run after another in the same slot.
 */
typedef struct Delivery
{
	struct Delivery *next;		/* in running or queued */
	char	   *id;
	Connection *conn;			/* NULL once the leader has gone */
	json_t	   *events;			/* until answered */
	bool		one_by_one;		/* runs are of single events */
	size_t		current;		/* one_by_one: the event running or next */
	json_t	   *done;			/* one_by_one: ids of the events that passed */
	json_t	   *failed;			/* one_by_one: [{eventId, error}] */
	char	   *error;			/* set: fail the whole delivery with this */
	bool		finished;		/* nothing left to run: answer it */
	pid_t		pid;			/* 0 until started */
	struct lws *stderr_wsi;		/* the child's stderr, watched by server.c */
	int			stderr_fd;		/* its descriptor, while stderr_wsi is set */
	size_t		err_len;
	char		err[PROTOCOL_MAX_ERROR];	/* what the leader keeps of it */
} Delivery;

static Delivery *running;
static int	n_running;
static Delivery *queued;		/* FIFO, waiting for a free slot */
static int	n_queued;

extern char **environ;

static int	digits_needed(json_t *value);

/*
 * The fewest significant digits, 15 to 17, that give back exactly d:
 * jansson prints 17 by default, which turns 0.1 into 0.10000000000000001.
 */
static int
digits_for(double d)
{
	char		buf[40];

	for (int digits = 15; digits < 17; digits++)
	{
		snprintf(buf, sizeof(buf), "%.*g", digits, d);
		if (strtod(buf, NULL) == d)
			return digits;
	}
	return 17;
}

static int
max_digits(int a, json_t *value)
{
	int			b = digits_needed(value);

	return a > b ? a : b;
}

/* The most digits that any real number in value needs; 0 if it has none. */
static int
digits_needed(json_t *value)
{
	const char *key;
	json_t	   *member;
	size_t		i;
	int			digits = 0;

	switch (json_typeof(value))
	{
		case JSON_REAL:
			return digits_for(json_real_value(value));
		case JSON_OBJECT:
			json_object_foreach(value, key, member)
				digits = max_digits(digits, member);
			return digits;
		case JSON_ARRAY:
			json_array_foreach(value, i, member)
				digits = max_digits(digits, member);
			return digits;
		default:
			return 0;
	}
}

/*
 * Write each event as one compact JSON line.  jansson keeps the keys in
 * their order; integers come out as they came in, real numbers with the
 * shortest precision that keeps their value.
 */
static int
write_events(json_t *events, FILE *out)
{
	size_t		i;
	json_t	   *event;

	json_array_foreach(events, i, event)
	{
		size_t		flags = JSON_COMPACT | JSON_ENCODE_ANY;
		int			digits = digits_needed(event);

		if (digits > 0)
			flags |= JSON_REAL_PRECISION(digits);
		if (json_dumpf(event, out, flags) != 0 || fputc('\n', out) == EOF)
			return -1;
	}
	return fflush(out);
}

static void
print_delivery(Connection *c, const char *id, json_t *events)
{
	char		error[128];

	if (write_events(events, stdout) != 0)
	{
		snprintf(error, sizeof(error), "could not write to stdout: %s",
				 strerror(errno));
		wlog("WARNING", "delivery %s: %s", id, error);
		clearerr(stdout);
		reply_fail(c, id, error);
		return;
	}
	reply_ack(c, id);
}

/*
 * A memory file holding the events as JSON lines, positioned at its start.
 * The stdio stream writing it is closed before any child can read it.
 */
static int
events_memfd(json_t *events)
{
	int			fd = memfd_create("cluster-worker-events", MFD_CLOEXEC);
	int			stream_fd;
	FILE	   *stream;
	bool		ok;

	if (fd < 0)
		return -1;
	stream_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	stream = stream_fd < 0 ? NULL : fdopen(stream_fd, "w");
	if (stream == NULL)
	{
		int			save_errno = errno;

		if (stream_fd >= 0)
			close(stream_fd);
		close(fd);
		errno = save_errno;
		return -1;
	}
	ok = write_events(events, stream) == 0;
	if (fclose(stream) != 0)
		ok = false;
	if (!ok || lseek(fd, 0, SEEK_SET) != 0)
	{
		int			save_errno = errno;

		close(fd);
		errno = save_errno;
		return -1;
	}
	return fd;
}

/*
 * Start /bin/sh -c COMMAND with input as stdin and errfd as stderr; stdout
 * is ours.  Signals the worker handles or ignores are reset to default,
 * and every other descriptor (sockets, the database connection) is closed.
 * Returns 0 or an errno value.
 */
static int
spawn_shell(int input, int errfd, pid_t *pid)
{
	char	   *argv[] = {"sh", "-c", (char *) worker.opt.exec_command, NULL};
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t	defaults;
	sigset_t	none;
	int			rc;

	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, input, 0);
	posix_spawn_file_actions_adddup2(&actions, errfd, 2);
	posix_spawn_file_actions_addclosefrom_np(&actions, 3);

	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGCHLD);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGINT);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
							 POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

	rc = posix_spawn(pid, "/bin/sh", &actions, &attr, argv, environ);

	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	return rc;
}

/* Stop listening to a child's stderr; lws closes the pipe. */
static void
detach_stderr(Delivery *d)
{
	if (d->stderr_wsi == NULL)
		return;
	server_unwatch_pipe(d->stderr_wsi);
	d->stderr_wsi = NULL;
}

/* Can each event be answered on its own?  The leader always sends ids. */
static bool
all_named(json_t *events)
{
	size_t		i;
	json_t	   *event;

	json_array_foreach(events, i, event)
	{
		if (protocol_event_id(event) == NULL)
			return false;
	}
	return true;
}

/* The events of d's next run: the batch, or the current event alone. */
static json_t *
run_events(Delivery *d)
{
	if (!d->one_by_one)
		return json_incref(d->events);
	return json_pack("[O]", json_array_get(d->events, d->current));
}

/* Start d's next run; on failure write why to error and return false. */
static bool
spawn_run(Delivery *d, char *error, size_t size)
{
	json_t	   *events = run_events(d);
	int			input = events_memfd(events);
	int			errpipe[2] = {-1, -1};
	bool		ok = false;
	int			rc;

	json_decref(events);
	d->err_len = 0;
	if (input < 0)
		snprintf(error, size, "could not write the events for the command: %s",
				 strerror(errno));
	else if (pipe2(errpipe, O_CLOEXEC) != 0)
		snprintf(error, size, "could not create a pipe: %s", strerror(errno));
	else if ((d->stderr_wsi = server_watch_pipe(errpipe[0], d)) == NULL)
	{
		/* lws leaves a file descriptor it failed to adopt to us */
		close(errpipe[0]);
		snprintf(error, size, "could not watch the command's stderr");
	}
	else if ((rc = spawn_shell(input, errpipe[1], &d->pid)) != 0)
	{
		detach_stderr(d);
		snprintf(error, size, "could not start /bin/sh: %s", strerror(rc));
	}
	else
	{
		d->stderr_fd = errpipe[0];
		ok = true;
	}

	if (input >= 0)
		close(input);
	if (errpipe[1] >= 0)
		close(errpipe[1]);
	return ok;
}

static void
delivery_free(Delivery *d)
{
	json_decref(d->events);
	json_decref(d->done);
	json_decref(d->failed);
	free(d->error);
	free(d->id);
	free(d);
}

/* From now on d's events run one at a time. */
static void
begin_one_by_one(Delivery *d)
{
	d->one_by_one = true;
	d->current = 0;
	d->done = json_array();
	d->failed = json_array();
}

/*
 * The batch's command ended: ack, or fail, or go on with each event alone.
 * One event, or one the answer could not name, gives nothing to narrow;
 * nor does a forced shutdown or a leader that has gone.
 */
static void
batch_ended(Delivery *d, bool ok, const char *error)
{
	size_t		n = json_array_size(d->events);

	d->finished = true;
	if (ok)
		return;
	if (n == 1 || worker.forced || d->conn == NULL || !all_named(d->events))
	{
		d->error = xstrdup(error);
		return;
	}
	wlog("LOG", "delivery %s: the command failed on its %zu events: running it once per event",
		 d->id, n);
	begin_one_by_one(d);
	d->finished = false;
}

/*
 * The run of event d->current ended: note how, and move on.  After a
 * forced shutdown, or once the leader has gone, the rest stay unrun.
 */
static void
event_ended(Delivery *d, bool ok, const char *error)
{
	json_t	   *id = protocol_event_id(json_array_get(d->events, d->current));
	size_t		n = json_array_size(d->events);

	if (ok)
		json_array_append(d->done, id);
	else
		json_array_append_new(d->failed, json_pack("{s:O, s:s}", "eventId", id,
												   "error", error));
	d->current++;
	if (d->current < n && d->conn == NULL)
		wlog("LOG", "delivery %s: its connection has closed: %zu of its events left for the leader to send again",
			 d->id, n - d->current);
	d->finished = d->current == n || worker.forced || d->conn == NULL;
}

/* The one answer to d, once nothing is left to run. */
static void
answer(Delivery *d)
{
	size_t		n = json_array_size(d->events);
	size_t		n_failed = json_array_size(d->failed);

	if (d->error != NULL)
		reply_fail(d->conn, d->id, d->error);
	else if (!d->one_by_one)
		reply_ack(d->conn, d->id);
	else
	{
		if (n_failed > 0)
			wlog("LOG", "delivery %s: %zu of its %zu events failed",
				 d->id, n_failed, n);
		/* events left unrun are not named: they will come again */
		reply_ack_failed(d->conn, d->id,
						 d->current < n ? json_incref(d->done) : NULL,
						 json_incref(d->failed));
	}
}

static void
add_running(Delivery *d)
{
	d->next = running;
	running = d;
	n_running++;
}

/*
 * Start d's next run, in the slot d holds; once nothing is left to run,
 * answer d and free it.  A batch that can't start fails the delivery (the
 * events alone would not start either); an event that can't start is one
 * that failed.
 */
static void
run_next(Delivery *d)
{
	char		error[256];

	while (!d->finished)
	{
		if (spawn_run(d, error, sizeof(error)))
		{
			add_running(d);
			return;
		}
		wlog("WARNING", "delivery %s: %s", d->id, error);
		if (d->one_by_one)
			event_ended(d, false, error);
		else
		{
			d->error = xstrdup(error);
			d->finished = true;
		}
	}
	answer(d);
	delivery_free(d);
}

static void
enqueue(Delivery *d)
{
	Delivery  **p = &queued;

	while (*p != NULL)
		p = &(*p)->next;
	d->next = NULL;
	*p = d;
	n_queued++;
}

static void
start_queued(void)
{
	while (queued != NULL && n_running < worker.opt.capacity)
	{
		Delivery   *d = queued;

		queued = d->next;
		n_queued--;
		run_next(d);
	}
}

/*
 * An events message with a deliveryId and an events array.  The delivery
 * is answered at once (--print, empty batch, refusal) or when its command
 * exits.
 */
void
delivery_receive(Connection *c, const char *id, json_t *events)
{
	Delivery   *d;

	if (worker.shutting_down)
	{
		reply_fail(c, id, "worker is shutting down");
		return;
	}
	if (worker.opt.exec_command == NULL)
	{
		print_delivery(c, id, events);
		return;
	}
	if (json_array_size(events) == 0)
	{
		reply_ack(c, id);		/* nothing to run */
		return;
	}
	if (worker.opt.per_event && !all_named(events))
	{
		reply_fail(c, id, "--per-event answers each event by its id, and an event has none");
		return;
	}
	if (n_running >= worker.opt.capacity &&
		n_queued >= QUEUE_FACTOR * worker.opt.capacity)
	{
		wlog("WARNING", "delivery %s from %s refused: %d running, %d queued",
			 id, server_peer(c), n_running, n_queued);
		reply_fail(c, id, "worker is over capacity");
		return;
	}

	d = xmalloc(sizeof(Delivery));
	memset(d, 0, sizeof(Delivery));
	d->id = xstrdup(id);
	d->conn = c;
	d->events = json_incref(events);
	if (worker.opt.per_event)
		begin_one_by_one(d);
	if (n_running < worker.opt.capacity)
		run_next(d);
	else
		enqueue(d);
}

/* Keep the start of stderr, leading white space skipped. */
static void
keep_stderr(Delivery *d, const char *buf, size_t len)
{
	if (d->err_len == 0)
	{
		while (len > 0 && strchr(" \t\r\n", *buf) != NULL)
		{
			buf++;
			len--;
		}
	}
	if (len > sizeof(d->err) - d->err_len)
		len = sizeof(d->err) - d->err_len;
	memcpy(d->err + d->err_len, buf, len);
	d->err_len += len;
}

/*
 * Read what the child wrote to stderr so far; d is NULL once the delivery
 * is answered, and the rest is discarded.  Returns -1 at end of file, to
 * have lws close the pipe.
 */
static int
read_stderr(Delivery *d, int fd)
{
	char		buf[4096];

	for (int i = 0; i < STDERR_READS; i++)
	{
		ssize_t		n = read(fd, buf, sizeof(buf));

		if (n > 0)
		{
			if (d != NULL)
				keep_stderr(d, buf, (size_t) n);
			continue;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -1;
	}
	return 0;
}

/* Drop a UTF-8 sequence that the cut at PROTOCOL_MAX_ERROR left incomplete. */
static size_t
utf8_clip(const char *s, size_t len)
{
	size_t		start = len;
	unsigned char lead;
	size_t		need;

	while (start > 0 && len - start < 4 &&
		   ((unsigned char) s[start - 1] & 0xC0) == 0x80)
		start--;
	if (start == 0)
		return len;
	lead = (unsigned char) s[start - 1];
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	return (start - 1 + need > len) ? start - 1 : len;
}

/* The error of a failed command: its stderr, else how it ended. */
static char *
failure_text(Delivery *d, int status)
{
	size_t		len = d->err_len;
	char	   *text;
	json_t	   *check;

	while (len > 0 && strchr(" \t\r\n", d->err[len - 1]) != NULL)
		len--;
	if (d->err_len == sizeof(d->err))
		len = utf8_clip(d->err, len);
	if (len == 0)
	{
		text = xmalloc(64);
		if (WIFSIGNALED(status))
			snprintf(text, 64, "command killed by signal %d", WTERMSIG(status));
		else
			snprintf(text, 64, "command exited with status %d",
					 WEXITSTATUS(status));
		return text;
	}
	text = xmalloc(len + 1);
	memcpy(text, d->err, len);
	text[len] = '\0';
	/* the leader must get valid UTF-8: mask what isn't */
	check = json_stringn(text, len);
	if (check == NULL)
	{
		for (size_t i = 0; i < len; i++)
			if ((unsigned char) text[i] >= 0x80)
				text[i] = '?';
	}
	json_decref(check);
	return text;
}

/* A command of d has exited: run the next one, or answer the leader. */
static void
finish(Delivery *d, int status)
{
	bool		ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	char	   *error = NULL;

	if (d->stderr_wsi != NULL)
	{
		/* all it wrote before exiting is in the pipe now */
		read_stderr(d, d->stderr_fd);
		detach_stderr(d);
	}
	if (!ok)
		error = failure_text(d, status);
	if (d->one_by_one)
		event_ended(d, ok, error);
	else
		batch_ended(d, ok, error);
	free(error);
	d->pid = 0;
	run_next(d);
}

static Delivery *
take_running(pid_t pid)
{
	for (Delivery **p = &running; *p != NULL; p = &(*p)->next)
	{
		Delivery   *d = *p;

		if (d->pid == pid)
		{
			*p = d->next;
			n_running--;
			return d;
		}
	}
	return NULL;
}

/*
 * After SIGCHLD: move on every delivery whose command has exited.  A
 * delivery goes on to its next run before any queued one starts: it keeps
 * its slot.
 */
void
delivery_reap(void)
{
	pid_t		pid;
	int			status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
	{
		Delivery   *d = take_running(pid);

		if (d != NULL)
			finish(d, status);
	}
	start_queued();
}

/*
 * The leader behind c has gone.  Running commands go on (stopping one
 * halfway is worse than a duplicate), but nobody awaits their answer, and
 * a delivery running its events one by one starts no more of them; queued
 * deliveries are dropped.  The leader will send them all again.
 */
void
delivery_connection_gone(Connection *c)
{
	Delivery  **p = &queued;

	for (Delivery *d = running; d != NULL; d = d->next)
	{
		if (d->conn == c)
			d->conn = NULL;
	}
	while (*p != NULL)
	{
		Delivery   *d = *p;

		if (d->conn != c)
		{
			p = &d->next;
			continue;
		}
		*p = d->next;
		n_queued--;
		wlog("LOG", "delivery %s dropped before it started: its connection closed",
			 d->id);
		delivery_free(d);
	}
}

/* Forced shutdown: kill every running command, fail what waits. */
void
delivery_kill_all(void)
{
	for (Delivery *d = running; d != NULL; d = d->next)
		kill(-d->pid, SIGKILL);
	while (queued != NULL)
	{
		Delivery   *d = queued;

		queued = d->next;
		n_queued--;
		reply_fail(d->conn, d->id, "worker is shutting down");
		delivery_free(d);
	}
}

bool
delivery_none_in_flight(void)
{
	return n_running == 0 && n_queued == 0;
}

/* Commands running now. */
int
delivery_running(void)
{
	return n_running;
}

/* Deliveries waiting for a free slot. */
int
delivery_queued(void)
{
	return n_queued;
}

/* A child's stderr has something to read; delivery is NULL once answered. */
int
delivery_stderr_readable(void *delivery, int fd)
{
	return read_stderr((Delivery *) delivery, fd);
}

/* lws has closed a child's stderr: nothing left to read or to unwatch. */
void
delivery_stderr_closed(void *delivery)
{
	Delivery   *d = (Delivery *) delivery;

	d->stderr_wsi = NULL;
}
