// radraft — DICOM networking over DCMTK: the C-STORE/C-ECHO listener and sender.
//
// The listener is a small accept loop (one thread) that hands every association to a
// thread of its own, up to a limit; over the limit an association is rejected (local
// limit exceeded). The association thread negotiates, then reads DIMSE commands: C-ECHO
// is answered at once; a C-STORE dataset's bytes are received into memory behind a new
// file meta header, untouched, parsed once to check them and find the UIDs, and handed to
// the store callback, whose status becomes the C-STORE response. No C++ type or exception leaves
// this file.
#include "radraft/net.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrma.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "radraft/log.h"

namespace
{

// Copies at most size-1 bytes of `src` into `dst` and terminates it (like rd_strlcpy, which
// is private to the C library).
void copy_text(char *dst, const char *src, size_t size)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

std::once_flag g_init_once;

// Transfer syntaxes the listener can receive (every one DCMTK knows but the private GE
// one and the never-used big endian implicit).
const E_TransferSyntax k_accepted_xfers[] = {EXS_LittleEndianExplicit,
                                             EXS_LittleEndianImplicit,
                                             EXS_BigEndianExplicit,
                                             EXS_DeflatedLittleEndianExplicit,
                                             EXS_JPEGProcess14SV1,
                                             EXS_JPEGProcess14,
                                             EXS_JPEGProcess15,
                                             EXS_JPEGProcess28,
                                             EXS_JPEGProcess29,
                                             EXS_JPEGLSLossless,
                                             EXS_JPEG2000LosslessOnly,
                                             EXS_JPEG2000MulticomponentLosslessOnly,
                                             EXS_RLELossless,
                                             EXS_JPEGProcess1,
                                             EXS_JPEGProcess2_4,
                                             EXS_JPEGProcess3_5,
                                             EXS_JPEGProcess6_8,
                                             EXS_JPEGProcess7_9,
                                             EXS_JPEGProcess10_12,
                                             EXS_JPEGProcess11_13,
                                             EXS_JPEGProcess16_18,
                                             EXS_JPEGProcess17_19,
                                             EXS_JPEGProcess20_22,
                                             EXS_JPEGProcess21_23,
                                             EXS_JPEGProcess24_26,
                                             EXS_JPEGProcess25_27,
                                             EXS_JPEGLSLossy,
                                             EXS_JPEG2000,
                                             EXS_JPEG2000Multicomponent,
                                             EXS_JPIPReferenced,
                                             EXS_JPIPReferencedDeflate,
                                             EXS_MPEG2MainProfileAtMainLevel,
                                             EXS_MPEG2MainProfileAtHighLevel,
                                             EXS_MPEG4HighProfileLevel4_1,
                                             EXS_MPEG4BDcompatibleHighProfileLevel4_1,
                                             EXS_MPEG4HighProfileLevel4_2_For2DVideo,
                                             EXS_MPEG4HighProfileLevel4_2_For3DVideo,
                                             EXS_MPEG4StereoHighProfileLevel4_2,
                                             EXS_HEVCMainProfileLevel5_1,
                                             EXS_HEVCMain10ProfileLevel5_1};

const size_t k_n_xfers = sizeof k_accepted_xfers / sizeof k_accepted_xfers[0];

// Trailing spaces and NULs are padding, not part of a value.
std::string get_string(DcmItem *ds, const DcmTagKey &tag)
{
    OFString v;
    if (ds->findAndGetOFString(tag, v).bad())
        return std::string();
    std::string s(v.c_str());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0'))
        s.pop_back();
    return s;
}

// Appends what the stream holds to `out`.
void drain(DcmOutputBufferStream &stream, std::vector<unsigned char> &out)
{
    void *p = NULL;
    offile_off_t len = 0;
    stream.flushBuffer(p, len);
    if (len > 0)
        out.insert(out.end(), static_cast<unsigned char *>(p),
                   static_cast<unsigned char *>(p) + len);
}

// The largest dataset the listener takes in (a hard cap on memory per association).
const size_t k_max_dataset = static_cast<size_t>(2047) << 20;

// A DcmConsumer that appends to a vector: DCMTK streams the received PDV bytes into it
// untouched, so that the stored dataset is exactly what the peer sent.
class MemConsumer : public DcmConsumer
{
  public:
    explicit MemConsumer(std::vector<unsigned char> &out) : out_(out) {}
    OFBool good() const override
    {
        return ok_;
    }
    OFCondition status() const override
    {
        return ok_ ? EC_Normal : EC_MemoryExhausted;
    }
    OFBool isFlushed() const override
    {
        return OFTrue;
    }
    offile_off_t avail() const override
    {
        return ok_ ? 1 << 30 : 0;
    }
    offile_off_t write(const void *buf, offile_off_t len) override
    {
        if (!ok_ || len < 0)
            return 0;
        size_t n = static_cast<size_t>(len);
        if (n > k_max_dataset || out_.size() > k_max_dataset - n) {
            ok_ = false; // over the cap: the receive fails, nothing is stored
            return 0;
        }
        try {
            const unsigned char *p = static_cast<const unsigned char *>(buf);
            out_.insert(out_.end(), p, p + n);
        } catch (const std::bad_alloc &) {
            ok_ = false;
            return 0;
        }
        return len;
    }
    void flush() override {}

  private:
    std::vector<unsigned char> &out_;
    bool ok_ = true;
};

class MemOutputStream : public DcmOutputStream
{
  public:
    explicit MemOutputStream(DcmConsumer *consumer) : DcmOutputStream(consumer) {}
};

// Writes radraft's file meta header (preamble, "DICM", group 0002) for an instance of
// `sop_class`/`sop_inst` in `xfer` into `out`.
OFCondition write_meta(const char *sop_class, const char *sop_inst, E_TransferSyntax xfer,
                       const char *source_ae, std::vector<unsigned char> &out)
{
    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    OFCondition cond = ds->putAndInsertString(DCM_SOPClassUID, sop_class);
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SOPInstanceUID, sop_inst);
    DcmMetaInfo *meta = ff.getMetaInfo();
    if (cond.good() && source_ae && source_ae[0])
        cond = meta->putAndInsertString(DCM_SourceApplicationEntityTitle, source_ae);
    // Update mode keeps the source AE title and computes the group length with it in.
    if (cond.good())
        cond = ff.validateMetaInfo(xfer, EWM_updateMeta);
    if (cond.bad())
        return cond;
    std::vector<unsigned char> buf(1 << 14);
    DcmOutputBufferStream stream(buf.data(), static_cast<offile_off_t>(buf.size()));
    meta->transferInit();
    while ((cond = meta->write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, NULL)) ==
           EC_StreamNotifyClient)
        drain(stream, out);
    meta->transferEnd();
    if (cond.bad())
        return cond;
    stream.flush();
    drain(stream, out);
    return EC_Normal;
}

bool has(const char *s)
{
    return s && s[0];
}

// A TLS layer for `role` with the given PEM files (each may be NULL or ""): the BCP 195
// profile (TLS 1.2+, strong ciphers). With a CA file the peer's certificate is required
// and verified; without one it is not checked. On failure *out is NULL and `err` says why.
rd_status make_tls(T_ASC_NetworkRole role, const char *cert, const char *key, const char *ca,
                   DcmTLSTransportLayer **out, rd_error *err)
{
    DcmTLSTransportLayer *tls = NULL;
    OFCondition cond;
    *out = NULL;
    try {
        tls = new DcmTLSTransportLayer(role, NULL, OFTrue);
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the TLS layer");
    }
    tls->setCertificateVerification(has(ca) ? DCV_requireCertificate : DCV_ignoreCertificate);
    if (has(ca) && (cond = tls->addTrustedCertificateFile(ca, DCF_Filetype_PEM)).bad())
        goto fail;
    if (has(cert) || has(key)) {
        if ((cond = tls->setPrivateKeyFile(key ? key : "", DCF_Filetype_PEM)).bad() ||
            (cond = tls->setCertificateFile(cert ? cert : "", DCF_Filetype_PEM)).bad())
            goto fail;
        if (!tls->checkPrivateKeyMatchesCertificate()) {
            delete tls;
            return rd_error_set(err, RD_E_CONFIG, "TLS: private key %s does not match %s",
                                key ? key : "", cert ? cert : "");
        }
    }
    if ((cond = tls->setTLSProfile(TSP_Profile_BCP195)).bad() ||
        (cond = tls->activateCipherSuites()).bad())
        goto fail;
    *out = tls;
    return RD_OK;
fail:
    delete tls;
    return rd_error_set(err, RD_E_CONFIG, "TLS set-up failed (certificate %s, key %s, CAs %s): %s",
                        has(cert) ? cert : "-", has(key) ? key : "-", has(ca) ? ca : "-",
                        cond.text());
}

Uint16 status_for(rd_status st)
{
    switch (st) {
    case RD_OK:
        return STATUS_Success;
    case RD_E_IO:
    case RD_E_NOMEM:
    case RD_E_DB:
    case RD_E_TOO_LARGE:
        return STATUS_STORE_Refused_OutOfResources; // 0xA700
    case RD_E_INVALID:
        return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass; // 0xA900
    default:
        return STATUS_STORE_Error_CannotUnderstand; // 0xC000
    }
}

} // namespace

struct rd_net_scp {
    rd_net_scp_options opts;
    std::vector<std::string> allowed;
    rd_net_handlers handlers;
    T_ASC_Network *net = NULL;
    DcmTLSTransportLayer *tls = NULL;
    std::thread accept_thread;
    std::atomic<bool> stopping{false};
    std::mutex mu;
    std::condition_variable cv;
    long active = 0;
    std::atomic<long> n_assoc{0}, n_rejected{0}, n_stored{0}, n_failed{0};
};

extern "C" void rd_net_init(void)
{
    std::call_once(g_init_once, [] {
        // Debian's DCMTK leaves Nagle's algorithm on unless TCP_NODELAY is set in the
        // environment; with it on, every small PDU waits for a delayed ACK (~40 ms). DCMTK
        // reads the variable for each socket it opens or accepts (its socket handle is not
        // reachable through the public API, so this is the one place to switch it).
        setenv("TCP_NODELAY", "1", 1);
        signal(SIGPIPE, SIG_IGN);
        // No reverse DNS lookup for each association: it can stall the accept loop.
        dcmDisableGethostbyaddr.set(OFTrue);
    });
}

extern "C" rd_status rd_net_peer_parse(const char *text, rd_net_peer *out, rd_error *err)
{
    const char *at = strchr(text, '@');
    const char *colon = strrchr(text, ':');
    const char *plus = colon ? strchr(colon, '+') : NULL;
    rd_net_peer p;
    memset(&p, 0, sizeof p);
    p.tls = -1;
    if (!at || !colon || colon < at)
        return rd_error_set(err, RD_E_INVALID, "'%s' is not AE@host:port", text);
    if (plus) {
        if (strcmp(plus, "+tls") == 0)
            p.tls = 1;
        else if (strcmp(plus, "+plain") == 0)
            p.tls = 0;
        else
            return rd_error_set(err, RD_E_INVALID,
                                "'%s': after the port only +tls or +plain may follow", text);
    }
    size_t ae_len = static_cast<size_t>(at - text);
    size_t host_len = static_cast<size_t>(colon - at - 1);
    if (ae_len == 0 || ae_len > RD_NET_AE_MAX)
        return rd_error_set(err, RD_E_INVALID, "'%s': the AE title must have 1 to 16 characters",
                            text);
    for (size_t i = 0; i < ae_len; i++)
        if (static_cast<unsigned char>(text[i]) < 0x20 || text[i] == '\\' || text[i] == 0x7f)
            return rd_error_set(err, RD_E_INVALID, "'%s': invalid character in the AE title", text);
    if (host_len == 0 || host_len >= sizeof p.host)
        return rd_error_set(err, RD_E_INVALID, "'%s': missing or too long host", text);
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || end != (plus ? plus : colon + strlen(colon)) || port < 1 ||
        port > 65535)
        return rd_error_set(err, RD_E_INVALID, "'%s': the port must be 1 to 65535", text);
    memcpy(p.ae_title, text, ae_len);
    memcpy(p.host, at + 1, host_len);
    p.port = static_cast<int>(port);
    *out = p;
    return RD_OK;
}

extern "C" void rd_net_scp_options_from_config(rd_net_scp_options *opts, const rd_config *cfg)
{
    memset(opts, 0, sizeof *opts);
    opts->port = cfg->server_port;
    copy_text(opts->ae_title, cfg->server_ae_title, sizeof opts->ae_title);
    opts->check_called_ae = cfg->server_check_called_ae;
    opts->allowed_calling_aes = &cfg->server_allowed_calling_aes;
    opts->max_associations = cfg->server_max_associations;
    opts->max_pdu = cfg->server_max_pdu;
    opts->acse_timeout = cfg->server_acse_timeout;
    opts->dimse_timeout = cfg->server_dimse_timeout;
    opts->idle_timeout = cfg->server_idle_timeout;
    opts->tls_certificate = cfg->server_tls_certificate;
    opts->tls_private_key = cfg->server_tls_private_key;
    opts->tls_ca_file = cfg->server_tls_ca_certificates;
}

extern "C" void rd_net_scu_options_from_config(rd_net_scu_options *opts, const rd_config *cfg)
{
    memset(opts, 0, sizeof *opts);
    copy_text(opts->calling_ae, cfg->server_ae_title, sizeof opts->calling_ae);
    opts->max_pdu = cfg->server_max_pdu;
    opts->acse_timeout = cfg->server_acse_timeout;
    opts->dimse_timeout = cfg->server_dimse_timeout;
    opts->tls = cfg->outbox_tls;
    opts->tls_certificate = cfg->server_tls_certificate;
    opts->tls_private_key = cfg->server_tls_private_key;
    opts->tls_ca_file = cfg->server_tls_ca_certificates;
}

namespace
{

void reject(rd_net_scp *scp, T_ASC_Association *assoc, T_ASC_RejectParametersResult result,
            T_ASC_RejectParametersSource source, T_ASC_RejectParametersReason reason)
{
    T_ASC_RejectParameters rej;
    rej.result = result;
    rej.source = source;
    rej.reason = reason;
    (void)ASC_rejectAssociation(assoc, &rej);
    (void)ASC_dropAssociation(assoc);
    (void)ASC_destroyAssociation(&assoc);
    scp->n_rejected++;
}

// Receives one C-STORE dataset, stores it through the callback and answers.
// Returns false when the association cannot go on (it has been aborted then).
bool handle_store(rd_net_scp *scp, T_ASC_Association *assoc, void *actx,
                  T_ASC_PresentationContextID pres_id, T_DIMSE_C_StoreRQ *req, const char *calling,
                  const char *peer)
{
    rd_error err;
    rd_error_clear(&err);
    rd_status st = RD_OK;
    std::string sop_class, sop_inst, study, series, modality, xfer_uid;
    std::vector<unsigned char> file;
    size_t ds_offset = 0;
    T_ASC_PresentationContext pc;
    E_TransferSyntax xfer = EXS_Unknown;
    OFCondition cond = EC_Normal;

    if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).good()) {
        xfer_uid = pc.acceptedTransferSyntax;
        xfer = DcmXfer(pc.acceptedTransferSyntax).getXfer();
    }
    try {
        file.reserve(1 << 20);
        if (xfer != EXS_Unknown)
            cond = write_meta(req->AffectedSOPClassUID, req->AffectedSOPInstanceUID, xfer, calling,
                              file);
    } catch (const std::bad_alloc &) {
        cond = EC_MemoryExhausted;
    }
    ds_offset = file.size();
    {
        // The dataset's bytes go untouched behind the meta header: no parse-and-rewrite, so
        // the stored dataset is bit for bit what the peer sent (the --bit-preserving mode
        // of DCMTK's storescp, in memory). A failure to build the header still reads the
        // dataset, so that the association stays in step and can answer a failure.
        MemConsumer consumer(file);
        MemOutputStream stream(&consumer);
        T_ASC_PresentationContextID data_pres = pres_id;
        OFCondition rcv = DIMSE_receiveDataSetInFile(
            assoc, DIMSE_NONBLOCKING, scp->opts.dimse_timeout, &data_pres, &stream, NULL, NULL);
        if (rcv.bad()) {
            // Nothing was stored; the peer gets no success. The stream position is unknown
            // after a failed read, so the association cannot continue.
            rd_log_warn("net: C-STORE of %.80s from %s (%s): receiving the dataset failed: "
                        "%s; aborting the association",
                        req->AffectedSOPInstanceUID, calling, peer, rcv.text());
            scp->n_failed++;
            (void)ASC_abortAssociation(assoc);
            return false;
        }
    }

    if (xfer == EXS_Unknown) {
        st = rd_error_set(&err, RD_E_INTERNAL, "unknown transfer syntax of context %d",
                          static_cast<int>(pres_id));
    } else if (cond.bad()) {
        st = rd_error_set(&err, cond == EC_MemoryExhausted ? RD_E_NOMEM : RD_E_DICOM,
                          "cannot write the file meta header: %s", cond.text());
    } else {
        // Parse what arrived: an unparsable dataset is refused, and the UIDs that place
        // the file come from the dataset itself.
        DcmDataset ds;
        DcmInputBufferStream in;
        in.setBuffer(file.data() + ds_offset, static_cast<offile_off_t>(file.size() - ds_offset));
        in.setEos();
        ds.transferInit();
        cond = ds.read(in, xfer, EGL_noChange, DCM_MaxReadLength);
        ds.transferEnd();
        if (cond.bad()) {
            st = rd_error_set(&err, RD_E_DICOM, "the dataset cannot be parsed: %s", cond.text());
        } else {
            sop_class = get_string(&ds, DCM_SOPClassUID);
            sop_inst = get_string(&ds, DCM_SOPInstanceUID);
            study = get_string(&ds, DCM_StudyInstanceUID);
            series = get_string(&ds, DCM_SeriesInstanceUID);
            modality = get_string(&ds, DCM_Modality);
            if (sop_inst.empty() || sop_class.empty() || study.empty() || series.empty())
                st = rd_error_set(&err, RD_E_INVALID,
                                  "the dataset lacks SOP Class, SOP Instance, Study or Series UID");
            else if (sop_inst != req->AffectedSOPInstanceUID ||
                     sop_class != req->AffectedSOPClassUID)
                st = rd_error_set(&err, RD_E_INVALID,
                                  "the dataset's SOP Class/Instance UID differ from the request's");
        }
    }
    if (st == RD_OK) {
        rd_net_instance inst;
        inst.calling_ae = calling;
        inst.peer_host = peer;
        inst.sop_class_uid = sop_class.c_str();
        inst.sop_instance_uid = sop_inst.c_str();
        inst.study_uid = study.c_str();
        inst.series_uid = series.c_str();
        inst.transfer_syntax_uid = xfer_uid.c_str();
        inst.modality = modality.c_str();
        inst.file = file.data();
        inst.file_len = file.size();
        inst.dataset_offset = ds_offset;
        st =
            scp->handlers.store ? scp->handlers.store(scp->handlers.ctx, actx, &inst, &err) : RD_OK;
    }
    Uint16 status = status_for(st);
    if (st == RD_OK) {
        scp->n_stored++;
        rd_log_debug("net: stored %s from %s (%s)", sop_inst.c_str(), calling, peer);
    } else {
        scp->n_failed++;
        rd_log_warn("net: C-STORE of %.80s from %s (%s) failed with status 0x%04x: %s",
                    req->AffectedSOPInstanceUID, calling, peer, status, rd_error_message(&err));
    }

    T_DIMSE_C_StoreRSP rsp;
    memset(&rsp, 0, sizeof rsp);
    rsp.MessageIDBeingRespondedTo = req->MessageID;
    rsp.DimseStatus = status;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, req->AffectedSOPClassUID,
                        sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req->AffectedSOPInstanceUID,
                        sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    cond = DIMSE_sendStoreResponse(assoc, pres_id, req, &rsp, NULL);
    if (cond.bad()) {
        rd_log_warn("net: sending the C-STORE response to %s (%s) failed: %s", calling, peer,
                    cond.text());
        (void)ASC_abortAssociation(assoc);
        return false;
    }
    return true;
}

// Accepts every proposed context for verification or a storage SOP class, choosing the
// first transfer syntax in the peer's order that DCMTK can receive: a peer lists the
// syntax its data is in first, so that choosing it means nobody transcodes (preferring
// our own order would make a peer decompress, or fail when it cannot).
OFCondition accept_contexts(T_ASC_Parameters *params)
{
    int n = ASC_countPresentationContexts(params);
    for (int i = 0; i < n; i++) {
        T_ASC_PresentationContext pc;
        OFCondition cond = ASC_getPresentationContext(params, i, &pc);
        if (cond.bad())
            return cond;
        bool abstract_ok = strcmp(pc.abstractSyntax, UID_VerificationSOPClass) == 0;
        for (int k = 0; !abstract_ok && k < numberOfDcmAllStorageSOPClassUIDs; k++)
            abstract_ok = strcmp(pc.abstractSyntax, dcmAllStorageSOPClassUIDs[k]) == 0;
        const char *chosen = NULL;
        for (int j = 0; abstract_ok && !chosen && j < pc.transferSyntaxCount; j++)
            for (size_t k = 0; !chosen && k < k_n_xfers; k++) {
                const char *uid = DcmXfer(k_accepted_xfers[k]).getXferID();
                if (strcmp(pc.proposedTransferSyntaxes[j], uid) == 0)
                    chosen = uid;
            }
        if (chosen)
            cond = ASC_acceptPresentationContext(params, pc.presentationContextID, chosen);
        else
            cond = ASC_refusePresentationContext(params, pc.presentationContextID,
                                                 abstract_ok ? ASC_P_TRANSFERSYNTAXESNOTSUPPORTED
                                                             : ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
        if (cond.bad())
            return cond;
    }
    return EC_Normal;
}

void serve_association(rd_net_scp *scp, T_ASC_Association *assoc)
{
    char calling[64] = "", called[64] = "", responding[64] = "", peer[256] = "", local[256] = "";
    void *actx = NULL;
    bool begun = false;
    OFCondition cond;

    (void)ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, responding,
                          sizeof responding);
    (void)ASC_getPresentationAddresses(assoc->params, peer, sizeof peer, local, sizeof local);

    bool allowed = scp->allowed.empty();
    for (const std::string &a : scp->allowed)
        if (a == calling)
            allowed = true;
    if (!allowed) {
        rd_log_warn("net: rejected an association from %s: calling AE title '%s' is not in "
                    "server.allowed_calling_aes",
                    peer, calling);
        reject(scp, assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
        goto done;
    }
    if (scp->opts.check_called_ae && strcmp(called, scp->opts.ae_title) != 0) {
        rd_log_warn("net: rejected an association from %s (calling AE '%s'): called AE title "
                    "'%s' is not '%s'",
                    peer, calling, called, scp->opts.ae_title);
        reject(scp, assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
        goto done;
    }
    cond = accept_contexts(assoc->params);
    if (cond.bad()) {
        rd_log_warn("net: association from %s (%s): negotiation failed: %s", calling, peer,
                    cond.text());
        reject(scp, assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_NOREASON);
        goto done;
    }
    (void)ASC_setAPTitles(assoc->params, NULL, NULL, scp->opts.ae_title);
    if (scp->handlers.assoc_begin) {
        rd_error err;
        rd_error_clear(&err);
        if (scp->handlers.assoc_begin(scp->handlers.ctx, &actx, &err) != RD_OK) {
            rd_log_error("net: association from %s (%s) refused: %s", calling, peer,
                         rd_error_message(&err));
            reject(scp, assoc, ASC_RESULT_REJECTEDTRANSIENT,
                   ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                   ASC_REASON_SP_PRES_TEMPORARYCONGESTION);
            goto done;
        }
    }
    begun = true;
    cond = ASC_acknowledgeAssociation(assoc);
    if (cond.bad()) {
        rd_log_warn("net: acknowledging the association from %s (%s) failed: %s", calling, peer,
                    cond.text());
        (void)ASC_dropAssociation(assoc);
        (void)ASC_destroyAssociation(&assoc);
        goto done;
    }
    scp->n_assoc++;
    rd_log_debug("net: association from %s (%s), %d of %d contexts accepted", calling, peer,
                 ASC_countAcceptedPresentationContexts(assoc->params),
                 ASC_countPresentationContexts(assoc->params));

    {
        int idle = 0;
        for (;;) {
            // Poll once a second so that an idle association notices a shutdown.
            if (!ASC_dataWaiting(assoc, 1)) {
                if (scp->stopping.load()) {
                    rd_log_info("net: closing the idle association from %s (%s) for shutdown",
                                calling, peer);
                    (void)ASC_abortAssociation(assoc);
                    break;
                }
                if (++idle >= scp->opts.idle_timeout) {
                    rd_log_info("net: association from %s (%s) idle for %d s: aborting it", calling,
                                peer, idle);
                    (void)ASC_abortAssociation(assoc);
                    break;
                }
                continue;
            }
            idle = 0;
            T_DIMSE_Message msg;
            T_ASC_PresentationContextID pres_id = 0;
            cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, scp->opts.dimse_timeout, &pres_id,
                                        &msg, NULL);
            if (cond == DUL_PEERREQUESTEDRELEASE) {
                (void)ASC_acknowledgeRelease(assoc);
                break;
            }
            if (cond == DUL_PEERABORTEDASSOCIATION) {
                rd_log_info("net: %s (%s) aborted the association", calling, peer);
                break;
            }
            if (cond.bad()) {
                rd_log_warn("net: association from %s (%s): %s; aborting it", calling, peer,
                            cond.text());
                (void)ASC_abortAssociation(assoc);
                break;
            }
            if (msg.CommandField == DIMSE_C_ECHO_RQ) {
                cond =
                    DIMSE_sendEchoResponse(assoc, pres_id, &msg.msg.CEchoRQ, STATUS_Success, NULL);
                if (cond.bad()) {
                    (void)ASC_abortAssociation(assoc);
                    break;
                }
            } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
                if (!handle_store(scp, assoc, actx, pres_id, &msg.msg.CStoreRQ, calling, peer))
                    break;
                // Shutting down: the store in flight has been answered; a busy sender is
                // not served to its end (an SCP cannot release, so it aborts; the sender
                // resends what got no response).
                if (scp->stopping.load()) {
                    rd_log_info("net: aborting the association from %s (%s) for shutdown", calling,
                                peer);
                    (void)ASC_abortAssociation(assoc);
                    break;
                }
            } else {
                rd_log_warn("net: association from %s (%s): unsupported DIMSE command 0x%04x; "
                            "aborting it",
                            calling, peer, static_cast<unsigned>(msg.CommandField));
                (void)ASC_abortAssociation(assoc);
                break;
            }
        }
    }
    (void)ASC_dropSCPAssociation(assoc);
    (void)ASC_destroyAssociation(&assoc);
done:
    if (begun && scp->handlers.assoc_end)
        scp->handlers.assoc_end(scp->handlers.ctx, actx);
    // Notify under the lock: once active reaches 0, rd_net_scp_stop may return from its wait
    // and delete scp, so this thread must be done with scp->cv before it releases scp->mu
    // (notifying after the unlock raced with that delete; ThreadSanitizer found it).
    std::lock_guard<std::mutex> lock(scp->mu);
    scp->active--;
    scp->cv.notify_all();
}

void accept_loop(rd_net_scp *scp)
{
    while (!scp->stopping.load()) {
        T_ASC_Association *assoc = NULL;
        OFCondition cond = ASC_receiveAssociation(scp->net, &assoc, scp->opts.max_pdu, NULL, NULL,
                                                  scp->tls ? OFTrue : OFFalse, DUL_NOBLOCK, 1);
        if (cond == DUL_NOASSOCIATIONREQUEST) {
            if (assoc)
                (void)ASC_destroyAssociation(&assoc);
            continue;
        }
        if (cond.bad()) {
            rd_log_warn("net: receiving an association request failed: %s", cond.text());
            if (assoc) {
                (void)ASC_dropAssociation(assoc);
                (void)ASC_destroyAssociation(&assoc);
            }
            continue;
        }
        bool over;
        {
            std::lock_guard<std::mutex> lock(scp->mu);
            over = scp->active >= scp->opts.max_associations || scp->stopping.load();
            if (!over)
                scp->active++;
        }
        if (over) {
            char peer[256] = "", local[256] = "";
            (void)ASC_getPresentationAddresses(assoc->params, peer, sizeof peer, local,
                                               sizeof local);
            rd_log_warn("net: rejected an association from %s: %d associations in progress "
                        "(server.max_associations)",
                        peer, scp->opts.max_associations);
            reject(scp, assoc, ASC_RESULT_REJECTEDTRANSIENT,
                   ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                   ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
            continue;
        }
        try {
            std::thread(serve_association, scp, assoc).detach();
        } catch (const std::exception &e) {
            rd_log_error("net: cannot start an association thread: %s", e.what());
            {
                std::lock_guard<std::mutex> lock(scp->mu);
                scp->active--;
            }
            (void)ASC_abortAssociation(assoc);
            (void)ASC_dropAssociation(assoc);
            (void)ASC_destroyAssociation(&assoc);
        }
    }
}

} // namespace

extern "C" rd_status rd_net_scp_start(rd_net_scp **out, const rd_net_scp_options *opts,
                                      const rd_net_handlers *handlers, rd_error *err)
{
    rd_net_init();
    if (opts->port < 1 || opts->port > 65535 || opts->max_associations < 1 ||
        opts->ae_title[0] == '\0')
        return rd_error_set(err, RD_E_INVALID, "listener: invalid port, AE title or limit");
    rd_net_scp *scp = NULL;
    try {
        scp = new rd_net_scp();
        scp->opts = *opts;
        scp->opts.allowed_calling_aes = NULL;
        if (scp->opts.max_pdu < ASC_MINIMUMPDUSIZE)
            scp->opts.max_pdu = ASC_DEFAULTMAXPDU;
        if (scp->opts.max_pdu > ASC_MAXIMUMPDUSIZE)
            scp->opts.max_pdu = ASC_MAXIMUMPDUSIZE;
        if (scp->opts.idle_timeout < 1)
            scp->opts.idle_timeout = 300;
        if (opts->allowed_calling_aes)
            for (int i = 0; i < opts->allowed_calling_aes->count; i++)
                scp->allowed.push_back(opts->allowed_calling_aes->items[i]);
        if (handlers)
            scp->handlers = *handlers;
        else
            memset(&scp->handlers, 0, sizeof scp->handlers);
    } catch (const std::bad_alloc &) {
        delete scp;
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the listener");
    }
    OFCondition cond =
        ASC_initializeNetwork(NET_ACCEPTOR, opts->port, opts->acse_timeout, &scp->net);
    if (cond.bad()) {
        delete scp;
        return rd_error_set(err, RD_E_NET, "cannot listen on port %d: %s", opts->port, cond.text());
    }
    if (has(opts->tls_certificate)) {
        rd_status st = make_tls(NET_ACCEPTOR, opts->tls_certificate, opts->tls_private_key,
                                opts->tls_ca_file, &scp->tls, err);
        if (st == RD_OK && ASC_setTransportLayer(scp->net, scp->tls, 0).bad())
            st = rd_error_set(err, RD_E_NET, "cannot install the TLS layer");
        if (st != RD_OK) {
            (void)ASC_dropNetwork(&scp->net);
            delete scp->tls;
            delete scp;
            return st;
        }
    }
    try {
        scp->accept_thread = std::thread(accept_loop, scp);
    } catch (const std::exception &e) {
        (void)ASC_dropNetwork(&scp->net);
        delete scp;
        return rd_error_set(err, RD_E_INTERNAL, "cannot start the listener thread: %s", e.what());
    }
    rd_log_info("net: listening on port %d as %s (at most %d associations, max PDU %d%s)",
                opts->port, opts->ae_title, scp->opts.max_associations, scp->opts.max_pdu,
                scp->tls ? ", TLS" : "");
    *out = scp;
    return RD_OK;
}

extern "C" void rd_net_scp_stop(rd_net_scp *scp)
{
    if (!scp)
        return;
    scp->stopping.store(true);
    if (scp->accept_thread.joinable())
        scp->accept_thread.join();
    // The port is closed now: no new association. Wait for those in progress; each ends
    // after the store it is receiving, or within a second when idle.
    {
        std::unique_lock<std::mutex> lock(scp->mu);
        scp->cv.wait(lock, [scp] { return scp->active == 0; });
    }
    (void)ASC_dropNetwork(&scp->net);
    delete scp->tls; // after the network that used it
    rd_log_info("net: listener stopped (%ld associations, %ld stored, %ld failed, %ld "
                "rejected)",
                scp->n_assoc.load(), scp->n_stored.load(), scp->n_failed.load(),
                scp->n_rejected.load());
    delete scp;
}

extern "C" void rd_net_scp_get_stats(rd_net_scp *scp, rd_net_scp_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    if (!scp)
        return;
    stats->associations = scp->n_assoc.load();
    stats->rejected = scp->n_rejected.load();
    stats->stored = scp->n_stored.load();
    stats->failed = scp->n_failed.load();
    std::lock_guard<std::mutex> lock(scp->mu);
    stats->active = scp->active;
}

// ---- sender ----

namespace
{

struct scu_file {
    std::string path, sop_class, sop_inst, xfer;
    rd_status st = RD_OK;
    std::string error;
};

// Opens an association to `peer` proposing the given (abstract syntax, transfer syntax)
// pairs, one presentation context each.
// Drops the network, then the TLS layer it used (which may be NULL).
void drop_network(T_ASC_Network **net, DcmTLSTransportLayer **tls)
{
    (void)ASC_dropNetwork(net);
    delete *tls;
    *tls = NULL;
}

rd_status open_association(const rd_net_peer *peer, const rd_net_scu_options *opts,
                           const std::vector<std::pair<std::string, std::string>> &contexts,
                           T_ASC_Network **net, T_ASC_Association **assoc,
                           DcmTLSTransportLayer **tls, rd_error *err)
{
    T_ASC_Parameters *params = NULL;
    *tls = NULL;
    // A "+tls" or "+plain" destination decides for itself; others follow outbox.tls.
    const bool use_tls = peer->tls >= 0 ? peer->tls != 0 : opts->tls != 0;
    char address[300];
    int acse = opts->acse_timeout > 0 ? opts->acse_timeout : 30;
    long max_pdu = opts->max_pdu >= ASC_MINIMUMPDUSIZE && opts->max_pdu <= ASC_MAXIMUMPDUSIZE
                       ? opts->max_pdu
                       : 116794;
    if (contexts.empty() || contexts.size() > 128)
        return rd_error_set(err, RD_E_INVALID,
                            "%zu presentation contexts needed (1 to 128 are possible)",
                            contexts.size());
    dcmConnectionTimeout.set(acse);
    OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, acse, net);
    if (cond.bad())
        return rd_error_set(err, RD_E_NET, "network initialisation failed: %s", cond.text());
    if (use_tls) {
        rd_status st = make_tls(NET_REQUESTOR, opts->tls_certificate, opts->tls_private_key,
                                opts->tls_ca_file, tls, err);
        if (st == RD_OK && ASC_setTransportLayer(*net, *tls, 0).bad())
            st = rd_error_set(err, RD_E_NET, "cannot install the TLS layer");
        if (st != RD_OK) {
            (void)ASC_dropNetwork(net);
            delete *tls;
            *tls = NULL;
            return st;
        }
    }
    cond = ASC_createAssociationParameters(&params, max_pdu);
    if (cond.good() && use_tls)
        cond = ASC_setTransportLayerType(params, OFTrue);
    if (cond.bad()) {
        drop_network(net, tls);
        return rd_error_set(err, RD_E_NET, "%s", cond.text());
    }
    (void)ASC_setAPTitles(params, opts->calling_ae[0] ? opts->calling_ae : "RADRAFT",
                          peer->ae_title, NULL);
    snprintf(address, sizeof address, "%s:%d", peer->host, peer->port);
    (void)ASC_setPresentationAddresses(params, "localhost", address);
    T_ASC_PresentationContextID id = 1;
    for (const auto &c : contexts) {
        const char *ts[1] = {c.second.c_str()};
        cond = ASC_addPresentationContext(params, id, c.first.c_str(), ts, 1);
        if (cond.bad())
            break;
        id = static_cast<T_ASC_PresentationContextID>(id + 2);
    }
    if (cond.good())
        cond = ASC_requestAssociation(*net, params, assoc);
    if (cond.bad()) {
        rd_status st;
        if (cond == DUL_ASSOCIATIONREJECTED) {
            T_ASC_RejectParameters rej;
            OFString text;
            (void)ASC_getRejectParameters(params, &rej);
            st = rd_error_set(err, RD_E_NET, "%s@%s rejected the association: %s", peer->ae_title,
                              address, ASC_printRejectParameters(text, &rej).c_str());
        } else {
            st = rd_error_set(err, RD_E_NET, "cannot associate with %s@%s: %s", peer->ae_title,
                              address, cond.text());
        }
        if (*assoc)
            (void)ASC_destroyAssociation(assoc);
        else
            (void)ASC_destroyAssociationParameters(&params);
        drop_network(net, tls);
        return st;
    }
    if (ASC_countAcceptedPresentationContexts((*assoc)->params) == 0) {
        (void)ASC_abortAssociation(*assoc);
        (void)ASC_destroyAssociation(assoc);
        drop_network(net, tls);
        return rd_error_set(err, RD_E_NET, "%s@%s accepted no presentation context", peer->ae_title,
                            address);
    }
    return RD_OK;
}

void close_association(T_ASC_Network **net, T_ASC_Association **assoc, DcmTLSTransportLayer **tls,
                       bool ok)
{
    if (*assoc) {
        if (ok)
            (void)ASC_releaseAssociation(*assoc);
        else
            (void)ASC_abortAssociation(*assoc);
        (void)ASC_destroyAssociation(assoc);
    }
    drop_network(net, tls);
}

} // namespace

extern "C" rd_status rd_net_echo(const rd_net_peer *peer, const rd_net_scu_options *opts,
                                 rd_error *err)
{
    rd_net_init();
    T_ASC_Network *net = NULL;
    T_ASC_Association *assoc = NULL;
    DcmTLSTransportLayer *tls = NULL;
    std::vector<std::pair<std::string, std::string>> contexts;
    try {
        contexts.emplace_back(UID_VerificationSOPClass, UID_LittleEndianImplicitTransferSyntax);
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    rd_status st = open_association(peer, opts, contexts, &net, &assoc, &tls, err);
    if (st != RD_OK)
        return st;
    DIC_US status = 0;
    DcmDataset *detail = NULL;
    OFCondition cond =
        DIMSE_echoUser(assoc, assoc->nextMsgID++, DIMSE_NONBLOCKING,
                       opts->dimse_timeout > 0 ? opts->dimse_timeout : 60, &status, &detail);
    delete detail;
    if (cond.bad())
        st = rd_error_set(err, RD_E_NET, "C-ECHO to %s@%s:%d failed: %s", peer->ae_title,
                          peer->host, peer->port, cond.text());
    else if (status != STATUS_Success)
        st = rd_error_set(err, RD_E_NET, "C-ECHO to %s@%s:%d: status 0x%04x", peer->ae_title,
                          peer->host, peer->port, status);
    close_association(&net, &assoc, &tls, cond.good());
    return st;
}

extern "C" rd_status rd_net_send_files(const rd_net_peer *peer, const rd_net_scu_options *opts,
                                       const char *const *files, int n_files, rd_status *results,
                                       rd_error *err)
{
    rd_net_init();
    rd_status first = RD_OK;
    rd_error first_err;
    rd_error_clear(&first_err);
    T_ASC_Network *net = NULL;
    T_ASC_Association *assoc = NULL;
    DcmTLSTransportLayer *tls = NULL;
    bool assoc_ok = true;
    int timeout = opts->dimse_timeout > 0 ? opts->dimse_timeout : 60;

    if (n_files <= 0)
        return RD_OK;
    try {
        std::vector<scu_file> items(static_cast<size_t>(n_files));
        std::vector<std::pair<std::string, std::string>> contexts;
        // First pass: what each file is, to propose one context per (SOP class, syntax).
        // Large values such as pixel data are not loaded yet (DCMTK reads them lazily).
        for (int i = 0; i < n_files; i++) {
            scu_file &f = items[static_cast<size_t>(i)];
            f.path = files[i];
            DcmFileFormat ff;
            OFCondition cond = ff.loadFile(files[i]);
            if (cond.bad()) {
                f.st = RD_E_DICOM;
                f.error = std::string(files[i]) + ": cannot read: " + cond.text();
                continue;
            }
            DcmDataset *ds = ff.getDataset();
            f.sop_class = get_string(ds, DCM_SOPClassUID);
            f.sop_inst = get_string(ds, DCM_SOPInstanceUID);
            f.xfer = DcmXfer(ds->getOriginalXfer()).getXferID();
            if (f.sop_class.empty() || f.sop_inst.empty() || ds->getOriginalXfer() == EXS_Unknown) {
                f.st = RD_E_DICOM;
                f.error = std::string(files[i]) + ": no SOP Class/Instance UID or transfer syntax";
                continue;
            }
            std::pair<std::string, std::string> c(f.sop_class, f.xfer);
            bool seen = false;
            for (const auto &x : contexts)
                seen = seen || x == c;
            if (!seen)
                contexts.push_back(c);
        }
        if (!contexts.empty()) {
            rd_status st = open_association(peer, opts, contexts, &net, &assoc, &tls, &first_err);
            if (st != RD_OK) {
                for (auto &f : items)
                    if (f.st == RD_OK) {
                        f.st = st;
                        f.error = first_err.msg;
                    }
                assoc = NULL;
            }
        }
        for (auto &f : items) {
            if (f.st != RD_OK)
                continue;
            if (!assoc || !assoc_ok) {
                f.st = RD_E_NET;
                f.error = f.path + ": not sent: the association broke off before it";
                continue;
            }
            T_ASC_PresentationContextID pid =
                ASC_findAcceptedPresentationContextID(assoc, f.sop_class.c_str(), f.xfer.c_str());
            if (pid == 0) {
                f.st = RD_E_NET;
                f.error = f.path + ": the peer accepted no context for its SOP class and "
                                   "transfer syntax";
                continue;
            }
            DcmFileFormat ff;
            OFCondition cond = ff.loadFile(f.path.c_str());
            if (cond.bad()) {
                f.st = RD_E_IO;
                f.error = f.path + ": cannot read: " + cond.text();
                continue;
            }
            T_DIMSE_C_StoreRQ req;
            T_DIMSE_C_StoreRSP rsp;
            DcmDataset *detail = NULL;
            memset(&req, 0, sizeof req);
            memset(&rsp, 0, sizeof rsp);
            req.MessageID = assoc->nextMsgID++;
            OFStandard::strlcpy(req.AffectedSOPClassUID, f.sop_class.c_str(),
                                sizeof req.AffectedSOPClassUID);
            OFStandard::strlcpy(req.AffectedSOPInstanceUID, f.sop_inst.c_str(),
                                sizeof req.AffectedSOPInstanceUID);
            req.DataSetType = DIMSE_DATASET_PRESENT;
            req.Priority = DIMSE_PRIORITY_MEDIUM;
            cond = DIMSE_storeUser(assoc, pid, &req, NULL, ff.getDataset(), NULL, NULL,
                                   DIMSE_NONBLOCKING, timeout, &rsp, &detail, NULL, 0);
            delete detail;
            if (cond.bad()) {
                f.st = RD_E_NET;
                f.error = f.path + ": C-STORE failed: " + cond.text();
                assoc_ok = false;
                continue;
            }
            // Success and the warnings (0xB000, 0xB006, 0xB007) mean the peer has it.
            if (rsp.DimseStatus != STATUS_Success && (rsp.DimseStatus & 0xF000) != 0xB000) {
                char buf[160];
                snprintf(buf, sizeof buf, ": the peer answered C-STORE status 0x%04x",
                         rsp.DimseStatus);
                f.st = RD_E_NET;
                f.error = f.path + buf;
            }
        }
        for (int i = 0; i < n_files; i++) {
            scu_file &f = items[static_cast<size_t>(i)];
            if (results)
                results[i] = f.st;
            if (f.st != RD_OK && first == RD_OK) {
                first = f.st;
                rd_error_set(err, f.st, "%s", f.error.c_str());
            }
        }
    } catch (const std::bad_alloc &) {
        first = rd_error_set(err, RD_E_NOMEM, "out of memory sending files");
    }
    if (assoc || net)
        close_association(&net, &assoc, &tls, assoc_ok);
    return first;
}
