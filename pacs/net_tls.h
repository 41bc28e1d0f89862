// radraft — private to pacs/: the DICOM TLS layer of a sender, for the senders outside
// net.cc (qr.cc).
#ifndef RADRAFT_PACS_NET_TLS_H
#define RADRAFT_PACS_NET_TLS_H

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmtls/tlslayer.h>

#include "radraft/error.h"
#include "radraft/net.h"

// A requestor's TLS layer as rd_net_send_files makes it from `opts` (its certificate and
// key, the CAs the peer must chain to, or none with tls_skip_verify, warned about once).
// On success *out is the caller's (delete it after the association is gone).
rd_status rd__net_make_tls_requestor(const rd_net_scu_options *opts, DcmTLSTransportLayer **out,
                                     rd_error *err);

#endif
