/* radraft — private to src/report (the labeler and the generator) and its unit tests. */
#ifndef RADRAFT_REPORT_INT_H
#define RADRAFT_REPORT_INT_H

#include <stddef.h>

#include "radraft/labeler.h"

/* Cleans one sentence of a past report for reuse: drops clauses with comparison language
 * ("compared to the prior study"), and words like "stable", "unchanged", "again"; refuses
 * (returns 0) a sentence with a de-identification mark (XXXX), any digit (dates, IDs,
 * measurements), a name-like capitalized word, a person or a time ("Dr.", "called", "p.m."),
 * comparison language it cannot remove, or anything but plain ASCII text. Returns 1 with the
 * cleaned sentence (capitalized, ending in a period) in `out` when usable. */
int rd__generator_clean_sentence(const char *in, char *out, size_t out_size);

/* Number of phrases of all kinds the labeler holds (0 for NULL). */
size_t rd__labeler_phrase_count(const rd_labeler *lab);

#endif
