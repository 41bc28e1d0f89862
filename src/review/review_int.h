/* radraft — private to src/review and its tests. */
#ifndef RADRAFT_REVIEW_INT_H
#define RADRAFT_REVIEW_INT_H

/* Fault injection for the tests, as SQLite has: when set, called after a signed SR is
 * written and before the store records it, so that a test can end the process at the one
 * moment a crash must not leave an item signed without its SR. NULL in radraft itself. */
extern void (*rd__review_after_sr)(void);

#endif
