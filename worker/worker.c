/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The settings of cluster-worker and the state its modules share.
 *
 * Defined here rather than in main.c so that the modules that read it
 * depend on this file alone, not on the top of the program.
 *
 *-------------------------------------------------------------------------
 */
#include "worker.h"

Worker		worker;
