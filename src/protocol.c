/*-------------------------------------------------------------------------
 *
 * protocol.c
 *	  Decode a worker's message with PostgreSQL's JSON parser.
 *
 * The semantic callbacks look only at the top-level fields they know;
 * anything else is skipped, as a Flowcore worker's extra fields must be.
 * A field of the wrong type makes the whole message untrusted.
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "common/jsonapi.h"
#include "common/string.h"
#include "mb/pg_wchar.h"

#include "protocol.h"

typedef enum Field
{
	FIELD_OTHER,
	FIELD_TYPE,
	FIELD_DELIVERY_ID,
	FIELD_EVENT_IDS,
	FIELD_PATCH,
	FIELD_ERROR,
	FIELD_FENCE,
	FIELD_FAILED
} Field;

typedef struct DecodeState
{
	JsonLexContext *lex;
	WorkerMessage *msg;
	Field		field;			/* top-level field whose value is being read */
	bool		top_is_object;
	char	   *patch_start;
	int			patch_ops;
	bool		in_path;		/* in the "path" of a patch operation */
	int			path_keys;
	int			ids_allocated;
	int			failed_allocated;
	Field		failed_field;	/* FIELD_OTHER, or eventId / error of an entry */
	bool		failed_has_id;
	char	   *why;			/* first problem found */
} DecodeState;

static void
fail(DecodeState *st, const char *why)
{
	if (st->why == NULL)
		st->why = pstrdup(why);
}

static Field
field_of(const char *name)
{
	if (strcmp(name, "type") == 0)
		return FIELD_TYPE;
	if (strcmp(name, "deliveryId") == 0)
		return FIELD_DELIVERY_ID;
	if (strcmp(name, "eventIds") == 0)
		return FIELD_EVENT_IDS;
	if (strcmp(name, "patch") == 0)
		return FIELD_PATCH;
	if (strcmp(name, "error") == 0)
		return FIELD_ERROR;
	if (strcmp(name, "fence") == 0)
		return FIELD_FENCE;
	if (strcmp(name, "failed") == 0)
		return FIELD_FAILED;
	return FIELD_OTHER;
}

static void
object_start(void *state)
{
	DecodeState *st = state;

	if (st->lex->lex_level == 0)
		st->top_is_object = true;
	else if (st->lex->lex_level == 1 && st->field != FIELD_OTHER)
		fail(st, "a field of the message has an object where a scalar or an array belongs");
}

static void
object_field_start(void *state, char *fname, bool isnull)
{
	DecodeState *st = state;

	/* fname is freed in object_field_end: the parser passes it to both */
	if (st->lex->lex_level == 1)
		st->field = field_of(fname);
	else if (st->lex->lex_level == 3 && st->field == FIELD_PATCH)
		st->in_path = strcmp(fname, "path") == 0;
	else if (st->lex->lex_level == 3 && st->field == FIELD_FAILED)
		st->failed_field = strcmp(fname, "eventId") == 0 ? FIELD_EVENT_IDS :
			strcmp(fname, "error") == 0 ? FIELD_ERROR : FIELD_OTHER;
}

/* A new entry of "failed": [{"eventId": ..., "error": ...}, ...] */
static void
failed_entry(DecodeState *st)
{
	WorkerMessage *msg = st->msg;

	if (msg->n_failed == st->failed_allocated)
	{
		st->failed_allocated = Max(16, st->failed_allocated * 2);
		msg->failed_ids = msg->failed_ids
			? repalloc(msg->failed_ids, sizeof(int64) * st->failed_allocated)
			: palloc(sizeof(int64) * st->failed_allocated);
		msg->failed_errors = msg->failed_errors
			? repalloc(msg->failed_errors, sizeof(char *) * st->failed_allocated)
			: palloc(sizeof(char *) * st->failed_allocated);
	}
	msg->failed_ids[msg->n_failed] = 0;
	msg->failed_errors[msg->n_failed] = NULL;
	msg->n_failed++;
	st->failed_has_id = false;
	st->failed_field = FIELD_OTHER;
}

static void
object_end(void *state)
{
	DecodeState *st = state;

	if (st->lex->lex_level == 2 && st->field == FIELD_FAILED && !st->failed_has_id)
		fail(st, "each entry of failed needs an eventId");
}

/* Count a patch's operations and the keys of each path. */
static void
array_element_start(void *state, bool isnull)
{
	DecodeState *st = state;

	if (st->field == FIELD_FAILED && st->lex->lex_level == 2)
		failed_entry(st);
	if (st->field != FIELD_PATCH)
		return;
	if (st->lex->lex_level == 2 && ++st->patch_ops > PROTOCOL_MAX_PATCH_OPS)
		fail(st, psprintf("the patch has more than %d operations", PROTOCOL_MAX_PATCH_OPS));
	else if (st->lex->lex_level == 4 && st->in_path &&
			 ++st->path_keys > PROTOCOL_MAX_PATH_DEPTH)
		fail(st, psprintf("a patch path has more than %d keys", PROTOCOL_MAX_PATH_DEPTH));
}

static void
object_field_end(void *state, char *fname, bool isnull)
{
	DecodeState *st = state;

	if (st->lex->lex_level == 1)
		st->field = FIELD_OTHER;
	pfree(fname);
}

static void
array_start(void *state)
{
	DecodeState *st = state;

	if (st->lex->lex_level == 3 && st->field == FIELD_PATCH && st->in_path)
		st->path_keys = 0;
	if (st->lex->lex_level != 1)
		return;
	if (st->field == FIELD_PATCH)
		st->patch_start = st->lex->token_start;
	else if (st->field == FIELD_EVENT_IDS)
		st->msg->has_event_ids = true;
	else if (st->field != FIELD_OTHER && st->field != FIELD_FAILED)
		fail(st, "a field of the message has an array where a scalar belongs");
}

static void
array_end(void *state)
{
	DecodeState *st = state;

	if (st->lex->lex_level == 1 && st->field == FIELD_PATCH && st->patch_start)
		st->msg->patch = pnstrdup(st->patch_start,
								  st->lex->prev_token_terminator - st->patch_start);
}

static bool
parse_int64(const char *token, int64 *result)
{
	char	   *end;

	errno = 0;
	*result = strtoi64(token, &end, 10);
	return errno == 0 && end != token && *end == '\0';
}

static void
event_id(DecodeState *st, char *token, JsonTokenType type)
{
	WorkerMessage *msg = st->msg;

	if ((type != JSON_TOKEN_STRING && type != JSON_TOKEN_NUMBER) ||
		st->lex->lex_level != 2)
	{
		fail(st, "eventIds must be an array of event ids");
		return;
	}
	if (msg->n_event_ids == st->ids_allocated)
	{
		st->ids_allocated = Max(16, st->ids_allocated * 2);
		msg->event_ids = msg->event_ids
			? repalloc(msg->event_ids, sizeof(int64) * st->ids_allocated)
			: palloc(sizeof(int64) * st->ids_allocated);
	}
	if (!parse_int64(token, &msg->event_ids[msg->n_event_ids++]))
		fail(st, "an event id is not a 64-bit integer");
}

static char *
string_field(DecodeState *st, char *token, JsonTokenType type, const char *what)
{
	if (type != JSON_TOKEN_STRING)
	{
		fail(st, what);
		return NULL;
	}
	return pstrdup(token);
}

/* An error text of at most PROTOCOL_MAX_ERROR bytes, cut between characters. */
static char *
truncated(const char *text)
{
	size_t		len = strlen(text);

	if (len <= PROTOCOL_MAX_ERROR)
		return pstrdup(text);
	len = PROTOCOL_MAX_ERROR;
	while (len > 0 && ((unsigned char) text[len] & 0xC0) == 0x80)
		len--;					/* not inside a UTF-8 sequence */
	return psprintf("%.*s... (cut at %d bytes)", (int) len, text, PROTOCOL_MAX_ERROR);
}

/*
 * Is the message nested deeper than PROTOCOL_MAX_DEPTH?  Checked before
 * parsing, because the parser recurses once per level.  Brackets inside
 * strings don't count.
 */
static bool
too_deep(const char *data, int len)
{
	int			depth = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		ch = data[i];

		if (in_string)
		{
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
		}
		else if (ch == '"')
			in_string = true;
		else if (ch == '[' || ch == '{')
		{
			if (++depth > PROTOCOL_MAX_DEPTH)
				return true;
		}
		else if (ch == ']' || ch == '}')
			depth--;
	}
	return false;
}

static void
failed_scalar(DecodeState *st, char *token, JsonTokenType type)
{
	WorkerMessage *msg = st->msg;
	int			i = msg->n_failed - 1;

	if (st->lex->lex_level == 1 && type == JSON_TOKEN_NULL)
		return;					/* null: none failed */
	if (st->lex->lex_level != 3 || i < 0)
		fail(st, "failed must be an array of {\"eventId\": ..., \"error\": ...}");
	else if (st->failed_field == FIELD_EVENT_IDS)
	{
		st->failed_has_id = true;
		if ((type != JSON_TOKEN_STRING && type != JSON_TOKEN_NUMBER) ||
			!parse_int64(token, &msg->failed_ids[i]))
			fail(st, "an eventId in failed is not a 64-bit integer");
	}
	else if (st->failed_field == FIELD_ERROR && type != JSON_TOKEN_NULL &&
			 msg->failed_errors[i] == NULL)
		msg->failed_errors[i] = truncated(token);
}

static void
scalar(void *state, char *token, JsonTokenType type)
{
	DecodeState *st = state;
	WorkerMessage *msg = st->msg;

	if (st->lex->lex_level == 0)
		return;					/* top level is not an object: said later */
	switch (st->field)
	{
		case FIELD_TYPE:
			msg->type_name = string_field(st, token, type, "type must be a string");
			break;
		case FIELD_DELIVERY_ID:
			msg->delivery_id = string_field(st, token, type, "deliveryId must be a string");
			if (msg->delivery_id && strlen(msg->delivery_id) > PROTOCOL_MAX_DELIVERY_ID)
				fail(st, "deliveryId is too long");
			break;
		case FIELD_EVENT_IDS:
			if (st->lex->lex_level == 1 && type == JSON_TOKEN_NULL)
				break;			/* null: the whole delivery */
			event_id(st, token, type);
			break;
		case FIELD_PATCH:
			if (st->lex->lex_level == 1 && type != JSON_TOKEN_NULL)
				fail(st, "patch must be an array of operations");
			break;
		case FIELD_ERROR:
			if (type != JSON_TOKEN_NULL && st->lex->lex_level == 1)
				msg->error = truncated(token);
			break;
		case FIELD_FAILED:
			failed_scalar(st, token, type);
			break;
		case FIELD_FENCE:
			msg->has_fence = true;
			if ((type != JSON_TOKEN_NUMBER && type != JSON_TOKEN_STRING) ||
				!parse_int64(token, &msg->fence))
				fail(st, "fence must be an integer");
			break;
		case FIELD_OTHER:
			break;
	}
	pfree(token);
}

static void
classify(DecodeState *st)
{
	WorkerMessage *msg = st->msg;
	const char *t = msg->type_name;

	if (t == NULL)
		fail(st, "the message has no type");
	else if (strcmp(t, "ack") == 0)
		msg->type = WORKER_ACK;
	else if (strcmp(t, "fail") == 0)
		msg->type = WORKER_FAIL;
	else if (strcmp(t, "ping") == 0)
		msg->type = WORKER_PING;
	else if (strcmp(t, "pong") == 0)
		msg->type = WORKER_PONG;
	else
		msg->type = WORKER_UNKNOWN;
	if ((msg->type == WORKER_ACK || msg->type == WORKER_FAIL) &&
		msg->delivery_id == NULL)
		fail(st, "an ack or fail needs a deliveryId");
	if (msg->type != WORKER_ACK && msg->patch != NULL)
		fail(st, "only an ack may carry a patch");
	if (msg->type != WORKER_ACK && msg->n_failed > 0)
		fail(st, "only an ack may carry failed events");
}

bool
protocol_decode(const char *data, int len, WorkerMessage *msg, char **why)
{
	DecodeState st = {0};
	JsonSemAction sem = {0};
	JsonParseErrorType rc;
	char	   *copy = pnstrdup(data, len);

	memset(msg, 0, sizeof(WorkerMessage));
	*why = NULL;
	if ((int) strlen(copy) != len)
	{
		pfree(copy);
		*why = pstrdup("the message contains a zero byte");
		return false;
	}
	if (too_deep(copy, len))
	{
		pfree(copy);
		*why = psprintf("the message is nested more than %d levels deep", PROTOCOL_MAX_DEPTH);
		return false;
	}
	st.lex = makeJsonLexContextCstringLen(copy, len, PG_UTF8, true);
	st.msg = msg;
	sem.semstate = &st;
	sem.object_start = object_start;
	sem.object_field_start = object_field_start;
	sem.object_field_end = object_field_end;
	sem.object_end = object_end;
	sem.array_start = array_start;
	sem.array_end = array_end;
	sem.array_element_start = array_element_start;
	sem.scalar = scalar;

	rc = pg_parse_json(st.lex, &sem);
	if (rc != JSON_SUCCESS)
#ifdef FRONTEND
		st.why = psprintf("invalid JSON (parse error %d)", (int) rc);	/* no json_errdetail */
#else
		st.why = psprintf("invalid JSON: %s", json_errdetail(rc, st.lex));
#endif
	else if (!st.top_is_object)
		fail(&st, "the message is not a JSON object");
	else
		classify(&st);

	if (st.lex->strval)
	{
		pfree(st.lex->strval->data);
		pfree(st.lex->strval);
	}
	pfree(st.lex);
	pfree(copy);
	if (st.why)
	{
		protocol_free(msg);
		*why = st.why;
		return false;
	}
	return true;
}

void
protocol_free(WorkerMessage *msg)
{
	if (msg->type_name)
		pfree(msg->type_name);
	if (msg->delivery_id)
		pfree(msg->delivery_id);
	if (msg->event_ids)
		pfree(msg->event_ids);
	if (msg->patch)
		pfree(msg->patch);
	for (int i = 0; i < msg->n_failed; i++)
		if (msg->failed_errors[i])
			pfree(msg->failed_errors[i]);
	if (msg->failed_ids)
	{
		pfree(msg->failed_ids);
		pfree(msg->failed_errors);
	}
	if (msg->error)
		pfree(msg->error);
	memset(msg, 0, sizeof(WorkerMessage));
}

#ifndef FRONTEND

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "xact.h"

/*
 * An event in its wire form, as JSON text: the payload and headers as
 * stored, printed once.  The id is a string: a JavaScript number can't
 * hold every bigint.
 */
static void
event_text(StringInfo buf, const char *stream, const Event *ev, int attempt)
{
	appendStringInfo(buf, "{\"id\": \"" INT64_FORMAT "\", \"key\": ", ev->id);
	if (ev->key)
		escape_json(buf, ev->key);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ", \"stream\": ");
	escape_json(buf, stream);
	appendStringInfo(buf, ", \"attempt\": %d, \"headers\": ", attempt);
	if (ev->headers)
		(void) JsonbToCString(buf, &ev->headers->root, VARSIZE(ev->headers));
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ", \"payload\": ");
	(void) JsonbToCString(buf, &ev->payload->root, VARSIZE(ev->payload));
	appendStringInfoString(buf, ", \"createdAt\": ");
	if (ev->has_created_at)
	{
		char		ts[MAXDATELEN + 1];

		JsonEncodeDateTime(ts, TimestampTzGetDatum(ev->created_at), TIMESTAMPTZOID, NULL);
		appendStringInfo(buf, "\"%s\"", ts);
	}
	else
		appendStringInfoString(buf, "null");
	appendStringInfoChar(buf, '}');
}

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v = {.type = jbvString,.val.string = {strlen(key), unconstify(char *, key)}};

	pushJsonbValue(state, WJB_KEY, &v);
}

static void
push_string(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v = {.type = jbvNull};

	push_key(state, key);
	if (value)
	{
		v.type = jbvString;
		v.val.string.val = unconstify(char *, value);
		v.val.string.len = strlen(value);
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_number(JsonbParseState **state, const char *key, int64 value)
{
	JsonbValue	v = {.type = jbvNumeric,.val.numeric = int64_to_numeric(value)};

	push_key(state, key);
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_jsonb(JsonbParseState **state, const char *key, Jsonb *value)
{
	JsonbValue	v = {.type = jbvNull};

	push_key(state, key);
	if (value)
	{
		v.type = jbvBinary;
		v.val.binary.data = &value->root;
		v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* An event in its wire form, as a jsonb object pushed onto "state". */
static JsonbValue *
push_event(JsonbParseState **state, const char *stream, const Event *ev, int attempt)
{
	/* pushed values are referenced, not copied, until the jsonb is built */
	char	   *ts = NULL;

	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	push_string(state, "id", psprintf(INT64_FORMAT, ev->id));
	push_string(state, "stream", stream);
	push_string(state, "key", ev->key);
	push_jsonb(state, "payload", ev->payload);
	push_jsonb(state, "headers", ev->headers);
	if (ev->has_created_at)
		ts = JsonEncodeDateTime(NULL, TimestampTzGetDatum(ev->created_at), TIMESTAMPTZOID, NULL);
	push_string(state, "createdAt", ts);
	push_number(state, "attempt", attempt);
	return pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/*
 * A batch as a SQL function taking jsonb gets it: one jsonb array of the
 * events in their wire form, each with its attempt number.
 */
Jsonb *
protocol_event_batch(const char *stream, Event **events, int *attempts, int n)
{
	JsonbParseState *state = NULL;
	JsonbValue *array;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < n; i++)
		push_event(&state, stream, events[i], attempts[i]);
	array = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(array);
}

/* One event in its wire form, as a dead letter keeps it. */
Jsonb *
protocol_event_jsonb(const char *stream, const Event *ev, int attempt)
{
	JsonbParseState *state = NULL;

	return JsonbValueToJsonb(push_event(&state, stream, ev, attempt));
}

typedef struct ParseTime
{
	char	   *text;
	TimestampTz value;
} ParseTime;

static void
parse_time(void *arg)
{
	ParseTime  *parse = arg;

	parse->value = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(parse->text),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
}

static JsonbValue *
field(Jsonb *wire, const char *key)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(wire))
		return NULL;
	v = getKeyJsonValueFromContainer(&wire->root, key, strlen(key), NULL);
	return (v && v->type != jbvNull) ? v : NULL;
}

/*
 * A dead letter's event (the wire form it was delivered in) back into an
 * event.  Dead letters can be restored from a dump: a field that is
 * missing or of another type reads as absent ("id" as "event_id", the
 * payload as JSON null).
 */
void
protocol_event_from_jsonb(Jsonb *wire, int64 event_id, Event *ev)
{
	JsonbValue *v;
	JsonbValue	null = {.type = jbvNull};

	memset(ev, 0, sizeof(Event));
	ev->id = event_id;
	if ((v = field(wire, "key")) && v->type == jbvString)
		ev->key = pnstrdup(v->val.string.val, v->val.string.len);
	v = field(wire, "payload");
	ev->payload = JsonbValueToJsonb(v ? v : &null);
	if ((v = field(wire, "headers")))
		ev->headers = JsonbValueToJsonb(v);
	if ((v = field(wire, "createdAt")) && v->type == jbvString)
	{
		ParseTime	parse = {pnstrdup(v->val.string.val, v->val.string.len), 0};
		char	   *error;

		ev->has_created_at = subxact_run(parse_time, &parse, &error);
		ev->created_at = parse.value;
	}
}

void
protocol_encode_hello(StringInfo buf, const char *leader, int64 fence,
					  const char *handler)
{
	appendStringInfo(buf, "{\"type\": \"hello\", \"protocol\": %d, \"leader\": ",
					 PROTOCOL_VERSION);
	escape_json(buf, leader);
	appendStringInfo(buf, ", \"fence\": " INT64_FORMAT ", \"handler\": ", fence);
	escape_json(buf, handler);
	appendStringInfoChar(buf, '}');
}

/* A delivery: the events in their wire form, each with its attempt number. */
void
protocol_encode_events(StringInfo buf, const char *delivery_id, int64 fence,
					   const char *stream, Event **events, int *attempts, int n)
{
	appendStringInfoString(buf, "{\"type\": \"events\", \"deliveryId\": ");
	escape_json(buf, delivery_id);
	appendStringInfo(buf, ", \"fence\": " INT64_FORMAT ", \"events\": [", fence);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		event_text(buf, stream, events[i], attempts[i]);
	}
	appendStringInfoString(buf, "]}");
}

void
protocol_encode_ping(StringInfo buf)
{
	appendStringInfoString(buf, "{\"type\": \"ping\"}");
}

void
protocol_encode_pong(StringInfo buf)
{
	appendStringInfoString(buf, "{\"type\": \"pong\"}");
}

#endif							/* !FRONTEND */
