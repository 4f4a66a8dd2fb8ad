/*-------------------------------------------------------------------------
 *
 * patch.c
 *	  Apply a state patch to a handler's state, in one pass.
 *
 * The tree is PostgreSQL's own in-memory JsonbValue, as pushJsonbValue
 * builds it; turning it back into jsonb pushes it through pushJsonbValue
 * again, which sorts and checks each object's keys.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "patch.h"

/* A container expanded into a tree: every nested container expanded too. */
static JsonbValue *
expand(JsonbContainer *container)
{
	JsonbIterator *it = JsonbIteratorInit(container);
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *result = NULL;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		result = pushJsonbValue(&state, tok,
								tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM ? &v : NULL);
	return result;
}

/* A value as a tree node: containers expanded, scalars copied. */
static JsonbValue *
node(JsonbValue *v)
{
	JsonbValue *copy;

	if (v->type == jbvBinary)
	{
		copy = expand(v->val.binary.data);
		if (copy->type == jbvArray && copy->val.array.rawScalar)
			return &copy->val.array.elems[0];
		return copy;
	}
	copy = palloc(sizeof(JsonbValue));
	*copy = *v;
	return copy;
}

static JsonbValue *
empty_object(void)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	v->type = jbvObject;
	return v;
}

static bool
is_container(JsonbValue *v)
{
	return v->type == jbvObject || v->type == jbvArray;
}

/* The text of a path element (a string or a number). */
static void
key_text(JsonbValue *key, char **text, int *len)
{
	if (key->type == jbvString)
	{
		*text = key->val.string.val;
		*len = key->val.string.len;
	}
	else
	{
		*text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(key->val.numeric)));
		*len = strlen(*text);
	}
}

/*
 * An array index from a path element, read as jsonb_set reads one
 * (negative: from the end); "position" counts from 1 at the root.
 */
static int
array_index(JsonbValue *key, int position, int nelems)
{
	char	   *text;
	int			len;
	char	   *str;
	char	   *end;
	long		index;

	key_text(key, &text, &len);
	str = pnstrdup(text, len);
	errno = 0;
	index = strtol(str, &end, 10);
	if (end == str || *end != '\0' || errno != 0 || index < INT_MIN || index > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("path element at position %d is not an integer: \"%s\"", position, str)));
	return (int) (index < 0 ? index + nelems : index);
}

/* The value under a key in an object, or NULL; *at is its pair's index. */
static JsonbValue *
object_get(JsonbValue *obj, JsonbValue *key, int *at)
{
	char	   *text;
	int			len;

	key_text(key, &text, &len);
	for (int i = 0; i < obj->val.object.nPairs; i++)
	{
		JsonbPair  *pair = &obj->val.object.pairs[i];

		if (pair->key.val.string.len == len &&
			memcmp(pair->key.val.string.val, text, len) == 0)
		{
			*at = i;
			return &pair->value;
		}
	}
	return NULL;
}

/* Add key: value to an object that doesn't have the key; the new slot. */
static JsonbValue *
object_add(JsonbValue *obj, JsonbValue *key, JsonbValue *value)
{
	int			n = obj->val.object.nPairs;
	JsonbPair  *pair;

	obj->val.object.pairs = n > 0
		? repalloc(obj->val.object.pairs, sizeof(JsonbPair) * (n + 1))
		: palloc(sizeof(JsonbPair));
	pair = &obj->val.object.pairs[n];
	pair->key.type = jbvString;
	key_text(key, &pair->key.val.string.val, &pair->key.val.string.len);
	pair->value = *value;
	pair->order = n;
	obj->val.object.nPairs++;
	return &pair->value;
}

/* Insert a value at index 0 or at the end of an array; the new slot. */
static JsonbValue *
array_add(JsonbValue *arr, bool at_start, JsonbValue *value)
{
	int			n = arr->val.array.nElems;
	JsonbValue *elems = n > 0
		? repalloc(arr->val.array.elems, sizeof(JsonbValue) * (n + 1))
		: palloc(sizeof(JsonbValue));

	if (at_start)
		memmove(&elems[1], &elems[0], sizeof(JsonbValue) * n);
	elems[at_start ? 0 : n] = *value;
	arr->val.array.elems = elems;
	arr->val.array.nElems++;
	return &elems[at_start ? 0 : n];
}

/*
 * set: walk the path from "cur" (the user document), making missing or
 * scalar parents objects, and put the value at its end.
 */
static void
apply_set(JsonbValue *cur, JsonbValue *path, int n, JsonbValue *value)
{
	for (int i = 0; i < n; i++)
	{
		bool		last = (i == n - 1);
		JsonbValue *next;

		if (cur->type == jbvObject)
		{
			int			at;

			next = object_get(cur, &path[i], &at);
			if (next == NULL)
				next = object_add(cur, &path[i], last ? value : empty_object());
			else if (last)
				*next = *value;
		}
		else
		{
			int			nelems = cur->val.array.nElems;
			int			idx = array_index(&path[i], i + 2, nelems);

			if (idx >= 0 && idx < nelems)
			{
				next = &cur->val.array.elems[idx];
				if (last)
					*next = *value;
			}
			else
				next = array_add(cur, idx < 0, last ? value : empty_object());
		}
		if (!last && !is_container(next))
			*next = *empty_object();
		cur = next;
	}
}

/* remove: what the path names, if it is there. */
static void
apply_remove(JsonbValue *cur, JsonbValue *path, int n)
{
	for (int i = 0; i < n && is_container(cur); i++)
	{
		bool		last = (i == n - 1);

		if (cur->type == jbvObject)
		{
			int			at;
			JsonbValue *next = object_get(cur, &path[i], &at);

			if (next == NULL)
				return;
			if (last)
			{
				JsonbPair  *pairs = cur->val.object.pairs;

				memmove(&pairs[at], &pairs[at + 1],
						sizeof(JsonbPair) * (cur->val.object.nPairs - at - 1));
				cur->val.object.nPairs--;
				return;
			}
			cur = next;
		}
		else
		{
			int			nelems = cur->val.array.nElems;
			int			idx = array_index(&path[i], i + 2, nelems);

			if (idx < 0 || idx >= nelems)
				return;
			if (last)
			{
				JsonbValue *elems = cur->val.array.elems;

				memmove(&elems[idx], &elems[idx + 1], sizeof(JsonbValue) * (nelems - idx - 1));
				cur->val.array.nElems--;
				return;
			}
			cur = &cur->val.array.elems[idx];
		}
	}
}

/* The tree back into a parse state; pushJsonbValue sorts each object. */
static JsonbValue *
push_tree(JsonbParseState **state, JsonbValue *v, JsonbIteratorToken as)
{
	JsonbValue *result;

	check_stack_depth();
	if (v->type == jbvObject)
	{
		pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
		for (int i = 0; i < v->val.object.nPairs; i++)
		{
			pushJsonbValue(state, WJB_KEY, &v->val.object.pairs[i].key);
			push_tree(state, &v->val.object.pairs[i].value, WJB_VALUE);
		}
		result = pushJsonbValue(state, WJB_END_OBJECT, NULL);
	}
	else if (v->type == jbvArray)
	{
		pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
		for (int i = 0; i < v->val.array.nElems; i++)
			push_tree(state, &v->val.array.elems[i], WJB_ELEM);
		result = pushJsonbValue(state, WJB_END_ARRAY, NULL);
	}
	else
		result = pushJsonbValue(state, as, v);
	return result;
}

/* The elements of a jsonb array (the path of an operation), expanded. */
static JsonbValue *
elements(JsonbValue *array, int *n)
{
	*n = array->val.array.nElems;
	return array->val.array.elems;
}

Jsonb *
patch_apply(Jsonb *state, Jsonb *patch)
{
	JsonbValue *doc = node(&(JsonbValue)
						   {.type = jbvBinary,.val.binary = {VARSIZE(state) - VARHDRSZ, &state->root}});
	JsonbValue *ops = node(&(JsonbValue)
						   {.type = jbvBinary,.val.binary = {VARSIZE(patch) - VARHDRSZ, &patch->root}});
	JsonbParseState *ps = NULL;
	int			at;

	if (ops->type != jbvArray)
		return state;
	if (!is_container(doc))
		doc = empty_object();

	for (int i = 0; i < ops->val.array.nElems; i++)
	{
		JsonbValue *op = &ops->val.array.elems[i];
		JsonbValue	key;
		JsonbValue *kind,
				   *path,
				   *value;
		int			n;
		JsonbValue *keys;

		CHECK_FOR_INTERRUPTS();
		key.type = jbvString;
		key.val.string.val = "op";
		key.val.string.len = 2;
		kind = object_get(op, &key, &at);
		key.val.string.val = "path";
		key.val.string.len = 4;
		path = object_get(op, &key, &at);
		key.val.string.val = "value";
		key.val.string.len = 5;
		value = object_get(op, &key, &at);
		if (kind == NULL || path == NULL || path->type != jbvArray)
			continue;			/* cluster._check_patch refused these */
		keys = elements(path, &n);
		if (kind->val.string.len == 6 && memcmp(kind->val.string.val, "remove", 6) == 0)
			apply_remove(doc, keys, n);
		else if (value != NULL)
			apply_set(doc, keys, n, value);
	}
	return JsonbValueToJsonb(push_tree(&ps, doc, WJB_VALUE));
}

PG_FUNCTION_INFO_V1(cluster_apply_patch);

/* cluster._apply_patch(state jsonb, patch jsonb) returns jsonb */
Datum
cluster_apply_patch(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_JSONB_P(patch_apply(PG_GETARG_JSONB_P(0), PG_GETARG_JSONB_P(1)));
}
