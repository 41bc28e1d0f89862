/* radraft — private to pacs/ and its fuzz target (tests/fuzz/fuzz_net.c): one connection
 * served by a running listener, given as a socket rather than accepted from its port. */
#ifndef RADRAFT_PACS_NET_INT_H
#define RADRAFT_PACS_NET_INT_H

#include "radraft/net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Serves the connected socket `fd` on the calling thread exactly as the listener serves a
 * connection it accepted from `peer` (an address for the logs and the per-peer limits):
 * the association request within server.request_timeout, then the association, until the
 * peer releases, aborts or closes. Takes `fd` over (it is closed on return). Returns when
 * the connection is done: everything the listener does for it (stores included) is done
 * then. RD_E_NOMEM when it cannot be queued (fd closed). */
rd_status rd__net_scp_serve_socket(rd_net_scp *scp, int fd, const char *peer);

#ifdef __cplusplus
}
#endif
#endif
