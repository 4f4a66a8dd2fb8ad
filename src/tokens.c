/*-------------------------------------------------------------------------
 *
 * tokens.c
 *	  The tokens a listening leader accepts from workers that dial in.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "tokens.h"
#include "xact.h"

/* the columns of tokens_load's query */
#define Anum_tok_id				1
#define Anum_tok_handler_id		2
#define Anum_tok_digest			3
#define Anum_tok_capacity		4
#define Anum_tok_expires_at		5

static MemoryContext tokens_cxt = NULL;
static ResourceOwner tokens_owner = NULL;
static WorkerToken *tokens = NULL;
static int	n_tokens = 0;

/*
 * The valid tokens of the coordinator's running handlers whose issuers may
 * still manage their workers (as for registrations).
 */
void
tokens_load(int32 coordinator_id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(coordinator_id)};

	if (tokens_cxt == NULL)
	{
		tokens_cxt = AllocSetContextCreate(TopMemoryContext, "cluster worker tokens",
										   ALLOCSET_SMALL_SIZES);
		tokens_owner = ResourceOwnerCreate(NULL, "cluster worker tokens");
	}
	/* pump, handler, token: the order cluster._before_drop locks them in */
	spi_exec_checked("SELECT t.id, t.handler_id, t.token_hash, t.capacity, t.expires_at "
					 "  FROM cluster.pump p JOIN cluster.handler h ON p.id = h.pump_id "
					 "  JOIN cluster.worker_token t ON h.id = t.handler_id "
					 " WHERE p.coordinator_id = $1 AND t.revoked_at IS NULL "
					 "   AND (t.expires_at IS NULL OR t.expires_at > pg_catalog.now()) "
					 "   AND cluster._may_manage_workers(t.handler_id, t.issued_by)",
					 1, types, values, NULL, SPI_OK_SELECT);
	MemoryContextReset(tokens_cxt);
	n_tokens = (int) SPI_processed;
	tokens = MemoryContextAllocZero(tokens_cxt, sizeof(WorkerToken) * Max(n_tokens, 1));
	for (int i = 0; i < n_tokens; i++)
	{
		WorkerToken *t = &tokens[i];
		bool		isnull;
		bytea	   *digest;

		strlcpy(t->id, TextDatumGetCString(spi_getdatum(i, Anum_tok_id, &isnull)), sizeof(t->id));
		t->handler_id = DatumGetInt32(spi_getdatum(i, Anum_tok_handler_id, &isnull));
		digest = DatumGetByteaPP(spi_getdatum(i, Anum_tok_digest, &isnull));
		if (VARSIZE_ANY_EXHDR(digest) == PG_SHA256_DIGEST_LENGTH)
			memcpy(t->digest, VARDATA_ANY(digest), PG_SHA256_DIGEST_LENGTH);
		t->capacity = DatumGetInt32(spi_getdatum(i, Anum_tok_capacity, &isnull));
		t->expires_at = DatumGetTimestampTz(spi_getdatum(i, Anum_tok_expires_at, &isnull));
		if (isnull)
			t->expires_at = 0;
	}
}

/* SHA-256 of the token; false if the hash could not be computed */
static bool
token_digest(const char *token, uint8 *digest)
{
	ResourceOwner save = CurrentResourceOwner;
	pg_cryptohash_ctx *ctx;
	bool		ok;

	CurrentResourceOwner = tokens_owner;
	ctx = pg_cryptohash_create(PG_SHA256);
	ok = ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) token, strlen(token)) == 0 &&
		pg_cryptohash_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) == 0;
	pg_cryptohash_free(ctx);
	CurrentResourceOwner = save;
	return ok;
}

static bool
expired(const WorkerToken *t)
{
	return t->expires_at != 0 && t->expires_at <= GetCurrentTimestamp();
}

/*
 * The valid token with this text, or NULL.  The digests compared are of
 * 244 random bits: how long a comparison takes tells nothing of a token.
 */
const WorkerToken *
tokens_match(const char *token)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (n_tokens == 0 || strlen(token) > TOKEN_MAX_LEN || !token_digest(token, digest))
		return NULL;
	for (int i = 0; i < n_tokens; i++)
		if (memcmp(tokens[i].digest, digest, sizeof(digest)) == 0)
			return expired(&tokens[i]) ? NULL : &tokens[i];
	return NULL;
}

/* The valid token with this id, or NULL. */
const WorkerToken *
tokens_find(const char *id)
{
	for (int i = 0; i < n_tokens; i++)
		if (strcmp(tokens[i].id, id) == 0)
			return expired(&tokens[i]) ? NULL : &tokens[i];
	return NULL;
}

void
tokens_forget(void)
{
	n_tokens = 0;
	if (tokens_cxt)
		MemoryContextReset(tokens_cxt);
	tokens = NULL;
}
