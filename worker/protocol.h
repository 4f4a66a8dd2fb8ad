/*-------------------------------------------------------------------------
 *
 * protocol.h
 *	  The wire format, worker side: decode what the leader sends, encode
 *	  what the worker answers.
 *
 * Contract.  Pure functions over jansson: no connection, no log, no
 * global state, so that a fuzzer can link this file alone.  protocol_parse
 * turns one complete message into a LeaderMessage (or says why it is not
 * one); the protocol_encode_* functions return an answer as compact JSON
 * text, malloc'd, for the caller to send and free.  Acting on a message,
 * and sending, is the business of the modules above (dispatch.c, reply.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_PROTOCOL_H
#define CLUSTER_WORKER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* PROTOCOL_VERSION, PROTOCOL_MAX_MESSAGE, PROTOCOL_MAX_ERROR: the leader's */
#include "../src/wire.h"

/* The types of leader messages; any other is logged and ignored. */
typedef enum LeaderType
{
	LEADER_UNTYPED,				/* no "type" string */
	LEADER_EVENTS,
	LEADER_PING,
	LEADER_PONG,
	LEADER_HELLO,
	LEADER_UNKNOWN
} LeaderType;

/*
 * One leader message as protocol_parse decodes it.  The strings and json_t
 * pointers are borrowed from json (or, for the hello fields, from the
 * buffers below: don't copy a LeaderMessage); protocol_parse_free releases
 * it.  Fields of another type than the message's are NULL.
 */
typedef struct LeaderMessage
{
	json_t	   *json;			/* the message, a JSON object */
	LeaderType	type;
	const char *type_name;		/* NULL: LEADER_UNTYPED */
	bool		lossy;			/* integers beyond 64 bits decoded as reals */
	/* events */
	const char *delivery_id;	/* NULL: none, not a string, or empty */
	json_t	   *events;			/* NULL: none, or not an array */
	/* hello, as text for the log */
	const char *handler;		/* NULL: none, or not a string */
	const char *leader;
	const char *fence;
	const char *version;
	bool		other_protocol; /* an integer protocol, not ours */
	char		leader_buf[64];
	char		fence_buf[32];
	char		version_buf[32];
} LeaderMessage;

extern bool protocol_parse(const char *text, size_t len, LeaderMessage *out,
						   char *why, size_t whylen);
extern void protocol_parse_free(LeaderMessage *m);
extern json_t *protocol_event_id(json_t *event);

extern char *protocol_encode_pong(void);
extern char *protocol_encode_ack(const char *delivery_id);
extern char *protocol_encode_fail(const char *delivery_id, const char *error);
extern char *protocol_encode_ack_failed(const char *delivery_id, json_t *done,
										json_t *failed);

#endif							/* CLUSTER_WORKER_PROTOCOL_H */
