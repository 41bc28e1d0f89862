/* radraft — private hooks of the store, for tests only. */
#ifndef RADRAFT_STORE_INT_H
#define RADRAFT_STORE_INT_H

#include "radraft/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Points where rd_store_put can be made to fail as if the system had failed there
 * (SQLite-style fault injection): each simulates the errno or database error it names. */
typedef enum rd_store_fault {
    RD_STORE_FAULT_NONE = 0,
    RD_STORE_FAULT_WRITE,  /* write() fails with ENOSPC after part of the data */
    RD_STORE_FAULT_FSYNC,  /* fsync() of the file fails with EIO */
    RD_STORE_FAULT_RENAME, /* rename() into place fails with EIO */
    RD_STORE_FAULT_COMMIT  /* the index transaction fails after the rename */
} rd_store_fault;

/* Arms one fault for the next rd_store_put on this handle (it disarms when hit). */
void rd_store__set_fault(rd_store *s, rd_store_fault fault);

/* The connection and data directory of a handle, for the store's other source files
 * (src/store_archive.c); nothing outside the store module uses them. */
struct sqlite3;
struct sqlite3 *rd_store__db(rd_store *s);
const char *rd_store__dir(const rd_store *s);

#ifdef __cplusplus
}
#endif
#endif
