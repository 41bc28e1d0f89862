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
#include <dcmtk/oflog/oflog.h>
#include <zlib.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iterator>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dcm_load.h"
#include "dcm_uid.h"
#include "net_int.h"
#include "net_tls.h"
#include "radraft/log.h"
#include "radraft/uid.h"

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
std::once_flag g_skip_verify_warned;

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

// The largest dataset the listener takes in; the bytes of a larger one are read and dropped,
// and it is refused (0xA700).
const size_t k_max_dataset = static_cast<size_t>(2047) << 20;

// What one association may buffer of a dataset before writing it to its spool file.
const size_t k_spool_buffer = static_cast<size_t>(256) << 10;

// A DcmConsumer that writes to the spool file through a bounded buffer: DCMTK streams the
// received PDV bytes into it untouched, so that the stored dataset is exactly what the peer
// sent. It never refuses bytes (a failed receive would leave the association out of step):
// after a write error, or past k_max_dataset, it drops them and says so afterwards.
class SpoolConsumer : public DcmConsumer
{
  public:
    explicit SpoolConsumer(int fd) : fd_(fd)
    {
        buf_.reserve(k_spool_buffer);
    }
    OFBool good() const override
    {
        return OFTrue;
    }
    OFCondition status() const override
    {
        return EC_Normal;
    }
    OFBool isFlushed() const override
    {
        return buf_.empty();
    }
    offile_off_t avail() const override
    {
        return 1 << 30;
    }
    offile_off_t write(const void *data, offile_off_t len) override
    {
        if (len <= 0)
            return 0;
        size_t n = static_cast<size_t>(len);
        if (n > k_max_dataset - total_)
            too_large_ = true;
        else
            total_ += n;
        if (fd_ < 0 || errno_ != 0 || too_large_)
            return len;
        const unsigned char *p = static_cast<const unsigned char *>(data);
        while (n > 0) {
            size_t take = std::min(n, k_spool_buffer - buf_.size());
            buf_.insert(buf_.end(), p, p + take);
            p += take;
            n -= take;
            if (buf_.size() == k_spool_buffer)
                flush();
        }
        return len;
    }
    void flush() override
    {
        size_t done = 0;
        while (fd_ >= 0 && errno_ == 0 && done < buf_.size()) {
            ssize_t w = ::write(fd_, buf_.data() + done, buf_.size() - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                errno_ = w < 0 ? errno : EIO;
            else
                done += static_cast<size_t>(w);
        }
        // The disk starts writing what is written while the rest is still arriving, so that
        // the sync before the response waits for the last part only. A hint: its failure is
        // ignored (the sync reports a write error).
        if (fd_ >= 0 && errno_ == 0 && done > 0)
            (void)sync_file_range(fd_, static_cast<off64_t>(written_), static_cast<off64_t>(done),
                                  SYNC_FILE_RANGE_WRITE);
        written_ += done;
        buf_.clear();
    }
    size_t total() const
    {
        return total_;
    }
    bool too_large() const
    {
        return too_large_;
    }
    int error() const
    {
        return errno_;
    }

  private:
    int fd_;
    std::vector<unsigned char> buf_;
    size_t written_ = 0; // bytes written to fd_ (sync_file_range's offset)
    size_t total_ = 0;
    bool too_large_ = false;
    int errno_ = 0;
};

class ConsumerStream : public DcmOutputStream
{
  public:
    explicit ConsumerStream(DcmConsumer *consumer) : DcmOutputStream(consumer) {}
};

// The size a raw-deflated dataset (PS3.5 A.5) in `path` from `offset` on inflates to,
// counted by inflating it through a small buffer, stopping once it exceeds `limit`.
// Returns false with `why` when the stream cannot be read or inflated.
bool inflated_size(const char *path, size_t offset, size_t limit, size_t *out, std::string &why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
        why = strerror(errno);
        if (fd >= 0)
            close(fd);
        return false;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) {
        close(fd);
        why = "zlib cannot start";
        return false;
    }
    std::vector<unsigned char> in(1 << 16), outbuf(1 << 18);
    int rc = Z_OK;
    size_t total = 0;
    bool ok = true;
    while (rc != Z_STREAM_END && total <= limit) {
        ssize_t n = read(fd, in.data(), in.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; // the end of the file: a truncated stream inflates to what it holds
        z.next_in = in.data();
        z.avail_in = static_cast<uInt>(n);
        do {
            z.next_out = outbuf.data();
            z.avail_out = static_cast<uInt>(outbuf.size());
            rc = inflate(&z, Z_NO_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
                why = z.msg ? z.msg : "not a deflate stream";
                ok = false;
                break;
            }
            total += outbuf.size() - z.avail_out;
        } while (ok && rc != Z_STREAM_END && z.avail_out == 0 && total <= limit);
        if (!ok)
            break;
    }
    inflateEnd(&z);
    close(fd);
    *out = total;
    return ok;
}

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

// The system's trusted CAs (Debian's ca-certificates, hashed for OpenSSL): whom a peer's
// certificate must chain to when no CA file is configured.
const char k_system_ca_dir[] = "/etc/ssl/certs";

// Handing an accepted socket to DCMTK. DCMTK takes the socket of a new association from a
// process-wide setting (dcmExternalSocketHandle, meant for inetd) that it reads when it
// creates the network and once at the start of each association request, then hands the
// socket to its transport layer's createConnection. A connection thread holds g_handoff from
// setting the socket until that call, which releases it: no two threads' sockets mix, and
// the lock is never held across a read from the network (the TLS handshake and the request
// itself are read after it), so a slow peer holds only its own thread.
std::mutex g_handoff;
thread_local bool t_handoff_held = false; // this thread holds g_handoff
thread_local bool t_socket_taken = false; // DCMTK's createConnection got this thread's socket

void handoff_release()
{
    if (t_handoff_held) {
        dcmExternalSocketHandle.set(-1);
        t_handoff_held = false;
        g_handoff.unlock();
    }
}

// Bounds on what a peer sends that DCMTK does not bound itself. DCMTK parses a DIMSE
// command set from its PDVs and allocates each element's value at the length its header
// claims before the bytes are there (a C-ECHO whose command claimed a 4 GiB element made it
// allocate 4 GiB; found by tests/fuzz/fuzz_net). Command elements are UIDs, AE titles and
// numbers, so 64 KiB is far above any, and 1 MiB above any command set; a PDU other than
// P-DATA (an association request, a release, an abort) is at most 1 MiB, a P-DATA PDU at
// most 16 MiB (radraft announces at most 128 KiB: ASC_MAXIMUMPDUSIZE).
const uint32_t k_max_command_element = 64u << 10;
const size_t k_max_command_set = static_cast<size_t>(1) << 20;
const uint32_t k_max_control_pdu = 1u << 20;
const uint32_t k_max_data_pdu = 16u << 20;

uint32_t be32(const unsigned char *p)
{
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

uint32_t le32(const unsigned char *p)
{
    return (static_cast<uint32_t>(p[3]) << 24) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[1]) << 8) | p[0];
}

uint16_t be16(const unsigned char *p)
{
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

// Whether the items of `len` bytes at `p` (type, reserved, 2-byte length, value: PS3.8
// 9.3.2) each fit in what holds them; `check(type, value, length)` judges each one's value.
template <class F> bool items_fit(const unsigned char *p, size_t len, F check)
{
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 4)
            return false;
        size_t n = be16(p + pos + 2);
        if (n > len - pos - 4 || !check(p[pos], p + pos + 4, n))
            return false;
        pos += 4 + n;
    }
    return true;
}

// Whether the body of an A-ASSOCIATE-RQ (`request`) or -AC PDU is well formed as DCMTK's
// parser (dulparse.cc) needs it: every item and sub-item within what holds it, UIDs at most
// 64 bytes, presentation contexts of the PDU's kind with a transfer syntax each (one in an
// accepted one), a
// Maximum Length item of 4 bytes, the lengths inside role selection, extended negotiation
// and user identity items within theirs, at most 128 presentation contexts.
// DCMTK loses what it has parsed when it refuses a request (its lists and every item so
// far: a request of many small presentation contexts and one bad item leaked megabytes;
// found by tests/fuzz/fuzz_net), and it trusts a Maximum Length item's length, so such a
// request ends the connection before DCMTK reads it.
bool associate_ok(const unsigned char *b, size_t n, bool request)
{
    int contexts = 0;
    if (n < 68 || !(be16(b) & 1)) // protocol version, reserved, AE titles, reserved
        return false;
    auto user_item = [request](unsigned type, const unsigned char *v, size_t len) {
        switch (type) {
        case 0x51: // maximum length
            return len == 4;
        case 0x52: // implementation class UID
        case 0x55: // implementation version name
            return len <= 64;
        case 0x54: // SCP/SCU role selection
            return len >= 4 && be16(v) <= len - 4;
        case 0x56: // SOP class extended negotiation
            return len >= 2 && be16(v) <= len - 2;
        case 0x58: // user identity (DCMTK reads either by the PDU's type)
        case 0x59:
            if (!request)
                return len >= 2 && be16(v) <= len - 2;
            if (len < 6 || be16(v + 2) > len - 6)
                return false;
            return be16(v + 4 + be16(v + 2)) <= len - 6 - be16(v + 2);
        default:
            return true;
        }
    };
    return items_fit(b + 68, n - 68, [&](unsigned type, const unsigned char *v, size_t len) {
        switch (type) {
        case 0x10: // application context
            return len <= 64;
        case 0x20: // presentation context (an -RQ's, 0x20; an -AC's, 0x21): DCMTK wants one
        case 0x21: // transfer syntax or more, and an accepted one exactly one
        {
            int syntaxes = 0;
            auto sub_item = [&syntaxes](unsigned sub, const unsigned char *, size_t sub_len) {
                syntaxes += sub == 0x40;
                return (sub != 0x30 && sub != 0x40) || sub_len <= 64;
            };
            if ((type == 0x20) != request || len < 4 || ++contexts > 128 ||
                !items_fit(v + 4, len - 4, sub_item))
                return false;
            return request ? syntaxes > 0 : v[2] != 0 || syntaxes == 1;
        }
        case 0x50: // user information
            return items_fit(v, len, user_item);
        default:
            return true;
        }
    });
}

// Follows the bytes a peer sends (PS3.8 9.3: PDUs; in P-DATA-TF PDUs, PDV items; in what
// DCMTK reads as a command set, its elements, Implicit VR Little Endian) and says when one
// is over the bounds above. DCMTK's DIMSE_receiveCommand parses every PDV it gets as
// command bytes, whatever the PDV says it is, until a last fragment (a data PDV where a
// command is due is parsed before it is refused: found by tests/fuzz/fuzz_net); so every
// PDV is followed as a command but those of a C-STORE-RQ's dataset, which radraft reads as
// data. It only reads the lengths: whatever else is wrong with the stream is DCMTK's to
// refuse.
class PeerStreamBounds
{
  public:
    // False when the bytes go over a bound; why() then says which.
    bool feed(const unsigned char *p, size_t n)
    {
        while (n > 0) {
            if (pdu_have_ < 6) {
                pdu_hdr_[pdu_have_++] = *p++;
                n--;
                if (pdu_have_ == 6 && !start_pdu())
                    return false;
                continue;
            }
            size_t k = std::min(n, static_cast<size_t>(pdu_left_));
            if (pdu_hdr_[0] == 0x04) {
                size_t used = 0;
                if (!feed_pdv(p, k, &used))
                    return false;
                k = used;
            } else if (associate()) {
                assoc_.insert(assoc_.end(), p, p + k);
            }
            p += k;
            n -= k;
            pdu_left_ -= static_cast<uint32_t>(k);
            if (pdu_left_ == 0) {
                pdu_have_ = item_have_ = 0;
                if (associate()) {
                    bool ok = associate_ok(assoc_.data(), assoc_.size(), pdu_hdr_[0] == 0x01);
                    std::vector<unsigned char>().swap(assoc_);
                    if (!ok)
                        return refuse("a malformed association PDU");
                }
            }
        }
        return true;
    }

    const char *why() const
    {
        return why_;
    }

  private:
    bool refuse(const char *why)
    {
        why_ = why;
        return false;
    }

    // An A-ASSOCIATE-RQ or -AC: its body is kept until it is whole, then checked.
    bool associate() const
    {
        return pdu_hdr_[0] == 0x01 || pdu_hdr_[0] == 0x02;
    }

    bool start_pdu()
    {
        pdu_left_ = be32(pdu_hdr_ + 2);
        // A PDU type DCMTK does not know (PS3.8 9.3: 1 to 7) it refuses by its header.
        if (pdu_hdr_[0] >= 1 && pdu_hdr_[0] <= 7 &&
            pdu_left_ > (pdu_hdr_[0] == 0x04 ? k_max_data_pdu : k_max_control_pdu))
            return refuse(pdu_hdr_[0] == 0x04 ? "a P-DATA PDU over 16 MiB"
                                              : "a PDU other than P-DATA over 1 MiB");
        if (pdu_left_ == 0) {
            pdu_have_ = 0;
            if (associate() && !associate_ok(nullptr, 0, true))
                return refuse("a malformed association PDU");
        }
        return true;
    }

    // Up to `n` bytes of a P-DATA-TF body; *used: how many were taken (a PDV item header
    // byte at a time, a fragment in one go).
    bool feed_pdv(const unsigned char *p, size_t n, size_t *used)
    {
        if (item_have_ < 6) {
            item_hdr_[item_have_++] = *p;
            *used = 1;
            if (item_have_ == 6) {
                uint32_t len = be32(item_hdr_);
                item_left_ = len >= 2 ? len - 2 : 0;
                if (item_left_ == 0)
                    end_item();
            }
            return true;
        }
        size_t k = std::min(n, static_cast<size_t>(item_left_));
        *used = k;
        if (!in_data_ && !feed_command(p, k))
            return false;
        item_left_ -= static_cast<uint32_t>(k);
        if (item_left_ == 0)
            end_item();
        return true;
    }

    void end_item()
    {
        const bool command = item_hdr_[5] & 1, last = item_hdr_[5] & 2;
        item_have_ = 0;
        if (in_data_) {
            in_data_ = !(last && !command); // until the dataset's last fragment
            return;
        }
        if (!last)
            return;
        // What DCMTK took for a command set is whole. A C-STORE-RQ's dataset follows (radraft
        // reads it whatever the command's Data Set Type says, and DCMTK reads it as data);
        // after any other command the next PDV is read as a command again.
        in_data_ = command && command_field_ == 0x0001;
        el_have_ = el_left_ = 0;
        cmd_bytes_ = 0;
        command_field_ = 0;
    }

    bool feed_command(const unsigned char *p, size_t n)
    {
        cmd_bytes_ += n;
        if (cmd_bytes_ > k_max_command_set)
            return refuse("a DIMSE command set over 1 MiB");
        while (n > 0) {
            if (el_have_ < 8) {
                el_hdr_[el_have_++] = *p++;
                n--;
                if (el_have_ == 8) {
                    el_left_ = le32(el_hdr_ + 4);
                    if (el_left_ > k_max_command_element)
                        return refuse("a DIMSE command element over 64 KiB");
                    // (0000,0100) Command Field, US: which command this is.
                    el_is_field_ = le32(el_hdr_) == 0x01000000u && el_left_ == 2;
                    if (el_left_ == 0)
                        el_have_ = 0;
                }
                continue;
            }
            size_t k = std::min(n, static_cast<size_t>(el_left_));
            for (size_t i = 0; el_is_field_ && i < k; i++)
                command_field_ = static_cast<uint16_t>((command_field_ >> 8) | (p[i] << 8));
            p += k;
            n -= k;
            el_left_ -= static_cast<uint32_t>(k);
            if (el_left_ == 0)
                el_have_ = 0;
        }
        return true;
    }

    unsigned char pdu_hdr_[6] = {};
    size_t pdu_have_ = 0;
    uint32_t pdu_left_ = 0;
    unsigned char item_hdr_[6] = {};
    size_t item_have_ = 0;
    uint32_t item_left_ = 0;
    unsigned char el_hdr_[8] = {};
    size_t el_have_ = 0;
    uint32_t el_left_ = 0;
    bool el_is_field_ = false;
    size_t cmd_bytes_ = 0;
    uint16_t command_field_ = 0;
    bool in_data_ = false; // receiving a C-STORE-RQ's dataset: its PDVs are not a command
    std::vector<unsigned char> assoc_;
    const char *why_ = "";
};

// Why this thread's connection was closed for going over a bound (NULL: it was not), for
// the log lines of the listener, which know the peer.
thread_local const char *t_bound_refusal = nullptr;

// A transport connection (plain TCP or TLS) whose incoming bytes are checked against the
// bounds above before DCMTK parses them: over a bound, a read fails (EMSGSIZE), which DCMTK
// takes as the connection breaking off, and the association ends.
class BoundedConnection : public DcmTransportConnection
{
  public:
    BoundedConnection(DcmNativeSocketType sock, DcmTransportConnection *inner)
        : DcmTransportConnection(sock), inner_(inner)
    {
    }
    ~BoundedConnection() override
    {
        delete inner_;
    }
    OFCondition serverSideHandshake() override
    {
        return inner_->serverSideHandshake();
    }
    OFCondition clientSideHandshake() override
    {
        return inner_->clientSideHandshake();
    }
    OFCondition renegotiate(const char *suite) override
    {
        return inner_->renegotiate(suite);
    }
    ssize_t read(void *buf, size_t nbyte) override
    {
        if (over_) {
            errno = EMSGSIZE;
            return -1;
        }
        ssize_t n = inner_->read(buf, nbyte);
        bool ok = true;
        try {
            ok = n <= 0 ||
                 bounds_.feed(static_cast<const unsigned char *>(buf), static_cast<size_t>(n));
        } catch (const std::bad_alloc &) {
            ok = false; // no room to check the request: it is not read (why() is "")
        }
        if (!ok) {
            over_ = true;
            t_bound_refusal = bounds_.why()[0] ? bounds_.why() : "no memory to check its bytes";
            errno = EMSGSIZE;
            return -1;
        }
        return n;
    }
    ssize_t write(void *buf, size_t nbyte) override
    {
        return inner_->write(buf, nbyte);
    }
    void close() override
    {
        inner_->close();
        setSocket(-1);
    }
    void closeTransportConnection() override
    {
        inner_->closeTransportConnection();
    }
    unsigned long getPeerCertificateLength() override
    {
        return inner_->getPeerCertificateLength();
    }
    unsigned long getPeerCertificate(void *buf, unsigned long len) override
    {
        return inner_->getPeerCertificate(buf, len);
    }
    OFBool networkDataAvailable(int timeout) override
    {
        return inner_->networkDataAvailable(timeout);
    }
    OFBool isTransparentConnection() override
    {
        return inner_->isTransparentConnection();
    }
    using DcmTransportConnection::dumpConnectionParameters;
    OFString &dumpConnectionParameters(OFString &str) override
    {
        return inner_->dumpConnectionParameters(str);
    }

  private:
    DcmTransportConnection *inner_;
    PeerStreamBounds bounds_;
    bool over_ = false;
};

// A transport layer (plain TCP or TLS) that releases the hand-off when DCMTK gives it the
// socket, and bounds what the peer sends (BoundedConnection), listener and sender alike.
template <class Base> class HandoffLayer : public Base
{
  public:
    using Base::Base;
    DcmTransportConnection *createConnection(DcmNativeSocketType sock, OFBool secure) override
    {
        t_socket_taken = true;
        handoff_release();
        DcmTransportConnection *inner = Base::createConnection(sock, secure);
        if (!inner)
            return NULL;
        DcmTransportConnection *c = new (std::nothrow) BoundedConnection(sock, inner);
        if (!c)
            delete inner;
        return c;
    }
};

// A TLS layer for `role` with the given PEM files (each may be NULL or ""): the BCP 195
// profile (TLS 1.2+, strong ciphers). With `verify` the peer must present a certificate
// that chains to a CA of the CA file, or of the system store when there is none (the
// certificate chain is checked, not the host name: DICOM peers are known by AE title and
// certificate); without it any certificate or none is accepted. On failure *out is NULL
// and `err` says why.
rd_status make_tls(T_ASC_NetworkRole role, const char *cert, const char *key, const char *ca,
                   bool verify, DcmTLSTransportLayer **out, rd_error *err)
{
    DcmTLSTransportLayer *tls = NULL;
    OFCondition cond;
    *out = NULL;
    try {
        tls = new HandoffLayer<DcmTLSTransportLayer>(role, NULL, OFTrue);
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the TLS layer");
    }
    tls->setCertificateVerification(verify ? DCV_requireCertificate : DCV_ignoreCertificate);
    if (verify && has(ca) && (cond = tls->addTrustedCertificateFile(ca, DCF_Filetype_PEM)).bad())
        goto fail;
    if (verify && !has(ca) &&
        (cond = tls->addTrustedCertificateDir(k_system_ca_dir, DCF_Filetype_PEM)).bad())
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
                        has(cert) ? cert : "-", has(key) ? key : "-",
                        has(ca) ? ca : (verify ? k_system_ca_dir : "-"), cond.text());
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

// A connection whose association request is still being read.
struct pending_conn {
    int fd;           // radraft's descriptor of the socket (DCMTK works on a duplicate)
    std::string peer; // IPv4 address
    std::chrono::steady_clock::time_point deadline;
    bool cut = false; // shut down for being too slow (or for the listener's stop)
};

struct rd_net_scp {
    rd_net_scp_options opts;
    std::string bind_address;
    std::vector<std::string> allowed;
    rd_net_handlers handlers;
    int listen_fd = -1;
    DcmTLSTransportLayer *tls = NULL;              // the listener's layer with TLS...
    HandoffLayer<DcmTransportLayer> *plain = NULL; // ...or without
    std::thread accept_thread;
    std::atomic<bool> stopping{false};
    std::mutex mu;                   // guards active, pending, threads
    std::condition_variable cv;      // signalled when a connection thread ends
    long active = 0;                 // associations negotiated and being served
    std::list<pending_conn> pending; // being read by their threads
    std::list<pending_conn> waiting; // accepted, waiting for their peer to be under the limit
    int wake_fd = -1;                // eventfd: a connection left `pending`
    long threads = 0;                // connection threads running
    std::atomic<long> n_assoc{0}, n_rejected{0}, n_stored{0}, n_failed{0}, n_cut{0};
    long long mem_budget = 0;                           // server.receive_memory_mb, in bytes
    std::atomic<long long> mem_used{0};                 // reserved by associations and inflations
    std::chrono::steady_clock::time_point cut_window{}; // this second of cut warnings
    long cut_logged = 0, cut_unlogged = 0;
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
        // DCMTK would print its own messages on stderr for whatever a peer sends wrong (a
        // line per malformed element, and a line per received instance where the bounded
        // loader reads the meta header alone: "skipping rest of dataset"); every failure
        // comes back as a condition, which the listener, the senders and query/retrieve log
        // with the peer's name.
        static const char *const loggers[] = {"dcmtk.dcmdata", "dcmtk.dcmnet"};
        for (const char *name : loggers)
            OFLog::getLogger(name).setLogLevel(OFLogger::FATAL_LOG_LEVEL);
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
    opts->bind_address = cfg->server_bind;
    copy_text(opts->ae_title, cfg->server_ae_title, sizeof opts->ae_title);
    opts->check_called_ae = cfg->server_check_called_ae;
    opts->allowed_calling_aes = &cfg->server_allowed_calling_aes;
    opts->max_associations = cfg->server_max_associations;
    opts->max_pdu = cfg->server_max_pdu;
    opts->acse_timeout = cfg->server_acse_timeout;
    opts->dimse_timeout = cfg->server_dimse_timeout;
    opts->idle_timeout = cfg->server_idle_timeout;
    opts->request_timeout = cfg->server_request_timeout;
    opts->max_pending_per_peer = cfg->server_max_pending_per_peer;
    opts->max_inflated_mb = cfg->server_max_inflated_mb;
    opts->max_inflate_ratio = cfg->server_max_inflate_ratio;
    opts->receive_memory_mb = cfg->server_receive_memory_mb;
    opts->tls_certificate = cfg->server_tls_certificate;
    opts->tls_private_key = cfg->server_tls_private_key;
    opts->tls_ca_file = cfg->server_tls_ca_certificates;
    opts->tls_skip_verify = !cfg->server_tls_verify_peer;
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
    opts->tls_skip_verify = !cfg->server_tls_verify_peer;
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

// Reserves `bytes` of the receive memory budget; false when they do not fit.
bool reserve(rd_net_scp *scp, long long bytes)
{
    long long used = scp->mem_used.load();
    do {
        if (used + bytes > scp->mem_budget)
            return false;
    } while (!scp->mem_used.compare_exchange_weak(used, used + bytes));
    return true;
}

void release(rd_net_scp *scp, long long bytes)
{
    scp->mem_used -= bytes;
}

// Checks a received dataset, spooled in `path` (meta header, then the dataset from
// `ds_offset` on): a deflated one must inflate within the limits and the budget; the whole
// must parse; its UIDs, read as sent, must be valid and match the request. Fills the UIDs.
rd_status check_dataset(rd_net_scp *scp, const char *path, size_t size, size_t ds_offset,
                        E_TransferSyntax xfer, const T_DIMSE_C_StoreRQ *req, std::string uids[4],
                        std::string &modality, rd_error *err)
{
    long long reserved = 0;
    if (xfer == EXS_DeflatedLittleEndianExplicit) {
        const size_t max = static_cast<size_t>(scp->opts.max_inflated_mb) << 20;
        const size_t on_wire = size - ds_offset;
        size_t inflated = 0;
        std::string why;
        if (!inflated_size(path, ds_offset, max, &inflated, why))
            return rd_error_set(err, RD_E_DICOM, "the deflated dataset cannot be inflated: %s",
                                why.c_str());
        if (inflated > max)
            return rd_error_set(err, RD_E_TOO_LARGE,
                                "the deflated dataset (%zu bytes) inflates to more than %d MiB "
                                "(server.max_inflated_mb)",
                                on_wire, scp->opts.max_inflated_mb);
        if (inflated > (static_cast<size_t>(16) << 20) &&
            inflated / (on_wire ? on_wire : 1) > static_cast<size_t>(scp->opts.max_inflate_ratio))
            return rd_error_set(err, RD_E_TOO_LARGE,
                                "the deflated dataset (%zu bytes) inflates %zu times, to %zu "
                                "bytes (server.max_inflate_ratio %d)",
                                on_wire, inflated / (on_wire ? on_wire : 1), inflated,
                                scp->opts.max_inflate_ratio);
        // DCMTK holds an inflated dataset in memory while it parses it.
        reserved = static_cast<long long>(inflated);
        if (!reserve(scp, reserved))
            return rd_error_set(err, RD_E_NOMEM,
                                "no room in the receive memory budget to parse %zu inflated "
                                "bytes (server.receive_memory_mb %d)",
                                inflated, scp->opts.receive_memory_mb);
    }
    rd_status st = RD_OK;
    {
        // Values over 4 KiB stay in the file (DCMTK reads them only when asked): parsing
        // costs memory for the attributes, not for the pixel data. Every length is checked
        // against the data before DCMTK allocates it (pacs/dcm_load.h).
        DcmFileFormat ff;
        E_TransferSyntax file_xfer = EXS_Unknown;
        unsigned long long data_size = 0;
        st = rd__dcm_load_file(ff, path, true, 4096, &file_xfer, &data_size, err);
        DcmDataset *ds = ff.getDataset();
        if (st != RD_OK) {
            rd_error_prefix(err, st, "the dataset cannot be parsed");
        } else {
            static const char *const names[4] = {"SOP Class UID", "SOP Instance UID",
                                                 "Study Instance UID", "Series Instance UID"};
            static const DcmTagKey tags[4] = {DCM_SOPClassUID, DCM_SOPInstanceUID,
                                              DCM_StudyInstanceUID, DCM_SeriesInstanceUID};
            // The UIDs as sent: a malformed one is refused, never repaired into another
            // instance's UID.
            for (int i = 0; i < 4; i++)
                uids[i] = raw_uid(ds, tags[i]);
            modality = get_string(ds, DCM_Modality);
            for (int i = 0; i < 4 && st == RD_OK; i++)
                if (uids[i].empty())
                    st = rd_error_set(err, RD_E_INVALID, "the dataset has no %s", names[i]);
                else if (!rd_uid_valid(uids[i].c_str()))
                    st = rd_error_set(err, RD_E_DICOM,
                                      "the dataset's %s '%.70s' is not a valid UID (1 to 64 "
                                      "digits and dots, no empty component, no leading zero, "
                                      "no padding but one NUL)",
                                      names[i], uids[i].c_str());
            if (st == RD_OK &&
                (uids[1] != req->AffectedSOPInstanceUID || uids[0] != req->AffectedSOPClassUID))
                st = rd_error_set(err, RD_E_INVALID,
                                  "the dataset's SOP Class/Instance UID differ from the request's");
        }
    }
    if (reserved)
        release(scp, reserved);
    return st;
}

// Receives one C-STORE dataset into a spool file, checks it, stores it through the callback
// and answers. Returns false when the association cannot go on (it has been aborted then).
bool handle_store(rd_net_scp *scp, T_ASC_Association *assoc, void *actx,
                  T_ASC_PresentationContextID pres_id, T_DIMSE_C_StoreRQ *req, const char *calling,
                  const char *peer)
{
    rd_error err;
    rd_error_clear(&err);
    rd_status st = RD_OK;
    std::string uids[4], modality, xfer_uid; // SOP class, SOP instance, study, series
    std::vector<unsigned char> meta;
    char spool[4096] = "";
    int fd = -1;
    T_ASC_PresentationContext pc;
    E_TransferSyntax xfer = EXS_Unknown;
    OFCondition cond = EC_Normal;

    if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).good()) {
        xfer_uid = pc.acceptedTransferSyntax;
        xfer = DcmXfer(pc.acceptedTransferSyntax).getXfer();
    }
    try {
        if (xfer != EXS_Unknown)
            cond = write_meta(req->AffectedSOPClassUID, req->AffectedSOPInstanceUID, xfer, calling,
                              meta);
    } catch (const std::bad_alloc &) {
        cond = EC_MemoryExhausted;
    }
    if (xfer == EXS_Unknown)
        st = rd_error_set(&err, RD_E_INTERNAL, "unknown transfer syntax of context %d",
                          static_cast<int>(pres_id));
    else if (cond.bad())
        st = rd_error_set(&err, cond == EC_MemoryExhausted ? RD_E_NOMEM : RD_E_DICOM,
                          "cannot write the file meta header: %s", cond.text());
    else if (!scp->handlers.spool)
        st = rd_error_set(&err, RD_E_INTERNAL, "the listener has no spool");
    else
        st = scp->handlers.spool(scp->handlers.ctx, actx, spool, sizeof spool, &fd, &err);
    const size_t ds_offset = meta.size();
    size_t size = 0;
    {
        // The dataset's bytes go untouched behind the meta header, straight to the spool
        // file: no parse-and-rewrite, so the stored dataset is bit for bit what the peer
        // sent (the --bit-preserving mode of DCMTK's storescp), and no dataset is ever
        // held in memory whole. A failure before (or while) writing still reads the
        // dataset, so that the association stays in step and can answer a failure.
        SpoolConsumer consumer(st == RD_OK ? fd : -1);
        (void)consumer.write(meta.data(), static_cast<offile_off_t>(meta.size()));
        ConsumerStream stream(&consumer);
        T_ASC_PresentationContextID data_pres = pres_id;
        OFCondition rcv = DIMSE_receiveDataSetInFile(
            assoc, DIMSE_NONBLOCKING, scp->opts.dimse_timeout, &data_pres, &stream, NULL, NULL);
        stream.flush();
        consumer.flush();
        size = consumer.total();
        if (fd >= 0 && close(fd) != 0 && st == RD_OK && consumer.error() == 0)
            st = rd_error_set(&err, RD_E_IO, "%s: close: %s", spool, strerror(errno));
        if (rcv.bad()) {
            // Nothing was stored; the peer gets no success. The stream position is unknown
            // after a failed read, so the association cannot continue.
            rd_log_warn("net: C-STORE of %.80s from %s (%s): receiving the dataset failed: "
                        "%s; aborting the association",
                        req->AffectedSOPInstanceUID, calling, peer, rcv.text());
            scp->n_failed++;
            if (spool[0])
                (void)unlink(spool);
            (void)ASC_abortAssociation(assoc);
            return false;
        }
        if (st == RD_OK && consumer.too_large())
            st = rd_error_set(&err, RD_E_TOO_LARGE, "the dataset is larger than %zu bytes",
                              k_max_dataset);
        else if (st == RD_OK && consumer.error() != 0)
            st = rd_error_set(&err, RD_E_IO, "%s: %s", spool, strerror(consumer.error()));
    }
    if (st == RD_OK)
        st = check_dataset(scp, spool, size, ds_offset, xfer, req, uids, modality, &err);
    if (st == RD_OK) {
        rd_net_instance inst;
        inst.calling_ae = calling;
        inst.peer_host = peer;
        inst.sop_class_uid = uids[0].c_str();
        inst.sop_instance_uid = uids[1].c_str();
        inst.study_uid = uids[2].c_str();
        inst.series_uid = uids[3].c_str();
        inst.transfer_syntax_uid = xfer_uid.c_str();
        inst.modality = modality.c_str();
        inst.path = spool;
        inst.file_len = size;
        inst.dataset_offset = ds_offset;
        st =
            scp->handlers.store ? scp->handlers.store(scp->handlers.ctx, actx, &inst, &err) : RD_OK;
        spool[0] = '\0'; // the callback's now
    }
    if (spool[0])
        (void)unlink(spool);
    const std::string &sop_inst = uids[1];
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
    char app_context[128] = "";
    bool allowed = false;
    void *actx = NULL;
    bool begun = false;
    OFCondition cond;

    (void)ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, responding,
                          sizeof responding);
    (void)ASC_getPresentationAddresses(assoc->params, peer, sizeof peer, local, sizeof local);

    // An AE title of spaces only is none (PS3.5 6.2), and DCMTK fails to acknowledge a
    // request without both, losing what it built for the answer (found by
    // tests/fuzz/fuzz_net).
    if (!calling[0] || !called[0]) {
        rd_log_warn("net: rejected an association from %s: no %s AE title", peer,
                    calling[0] ? "called" : "calling");
        reject(scp, assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               calling[0] ? ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED
                          : ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
        goto done;
    }
    allowed = scp->allowed.empty();
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
    // DICOM's application context is the only one (PS3.7 A.2.1); DCMTK fails to
    // acknowledge a request without it, losing what it built for the answer (found by
    // tests/fuzz/fuzz_net).
    (void)ASC_getApplicationContextName(assoc->params, app_context, sizeof app_context);
    if (strcmp(app_context, UID_StandardApplicationContext) != 0) {
        rd_log_warn("net: rejected an association from %s (calling AE '%s'): application "
                    "context '%s' is not DICOM's",
                    peer, calling, app_context);
        reject(scp, assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED);
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
            if (cond.bad() && t_bound_refusal) {
                rd_log_warn("net: association from %s (%s): it sent %s; aborting it", calling, peer,
                            t_bound_refusal);
                (void)ASC_abortAssociation(assoc);
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
}

// A connection is shut down (both ways) when it is cut: DCMTK's blocking read of the TLS
// handshake or of the request then returns at once and the connection thread ends.
void cut_connection(pending_conn &c)
{
    if (!c.cut) {
        c.cut = true;
        (void)shutdown(c.fd, SHUT_RDWR);
    }
}

// Logs a refused or cut connection; under a flood, ten lines a second, then the count of
// the others.
// Called with scp->mu held.
void warn_cut(rd_net_scp *scp, const char *peer, const char *why)
{
    scp->n_cut++;
    auto now = std::chrono::steady_clock::now();
    if (now - scp->cut_window >= std::chrono::seconds(1)) {
        if (scp->cut_unlogged > 0)
            rd_log_warn("net: %ld more connections closed without a log line in the last "
                        "second",
                        scp->cut_unlogged);
        scp->cut_window = now;
        scp->cut_logged = 0;
        scp->cut_unlogged = 0;
    }
    if (scp->cut_logged >= 10) {
        scp->cut_unlogged++;
        return;
    }
    scp->cut_logged++;
    rd_log_warn("net: closed the connection from %s: %s", peer, why);
}

// The association request of one connection, read on the connection's own thread: DCMTK
// gets a duplicate of the socket, so that radraft's descriptor stays valid (and can be shut
// down by the accept loop at the deadline) until this thread is done with it, whatever
// DCMTK closes. Returns the association, or NULL when there is none to serve.
T_ASC_Association *receive_request(rd_net_scp *scp, int fd, T_ASC_Network **net, OFCondition &cond)
{
    T_ASC_Association *assoc = NULL;
    int dcm_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dcm_fd < 0) {
        cond = makeOFCondition(0, 1, OF_error, "cannot duplicate the socket");
        return NULL;
    }
    g_handoff.lock();
    t_handoff_held = true;
    t_socket_taken = false;
    dcmExternalSocketHandle.set(dcm_fd);
    // A network per connection: with the external socket set, DCMTK binds nothing.
    cond = ASC_initializeNetwork(NET_ACCEPTOR, scp->opts.port, scp->opts.acse_timeout, net);
    if (cond.good())
        cond = ASC_setTransportLayer(*net,
                                     scp->tls ? static_cast<DcmTransportLayer *>(scp->tls)
                                              : static_cast<DcmTransportLayer *>(scp->plain),
                                     0);
    if (cond.good())
        cond = ASC_receiveAssociation(*net, &assoc, scp->opts.max_pdu, NULL, NULL,
                                      scp->tls ? OFTrue : OFFalse, DUL_NOBLOCK,
                                      scp->opts.request_timeout + 5);
    handoff_release(); // when DCMTK failed before taking the socket
    if (!t_socket_taken)
        (void)close(dcm_fd);
    // A request whose bytes went over a bound: DCMTK, whose read failed, answers with an
    // association of nothing (and success).
    if (t_bound_refusal && cond.good())
        cond = makeOFCondition(0, 2, OF_error, t_bound_refusal);
    if (cond.bad() && assoc) {
        (void)ASC_dropAssociation(assoc);
        (void)ASC_destroyAssociation(&assoc);
    }
    return assoc;
}

// One accepted connection, from its association request to its end.
void serve_connection(rd_net_scp *scp, std::list<pending_conn>::iterator conn)
{
    t_bound_refusal = nullptr;
    T_ASC_Network *net = NULL;
    OFCondition cond;
    const int fd = conn->fd;
    const std::string peer = conn->peer;
    T_ASC_Association *assoc = receive_request(scp, fd, &net, cond);
    bool cut, over = false;
    // What an association may hold in memory: the spool buffer and DCMTK's PDU buffers.
    const long long need = static_cast<long long>(k_spool_buffer) + 2LL * scp->opts.max_pdu;
    {
        std::lock_guard<std::mutex> lock(scp->mu);
        cut = conn->cut;
        scp->pending.erase(conn);
        (void)close(fd);        // DCMTK's duplicate, if any, keeps the connection open
        const uint64_t one = 1; // the accept loop may start a waiting connection now
        if (write(scp->wake_fd, &one, sizeof one) < 0) {
            // the counter is full: the loop is awake anyway
        }
        if (assoc) {
            over = scp->active >= scp->opts.max_associations || scp->stopping.load();
            if (!over)
                scp->active++;
        }
    }
    if (!assoc) {
        if (cut && !scp->stopping.load()) {
            std::lock_guard<std::mutex> lock(scp->mu);
            char why[128];
            snprintf(why, sizeof why, "no association request within %d s (server.request_timeout)",
                     scp->opts.request_timeout);
            warn_cut(scp, peer.c_str(), why);
        } else if (t_bound_refusal) {
            rd_log_warn("net: receiving the association request from %s failed: it sent %s; "
                        "closed the connection",
                        peer.c_str(), t_bound_refusal);
        } else if (!cut && cond != DUL_NOASSOCIATIONREQUEST) {
            rd_log_warn("net: receiving the association request from %s failed: %s", peer.c_str(),
                        cond.text());
        }
    } else if (over) {
        rd_log_warn("net: rejected an association from %s: %d associations in progress "
                    "(server.max_associations)",
                    peer.c_str(), scp->opts.max_associations);
        reject(scp, assoc, ASC_RESULT_REJECTEDTRANSIENT,
               ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
    } else if (!reserve(scp, need)) {
        rd_log_warn("net: rejected an association from %s: the receive memory budget is in use "
                    "(server.receive_memory_mb %d)",
                    peer.c_str(), scp->opts.receive_memory_mb);
        reject(scp, assoc, ASC_RESULT_REJECTEDTRANSIENT,
               ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
    } else {
        serve_association(scp, assoc);
        release(scp, need);
    }
    if (net)
        (void)ASC_dropNetwork(&net);
    // Notify under the lock: once the last thread is gone, rd_net_scp_stop may return from
    // its wait and delete scp, so this thread must be done with scp->cv before it releases
    // scp->mu (notifying after the unlock raced with that delete; ThreadSanitizer found it).
    std::lock_guard<std::mutex> lock(scp->mu);
    if (assoc && !over)
        scp->active--;
    scp->threads--;
    scp->cv.notify_all();
}

// Starts a thread for each waiting connection (oldest first) whose peer has fewer than
// server.max_pending_per_peer requests being read, while fewer than max_associations are.
// Called with scp->mu held.
void start_waiting(rd_net_scp *scp)
{
    for (auto it = scp->waiting.begin(); it != scp->waiting.end();) {
        if (static_cast<long>(scp->pending.size()) >= scp->opts.max_associations)
            return;
        long same = 0;
        for (const pending_conn &c : scp->pending)
            if (c.peer == it->peer)
                same++;
        auto next = std::next(it);
        if (same < scp->opts.max_pending_per_peer) {
            scp->pending.splice(scp->pending.end(), scp->waiting, it);
            try {
                std::thread(serve_connection, scp, it).detach();
                scp->threads++;
            } catch (const std::exception &e) {
                rd_log_error("net: cannot start a connection thread for %s: %s", it->peer.c_str(),
                             e.what());
                (void)close(it->fd);
                scp->pending.erase(it);
            }
        }
        it = next;
    }
}

// Cuts what is past its deadline: a connection being read is shut down (its thread then
// ends), a waiting one is closed. Called with scp->mu held.
void cut_overdue(rd_net_scp *scp)
{
    auto now = std::chrono::steady_clock::now();
    for (pending_conn &c : scp->pending)
        if (now >= c.deadline)
            cut_connection(c);
    for (auto it = scp->waiting.begin(); it != scp->waiting.end();) {
        auto next = std::next(it);
        if (now >= it->deadline) {
            char why[160];
            snprintf(why, sizeof why,
                     "still waiting after %d s behind this address's other requests "
                     "(server.request_timeout, server.max_pending_per_peer)",
                     scp->opts.request_timeout);
            warn_cut(scp, it->peer.c_str(), why);
            (void)close(it->fd);
            scp->waiting.erase(it);
        }
        it = next;
    }
}

// Accepts connections; each association request is read on a thread of its own, so a slow
// or silent peer holds up nobody else. One peer address has at most
// server.max_pending_per_peer requests being read at once: its further connections wait
// (they are accepted, not refused, so that a burst of a PACS's parallel associations goes
// through), and every connection must have its request read within server.request_timeout
// of its accept. At most max_associations connections of one address wait, and 4 times as
// many in all; more are closed at once.
void accept_loop(rd_net_scp *scp)
{
    while (!scp->stopping.load()) {
        struct pollfd p[2];
        p[0].fd = scp->listen_fd;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = scp->wake_fd;
        p[1].events = POLLIN;
        p[1].revents = 0;
        int n = poll(p, 2, 200);
        if (n > 0 && (p[1].revents & POLLIN)) {
            uint64_t count;
            if (read(scp->wake_fd, &count, sizeof count) < 0) {
                // nothing to read: another poll will tell
            }
        }
        int fd = -1;
        struct sockaddr_in from;
        if (n > 0 && (p[0].revents & POLLIN)) {
            socklen_t len = sizeof from;
            fd = accept4(scp->listen_fd, reinterpret_cast<struct sockaddr *>(&from), &len,
                         SOCK_CLOEXEC);
            if (fd < 0 &&
                (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
                rd_log_warn("net: cannot accept a connection: %s", strerror(errno));
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
        std::lock_guard<std::mutex> lock(scp->mu);
        cut_overdue(scp);
        if (fd >= 0) {
            char peer[INET_ADDRSTRLEN] = "?";
            if (from.sin_family == AF_INET)
                (void)inet_ntop(AF_INET, &from.sin_addr, peer, sizeof peer);
            long same = 0;
            for (const pending_conn &c : scp->waiting)
                if (c.peer == peer)
                    same++;
            bool queued = false;
            if (same >= scp->opts.max_associations)
                warn_cut(scp, peer,
                         "too many connections of this address waiting for their association "
                         "request to be read (server.max_associations)");
            else if (static_cast<long>(scp->waiting.size()) >= 4L * scp->opts.max_associations)
                warn_cut(scp, peer,
                         "too many connections waiting for their association request to be "
                         "read (4 x server.max_associations)");
            else {
                try {
                    pending_conn c;
                    c.fd = fd;
                    c.peer = peer;
                    c.deadline = std::chrono::steady_clock::now() +
                                 std::chrono::seconds(scp->opts.request_timeout);
                    scp->waiting.push_back(c);
                    queued = true;
                } catch (const std::bad_alloc &) {
                    warn_cut(scp, peer, "out of memory");
                }
            }
            if (!queued)
                (void)close(fd);
        }
        start_waiting(scp);
    }
}

// Opens the listening socket *out on `address`:`port` (IPv4), non-blocking.
rd_status open_listener(const char *address, int port, int *out, rd_error *err)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, address, &addr.sin_addr) != 1)
        return rd_error_set(err, RD_E_CONFIG,
                            "server.bind: '%s' is not an IPv4 address (e.g. 0.0.0.0 or 127.0.0.1)",
                            address);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return rd_error_set(err, RD_E_NET, "cannot create a socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof addr) != 0 ||
        listen(fd, 128) != 0) {
        rd_status st = rd_error_set(err, RD_E_NET, "cannot listen on %s:%d: %s", address, port,
                                    strerror(errno));
        (void)close(fd);
        return st;
    }
    *out = fd;
    return RD_OK;
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
        scp->bind_address = has(opts->bind_address) ? opts->bind_address : "0.0.0.0";
        scp->opts.bind_address = NULL;
        if (scp->opts.max_pdu < ASC_MINIMUMPDUSIZE)
            scp->opts.max_pdu = ASC_DEFAULTMAXPDU;
        if (scp->opts.max_pdu > ASC_MAXIMUMPDUSIZE)
            scp->opts.max_pdu = ASC_MAXIMUMPDUSIZE;
        if (scp->opts.idle_timeout < 1)
            scp->opts.idle_timeout = 300;
        if (scp->opts.acse_timeout < 1)
            scp->opts.acse_timeout = 30;
        if (scp->opts.request_timeout < 1)
            scp->opts.request_timeout = 10;
        if (scp->opts.max_pending_per_peer < 1)
            scp->opts.max_pending_per_peer = 4;
        if (scp->opts.max_inflated_mb < 1)
            scp->opts.max_inflated_mb = 256;
        if (scp->opts.max_inflate_ratio < 1)
            scp->opts.max_inflate_ratio = 200;
        if (scp->opts.receive_memory_mb < 1)
            scp->opts.receive_memory_mb = 1024;
        scp->mem_budget = static_cast<long long>(scp->opts.receive_memory_mb) << 20;
        if (opts->allowed_calling_aes)
            for (int i = 0; i < opts->allowed_calling_aes->count; i++)
                scp->allowed.push_back(opts->allowed_calling_aes->items[i]);
        if (handlers)
            scp->handlers = *handlers;
        else
            memset(&scp->handlers, 0, sizeof scp->handlers);
        if (!has(opts->tls_certificate))
            scp->plain = new HandoffLayer<DcmTransportLayer>();
    } catch (const std::bad_alloc &) {
        delete scp;
        return rd_error_set(err, RD_E_NOMEM, "out of memory starting the listener");
    }
    if (has(opts->tls_certificate)) {
        rd_status st = make_tls(NET_ACCEPTOR, opts->tls_certificate, opts->tls_private_key,
                                opts->tls_ca_file, !opts->tls_skip_verify, &scp->tls, err);
        if (st != RD_OK) {
            delete scp;
            return st;
        }
    }
    rd_status st = open_listener(scp->bind_address.c_str(), opts->port, &scp->listen_fd, err);
    if (st == RD_OK && (scp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        st = rd_error_set(err, RD_E_NET, "cannot create an eventfd: %s", strerror(errno));
        (void)close(scp->listen_fd);
    }
    if (st != RD_OK) {
        delete scp->tls;
        delete scp->plain;
        delete scp;
        return st;
    }
    try {
        scp->accept_thread = std::thread(accept_loop, scp);
    } catch (const std::exception &e) {
        (void)close(scp->listen_fd);
        (void)close(scp->wake_fd);
        delete scp->tls;
        delete scp->plain;
        delete scp;
        return rd_error_set(err, RD_E_INTERNAL, "cannot start the listener thread: %s", e.what());
    }
    rd_log_info("net: listening on %s:%d as %s (at most %d associations, max PDU %d%s)",
                scp->bind_address.c_str(), opts->port, opts->ae_title, scp->opts.max_associations,
                scp->opts.max_pdu, scp->tls ? ", TLS" : "");
    if (scp->allowed.empty() && scp->bind_address.compare(0, 4, "127.") != 0)
        rd_log_warn("net: server.allowed_calling_aes is empty and the listener is reachable "
                    "on %s: any peer that knows the AE title can send (list the peers' AE "
                    "titles, or bind 127.0.0.1)",
                    scp->bind_address.c_str());
    if (scp->tls && opts->tls_skip_verify)
        rd_log_warn("net: server.tls_verify_peer is false: the listener accepts any TLS client "
                    "certificate, or none");
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
    (void)close(scp->listen_fd);
    // The port is closed now: no new connection. Connections still in their request are
    // cut; associations in progress end after the store they are receiving, or within a
    // second when idle. Wait for every connection thread.
    {
        std::unique_lock<std::mutex> lock(scp->mu);
        for (pending_conn &c : scp->waiting)
            (void)close(c.fd);
        scp->waiting.clear();
        for (pending_conn &c : scp->pending)
            cut_connection(c);
        scp->cv.wait(lock, [scp] { return scp->threads == 0; });
    }
    (void)close(scp->wake_fd);
    delete scp->tls; // after the networks that used it
    delete scp->plain;
    rd_log_info("net: listener stopped (%ld associations, %ld stored, %ld failed, %ld "
                "rejected, %ld connections closed before their request)",
                scp->n_assoc.load(), scp->n_stored.load(), scp->n_failed.load(),
                scp->n_rejected.load(), scp->n_cut.load());
    delete scp;
}

extern "C" rd_status rd__net_scp_serve_socket(rd_net_scp *scp, int fd, const char *peer)
{
    std::list<pending_conn>::iterator conn;
    try {
        std::lock_guard<std::mutex> lock(scp->mu);
        pending_conn c;
        c.fd = fd;
        c.peer = peer;
        c.deadline =
            std::chrono::steady_clock::now() + std::chrono::seconds(scp->opts.request_timeout);
        conn = scp->pending.insert(scp->pending.end(), c);
        scp->threads++;
    } catch (const std::bad_alloc &) {
        (void)close(fd);
        return RD_E_NOMEM;
    }
    serve_connection(scp, conn);
    return RD_OK;
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
    stats->cut = scp->n_cut.load();
    std::lock_guard<std::mutex> lock(scp->mu);
    stats->active = scp->active;
    stats->pending = static_cast<long>(scp->pending.size() + scp->waiting.size());
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

// The sender's TLS layer, with the warning when peers are not verified.
rd_status requestor_tls(const rd_net_scu_options *opts, DcmTLSTransportLayer **tls, rd_error *err)
{
    rd_status st = make_tls(NET_REQUESTOR, opts->tls_certificate, opts->tls_private_key,
                            opts->tls_ca_file, !opts->tls_skip_verify, tls, err);
    if (st == RD_OK && opts->tls_skip_verify)
        std::call_once(g_skip_verify_warned, [] {
            rd_log_warn("net: server.tls_verify_peer is false: TLS peers are not "
                        "verified (any certificate is accepted)");
        });
    return st;
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
        rd_status st = requestor_tls(opts, tls, err);
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

rd_status rd__net_make_tls_requestor(const rd_net_scu_options *opts, DcmTLSTransportLayer **out,
                                     rd_error *err)
{
    return requestor_tls(opts, out, err);
}

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
