/* radraft — the one test of a DICOM UID, applied wherever a UID comes in (network, files,
 * configuration) or goes out (SRs, paths in the store). */
#ifndef RADRAFT_UID_H
#define RADRAFT_UID_H

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when `uid` is a UID by the rules of PS3.5 section 9.1: 1 to 64 characters, components of
 * digits separated by single dots, no component empty or with a leading zero ("0" itself is
 * a component). The value is taken as it stands: padding, spaces and control characters
 * make it invalid (a value with one trailing NUL of padding is stripped of it by the reader,
 * never here). NULL is invalid. */
int rd_uid_valid(const char *uid);

#ifdef __cplusplus
}
#endif
#endif
