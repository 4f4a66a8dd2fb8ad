/*-------------------------------------------------------------------------
 *
 * patch.h
 *	  Apply a state patch to a handler's state, in one pass.
 *
 * A patch is [{"op": "set", "path": [keys...], "value": ...}, {"op":
 * "remove", "path": [keys...]}], paths relative to the handler's user state
 * (cluster._check_patch checks its shape).  The state is
 * expanded once into an in-memory tree, every operation is applied to the
 * tree, and the tree is turned back into jsonb once: the cost is the
 * state's size plus the operations', not their product (applying each
 * operation with jsonb_set copied the whole state every time).  "set"
 * creates missing or scalar parents as objects and walks into existing
 * arrays, where a key must be an integer (negative: from the end; past
 * the end: appended); "remove" of something absent does nothing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_PATCH_H
#define CLUSTER_PATCH_H

#include "utils/jsonb.h"

extern Jsonb *patch_apply(Jsonb *state, Jsonb *patch);

#endif							/* CLUSTER_PATCH_H */
