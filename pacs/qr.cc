// radraft — query/retrieve from a PACS over DCMTK's DcmSCU (see radraft/qr.h).
#include "radraft/qr.h"

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "dcm_load.h"
#include "dcm_uid.h"
#include "dicom_shim.h"
#include "net_tls.h"
#include "radraft/limits.h"
#include "radraft/log.h"
#include "radraft/uid.h"

namespace
{

// Transfer syntaxes a C-GET accepts the instances in (the PACS picks one of them).
const char *const k_get_xfers[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax,
    UID_RLELosslessTransferSyntax,
};
// The storage classes of the studies radraft drafts and the reports it imports.
const char *const k_get_classes[] = {
    UID_ComputedRadiographyImageStorage,
    UID_DigitalXRayImageStorageForPresentation,
    UID_DigitalXRayImageStorageForProcessing,
    UID_SecondaryCaptureImageStorage,
    UID_BasicTextSRStorage,
    UID_EnhancedSRStorage,
    UID_ComprehensiveSRStorage,
    UID_Comprehensive3DSRStorage,
};

// The value of a string attribute with control characters shown as '?' and padding cut.
void copy_str(DcmItem *ds, const DcmTagKey &tag, char *out, size_t size)
{
    OFString v;
    out[0] = '\0';
    if (ds->findAndGetOFStringArray(tag, v).bad())
        return;
    std::string s(v.c_str());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0'))
        s.pop_back();
    for (char &c : s)
        if (static_cast<unsigned char>(c) < 0x20)
            c = '?';
    snprintf(out, size, "%s", s.c_str());
}

bool valid_date(const char *d)
{
    if (std::strlen(d) != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (d[i] < '0' || d[i] > '9')
            return false;
    int m = (d[4] - '0') * 10 + (d[5] - '0'), day = (d[6] - '0') * 10 + (d[7] - '0');
    return m >= 1 && m <= 12 && day >= 1 && day <= 31;
}

bool has(const char *s)
{
    return s && s[0];
}

// Does the backslash-separated list `have` name one of the modalities of `want`?
bool modality_match(const char *have, const char *want)
{
    if (!has(want))
        return true;
    if (!has(have))
        return true; // not returned: the PACS matched on it or cannot say
    std::string w(want), h(std::string("\\") + have + "\\");
    size_t start = 0;
    while (start <= w.size()) {
        size_t end = w.find('\\', start);
        std::string one =
            w.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!one.empty() && h.find("\\" + one + "\\") != std::string::npos)
            return true;
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    return false;
}

class QrScu : public DcmSCU
{
  public:
    // C-FIND
    const rd_qr_query *query = nullptr;
    rd_status (*on_match)(void *, const rd_qr_study *, rd_error *) = nullptr;
    void *ctx = nullptr;
    rd_qr_find_stats find_stats{};
    bool too_many = false, cancelled = false;
    rd_status cb_status = RD_OK;
    rd_error cb_err{};

    // C-GET
    std::string dir, want_study;
    int next_file = 0, received = 0, refused = 0;
    rd_status get_status = RD_OK;
    rd_error get_err{};

    OFCondition handleFINDResponse(const T_ASC_PresentationContextID presID, QRResponse *response,
                                   OFBool &waitForNextResponse) override
    {
        OFCondition c = DcmSCU::handleFINDResponse(presID, response, waitForNextResponse);
        if (c.bad() || !response || !response->m_dataset ||
            !DICOM_PENDING_STATUS(response->m_status) || cancelled)
            return c;
        DcmDataset *ds = response->m_dataset;
        rd_qr_study s;
        std::memset(&s, 0, sizeof s);
        std::string uid = raw_uid(ds, DCM_StudyInstanceUID);
        if (!rd_uid_valid(uid.c_str())) {
            find_stats.invalid++;
            return c;
        }
        snprintf(s.study_uid, sizeof s.study_uid, "%s", uid.c_str());
        copy_str(ds, DCM_StudyDate, s.study_date, sizeof s.study_date);
        if (!valid_date(s.study_date))
            s.study_date[0] = '\0';
        copy_str(ds, DCM_ModalitiesInStudy, s.modalities, sizeof s.modalities);
        copy_str(ds, DCM_StudyDescription, s.description, sizeof s.description);
        copy_str(ds, DCM_AccessionNumber, s.accession, sizeof s.accession);
        Sint32 n = -1;
        s.n_instances = ds->findAndGetSint32(DCM_NumberOfStudyRelatedInstances, n).good() &&
                                n >= 0 && n <= RD_STUDY_MAX_INSTANCES * 100
                            ? static_cast<int>(n)
                            : -1;
        // What the PACS may not have matched on: the date range and the modalities.
        const char *from = query->date_from, *to = query->date_to;
        if ((has(from) || has(to)) &&
            (!s.study_date[0] || (has(from) && std::strcmp(s.study_date, from) < 0) ||
             (has(to) && std::strcmp(s.study_date, to) > 0))) {
            find_stats.filtered++;
            return c;
        }
        if (!modality_match(s.modalities, query->modalities)) {
            find_stats.filtered++;
            return c;
        }
        if (query->max_matches > 0 && find_stats.matches >= query->max_matches) {
            too_many = true;
        } else if ((cb_status = on_match(ctx, &s, &cb_err)) == RD_OK) {
            find_stats.matches++;
            return c;
        }
        // Too many, or the caller failed: the rest is not wanted.
        cancelled = true;
        (void)sendCANCELRequest(presID);
        return c;
    }

    OFCondition use_tls(DcmTransportLayer *layer)
    {
        return useSecureConnection(layer);
    }

    // The file is named here, not after the UID the peer sent (DCMTK's bit-preserving
    // default joins that UID to the folder), then checked once received.
    OFCondition handleSTORERequestFile(T_ASC_PresentationContextID *presID,
                                       const OFString &filename,
                                       T_DIMSE_C_StoreRQ *request) override
    {
        (void)filename;
        char path[1200];
        snprintf(path, sizeof path, "%s/i%06d.dcm", dir.c_str(), ++next_file);
        OFCondition c = DcmSCU::handleSTORERequestFile(presID, path, request);
        if (c.bad()) {
            unlink(path);
            return c;
        }
        bool keep = rd_qr_check_instance(path, want_study.c_str(), NULL) == RD_OK;
        if (keep) {
            received++;
        } else {
            refused++;
            unlink(path);
        }
        return c;
    }
};

void set_up(QrScu &scu, const rd_net_peer *peer, const rd_net_scu_options *opts)
{
    // DcmSCU's narration (INFO on stderr) is silenced with the rest of dcmnet by rd_net_init.
    scu.setAETitle(has(opts->calling_ae) ? opts->calling_ae : "RADRAFT");
    scu.setPeerHostName(peer->host);
    scu.setPeerPort(static_cast<Uint16>(peer->port));
    scu.setPeerAETitle(peer->ae_title);
    scu.setMaxReceivePDULength(opts->max_pdu >= ASC_MINIMUMPDUSIZE &&
                                       opts->max_pdu <= ASC_MAXIMUMPDUSIZE
                                   ? static_cast<Uint32>(opts->max_pdu)
                                   : 116794);
    scu.setACSETimeout(static_cast<Uint32>(opts->acse_timeout > 0 ? opts->acse_timeout : 30));
    scu.setConnectionTimeout(opts->acse_timeout > 0 ? opts->acse_timeout : 30);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setDIMSETimeout(static_cast<Uint32>(opts->dimse_timeout > 0 ? opts->dimse_timeout : 60));
    scu.setVerbosePCMode(OFFalse);
}

// Opens the association; TLS as rd_net_send_files decides it. *tls is the caller's to free
// after the association is gone.
rd_status connect(QrScu &scu, const rd_net_peer *peer, const rd_net_scu_options *opts,
                  DcmTLSTransportLayer **tls, rd_error *err)
{
    *tls = NULL;
    const bool use_tls = peer->tls >= 0 ? peer->tls != 0 : opts->tls != 0;
    if (use_tls) {
        rd_status st = rd__net_make_tls_requestor(opts, tls, err);
        if (st != RD_OK)
            return st;
        if (scu.use_tls(*tls).bad())
            return rd_error_set(err, RD_E_NET, "cannot install the TLS layer");
    }
    OFCondition c = scu.initNetwork();
    if (c.good())
        c = scu.negotiateAssociation();
    if (c.bad())
        return rd_error_set(err, RD_E_NET, "cannot associate with %s@%s:%d: %s", peer->ae_title,
                            peer->host, peer->port, c.text());
    return RD_OK;
}

void disconnect(QrScu &scu, DcmTLSTransportLayer *tls, bool ok)
{
    if (scu.isConnected()) {
        if (ok)
            (void)scu.releaseAssociation();
        else
            (void)scu.abortAssociation();
    }
    delete tls;
}

// Opens the association and finds its accepted context for `sop_class`, the service named
// `service` in the message when the peer does not offer it. On failure the association is
// gone (and *tls freed) and *pc is 0.
rd_status open_service(QrScu &scu, const rd_net_peer *peer, const rd_net_scu_options *opts,
                       const char *sop_class, const char *service, DcmTLSTransportLayer **tls,
                       T_ASC_PresentationContextID *pc, rd_error *err)
{
    rd_status st;
    *pc = 0;
    if ((st = connect(scu, peer, opts, tls, err)) != RD_OK) {
        disconnect(scu, *tls, false);
        *tls = NULL;
        return st;
    }
    *pc = scu.findPresentationContextID(sop_class, "");
    if (*pc == 0) {
        disconnect(scu, *tls, true);
        *tls = NULL;
        return rd_error_set(err, RD_E_NET, "%s does not offer %s", peer->ae_title, service);
    }
    return RD_OK;
}

OFList<OFString> xfers_list(const char *const *xfers, size_t n)
{
    OFList<OFString> l;
    for (size_t i = 0; i < n; i++)
        l.push_back(xfers[i]);
    return l;
}

DcmDataset *study_keys(const char *study_uid)
{
    DcmDataset *ds = new DcmDataset;
    ds->putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    ds->putAndInsertString(DCM_StudyInstanceUID, study_uid);
    return ds;
}

// The final response of a C-GET or C-MOVE, as statuses and counts: success and warnings
// are RD_OK; "out of resources" (0xA7xx) may pass, so RD_E_NET (the retry policy tries
// again); a refused move destination is a configuration error; any other failure (0xA900,
// 0xCxxx) is final for this run, RD_E_DICOM. `destination`: the C-MOVE's, else NULL.
rd_status retrieve_outcome(const char *what, const rd_net_peer *peer, const char *destination,
                           OFList<RetrieveResponse *> &responses, rd_qr_retrieve_stats *stats,
                           rd_error *err)
{
    if (responses.empty())
        return rd_error_set(err, RD_E_NET, "%s from %s: no response", what, peer->ae_title);
    RetrieveResponse *last = responses.back();
    stats->completed = last->m_numberOfCompletedSubops;
    stats->failed = last->m_numberOfFailedSubops;
    stats->warning = last->m_numberOfWarningSubops;
    Uint16 s = last->m_status;
    if (s == STATUS_Success || (s & 0xF000) == 0xB000)
        return RD_OK;
    if (s == STATUS_MOVE_Failed_MoveDestinationUnknown)
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: %s does not know the move destination %s (status 0xa801): add "
                            "radraft's AE title, host and port to the PACS",
                            what, peer->ae_title, destination ? destination : "");
    char hint[200] = "";
    if (destination) // PACSs answer an unknown destination with 0xC000 too (Orthanc does)
        snprintf(hint, sizeof hint,
                 "; check that %s knows the move destination %s (radraft's AE title, host and "
                 "port)",
                 peer->ae_title, destination);
    return rd_error_set(err, (s & 0xFF00) == 0xA700 ? RD_E_NET : RD_E_DICOM,
                        "%s from %s: status 0x%04x (%d completed, %d failed)%s", what,
                        peer->ae_title, s, stats->completed, stats->failed, hint);
}

} // namespace

extern "C" rd_status
rd_qr_find_studies(const rd_net_peer *peer, const rd_net_scu_options *opts, const rd_qr_query *q,
                   rd_status (*on_match)(void *ctx, const rd_qr_study *s, rd_error *err), void *ctx,
                   rd_qr_find_stats *stats, rd_error *err)
{
    if (!peer || !opts || !q || !on_match)
        return rd_error_set(err, RD_E_INVALID, "C-FIND: missing arguments");
    rd_net_init();
    rd_status st = RD_OK;
    DcmTLSTransportLayer *tls = NULL;
    try {
        QrScu scu;
        set_up(scu, peer, opts);
        scu.query = q;
        scu.on_match = on_match;
        scu.ctx = ctx;
        OFList<OFString> ts = xfers_list(k_get_xfers, 2);
        scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, ts);
        T_ASC_PresentationContextID pc = 0;
        if ((st = open_service(scu, peer, opts, UID_FINDStudyRootQueryRetrieveInformationModel,
                               "Study Root C-FIND", &tls, &pc, err)) != RD_OK)
            return st;
        DcmDataset keys;
        std::string range = std::string(has(q->date_from) ? q->date_from : "") + "-" +
                            (has(q->date_to) ? q->date_to : "");
        keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
        keys.putAndInsertString(DCM_StudyInstanceUID, "");
        keys.putAndInsertString(DCM_StudyDate, range == "-" ? "" : range.c_str());
        keys.putAndInsertString(DCM_StudyTime, "");
        keys.putAndInsertString(DCM_ModalitiesInStudy, has(q->modalities) ? q->modalities : "");
        keys.putAndInsertString(DCM_StudyDescription, has(q->description) ? q->description : "");
        keys.putAndInsertString(DCM_AccessionNumber, "");
        keys.putAndInsertString(DCM_NumberOfStudyRelatedInstances, "");
        OFCondition c = scu.sendFINDRequest(pc, &keys, NULL);
        if (scu.cb_status != RD_OK) {
            st = scu.cb_status;
            if (err)
                *err = scu.cb_err;
        } else if (scu.too_many) {
            st = rd_error_set(err, RD_E_TOO_LARGE, "C-FIND at %s: more than %ld matches",
                              peer->ae_title, q->max_matches);
        } else if (c.bad()) {
            st = rd_error_set(err, RD_E_NET, "C-FIND at %s failed: %s", peer->ae_title, c.text());
        }
        if (stats)
            *stats = scu.find_stats;
        disconnect(scu, tls, c.good());
    } catch (const std::bad_alloc &) {
        delete tls;
        return rd_error_set(err, RD_E_NOMEM, "out of memory in C-FIND");
    }
    return st;
}

extern "C" rd_status rd_qr_check_instance(const char *path, const char *study_uid, rd_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return rd_error_set(err, RD_E_NOT_FOUND, "%s: not found", path);
    if (static_cast<unsigned long long>(sb.st_size) > RD_DICOM_MAX_FILE_BYTES)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: over %lld bytes", path,
                            RD_DICOM_MAX_FILE_BYTES);
    try {
        DcmFileFormat ff;
        E_TransferSyntax xfer = EXS_Unknown;
        unsigned long long size = 0;
        rd_status st = rd__dcm_load_file(ff, path, true, 4096, &xfer, &size, err);
        if (st != RD_OK)
            return rd_error_prefix(err, st, "%s", path);
        DcmDataset *ds = ff.getDataset();
        std::string study = raw_uid(ds, DCM_StudyInstanceUID);
        if (study != study_uid)
            return rd_error_set(err, RD_E_INVALID, "%s: of study %.80s, not %s", path,
                                study.c_str(), study_uid);
        if (!rd_uid_valid(raw_uid(ds, DCM_SeriesInstanceUID).c_str()) ||
            !rd_uid_valid(raw_uid(ds, DCM_SOPInstanceUID).c_str()))
            return rd_error_set(err, RD_E_INVALID, "%s: an invalid series or SOP Instance UID",
                                path);
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory reading %s", path);
    }
    return RD_OK;
}

extern "C" rd_status rd_qr_get_study(const rd_net_peer *peer, const rd_net_scu_options *opts,
                                     const char *study_uid, const char *dir,
                                     rd_qr_retrieve_stats *stats, rd_error *err)
{
    rd_qr_retrieve_stats unused;
    if (!stats)
        stats = &unused;
    std::memset(stats, 0, sizeof *stats);
    if (!peer || !opts || !dir || !study_uid || !rd_uid_valid(study_uid))
        return rd_error_set(err, RD_E_INVALID, "C-GET: a valid study UID and a folder are needed");
    rd_net_init();
    rd_status st = RD_OK;
    DcmTLSTransportLayer *tls = NULL;
    try {
        QrScu scu;
        set_up(scu, peer, opts);
        scu.dir = dir;
        scu.want_study = study_uid;
        scu.setStorageMode(DCMSCU_STORAGE_BIT_PRESERVING);
        scu.setStorageDir(dir);
        OFList<OFString> ts = xfers_list(k_get_xfers, 2);
        scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, ts);
        // One context per storage class and transfer syntax, so that the PACS can send each
        // instance as it holds it (with one context listing every syntax it must pick one,
        // and a PACS without the codec then fails to convert).
        for (const char *cls : k_get_classes)
            for (const char *x : k_get_xfers)
                scu.addPresentationContext(cls, xfers_list(&x, 1), ASC_SC_ROLE_SCP);
        T_ASC_PresentationContextID pc = 0;
        if ((st = open_service(scu, peer, opts, UID_GETStudyRootQueryRetrieveInformationModel,
                               "Study Root C-GET", &tls, &pc, err)) != RD_OK)
            return st;
        DcmDataset *keys = study_keys(study_uid);
        OFList<RetrieveResponse *> responses;
        OFCondition c = scu.sendCGETRequest(pc, keys, &responses);
        delete keys;
        stats->received = scu.received;
        stats->refused = scu.refused;
        if (c.bad())
            st = rd_error_set(err, RD_E_NET, "C-GET of study %s from %s: %s", study_uid,
                              peer->ae_title, c.text());
        else
            st = retrieve_outcome("C-GET", peer, NULL, responses, stats, err);
        if (st == RD_OK && scu.received == 0)
            st = rd_error_set(err, RD_E_NOT_FOUND,
                              "C-GET of study %s from %s: no instance kept "
                              "(%d refused)",
                              study_uid, peer->ae_title, scu.refused);
        for (auto *r : responses)
            delete r;
        disconnect(scu, tls, c.good());
    } catch (const std::bad_alloc &) {
        delete tls;
        return rd_error_set(err, RD_E_NOMEM, "out of memory in C-GET");
    }
    return st;
}

extern "C" rd_status rd_qr_move_study(const rd_net_peer *peer, const rd_net_scu_options *opts,
                                      const char *study_uid, const char *destination,
                                      rd_qr_retrieve_stats *stats, rd_error *err)
{
    rd_qr_retrieve_stats unused;
    if (!stats)
        stats = &unused;
    std::memset(stats, 0, sizeof *stats);
    if (!peer || !opts || !study_uid || !rd_uid_valid(study_uid) || !has(destination) ||
        std::strlen(destination) > RD_NET_AE_MAX)
        return rd_error_set(err, RD_E_INVALID,
                            "C-MOVE: a valid study UID and a destination AE are needed");
    rd_net_init();
    rd_status st = RD_OK;
    DcmTLSTransportLayer *tls = NULL;
    try {
        QrScu scu;
        set_up(scu, peer, opts);
        OFList<OFString> ts = xfers_list(k_get_xfers, 2);
        scu.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel, ts);
        T_ASC_PresentationContextID pc = 0;
        if ((st = open_service(scu, peer, opts, UID_MOVEStudyRootQueryRetrieveInformationModel,
                               "Study Root C-MOVE", &tls, &pc, err)) != RD_OK)
            return st;
        DcmDataset *keys = study_keys(study_uid);
        OFList<RetrieveResponse *> responses;
        OFCondition c = scu.sendMOVERequest(pc, destination, keys, &responses);
        delete keys;
        if (c.bad())
            st = rd_error_set(err, RD_E_NET, "C-MOVE of study %s from %s: %s", study_uid,
                              peer->ae_title, c.text());
        else
            st = retrieve_outcome("C-MOVE", peer, destination, responses, stats, err);
        for (auto *r : responses)
            delete r;
        disconnect(scu, tls, c.good());
    } catch (const std::bad_alloc &) {
        delete tls;
        return rd_error_set(err, RD_E_NOMEM, "out of memory in C-MOVE");
    }
    return st;
}
