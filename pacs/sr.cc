// Writing draft and signed reports as DICOM Enhanced SR over DCMTK's dcmsr (see
// include/radraft/sr.h for the document layout).
//
// The document is built with DSRDocument, written to a dataset, and then completed with what
// DSRDocument does not model (our own UIDs, the Contributing Equipment Sequence). The patient
// and study text of the source comes through rd__dicom_load, which decodes every Specific
// Character Set to UTF-8 (including the Japanese ISO 2022 sets that DCMTK's iconv lacks).
// Nothing here throws across the extern "C" boundary.
#include "radraft/sr.h"
#include "radraft/tempname.h"

#include "dcm_load.h"
#include "dicom_shim.h"
#include "first_error.h"
#include "radraft/error.h"
#include "radraft/uid.h"
#include "radraft/version.h"

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/oflog/oflog.h>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace
{

// The vocabulary names of the findings, in the order of rd_finding (radraft/findings.h).
const char *const kFindingName[RD_FINDING_N_ABNORMAL] = {
    "Atelectasis", "Cardiomegaly", "Effusion",           "Infiltration",  "Mass",
    "Nodule",      "Pneumonia",    "Pneumothorax",       "Consolidation", "Edema",
    "Emphysema",   "Fibrosis",     "Pleural_Thickening", "Hernia"};

const DSRCodedEntryValue kRoot("18748-4", "LN", "Diagnostic Imaging Report");
const DSRCodedEntryValue kLanguage("121049", "DCM", "Language of Content Item and Descendants");
const DSRCodedEntryValue kEnglish("en", "RFC5646", "English");
const DSRCodedEntryValue kObserverType("121005", "DCM", "Observer Type");
const DSRCodedEntryValue kDevice("121007", "DCM", "Device");
const DSRCodedEntryValue kDeviceUid("121012", "DCM", "Device Observer UID");
const DSRCodedEntryValue kDeviceName("121013", "DCM", "Device Observer Name");
const DSRCodedEntryValue kDeviceManufacturer("121014", "DCM", "Device Observer Manufacturer");
const DSRCodedEntryValue kDeviceModel("121015", "DCM", "Device Observer Model Name");
const DSRCodedEntryValue kPerson("121006", "DCM", "Person");
const DSRCodedEntryValue kPersonName("121008", "DCM", "Person Observer Name");
const DSRCodedEntryValue kPersonOrg("121009", "DCM", "Person Observer's Organization Name");
const DSRCodedEntryValue kPersonRoleInOrg("121010", "DCM",
                                          "Person Observer's Role in the Organization");
const DSRCodedEntryValue kPersonRoleInProc("121011", "DCM",
                                           "Person Observer's Role in this Procedure");
// The section headings of CID 7001 (PixelMed's TID 2000 accepts these, not the LOINC ones
// earlier radraft versions wrote; those are still found when signing an old draft).
const DSRCodedEntryValue kFindingsSection("121070", "DCM", "Findings");
const DSRCodedEntryValue kImpressionSection("121072", "DCM", "Impressions");
const DSRCodedEntryValue kLegacyFindingsSection("59776-5", "LN", "Findings");
const DSRCodedEntryValue kProcedureReported("121058", "DCM", "Procedure reported");
const DSRCodedEntryValue kFinding("121071", "DCM", "Finding");
const DSRCodedEntryValue kImpression("121073", "DCM", "Impression");

// The AI results (TID 1500).
const DSRCodedEntryValue kAirRoot("126000", "DCM", "Imaging Measurement Report");
const DSRCodedEntryValue kImageLibrary("111028", "DCM", "Image Library");
const DSRCodedEntryValue kImageLibraryGroup("126200", "DCM", "Image Library Group");
const DSRCodedEntryValue kImagingMeasurements("126010", "DCM", "Imaging Measurements");
const DSRCodedEntryValue kMeasurementGroup("125007", "DCM", "Measurement Group");
const DSRCodedEntryValue kTrackingId("112039", "DCM", "Tracking Identifier");
const DSRCodedEntryValue kTrackingUid("112040", "DCM", "Tracking Unique Identifier");
const DSRCodedEntryValue kAlgorithmName("111001", "DCM", "Algorithm Name");
const DSRCodedEntryValue kAlgorithmVersion("111003", "DCM", "Algorithm Version");
const DSRCodedEntryValue kAlgorithmParameters("111002", "DCM", "Algorithm Parameters");
const DSRCodedEntryValue kQualitativeEvaluations("C0034375", "UMLS", "Qualitative Evaluations");
const DSRCodedEntryValue kThresholdValue("122411", "DCM", "Threshold Value");
const DSRCodedEntryValue kEquivalentMeaning("121050", "DCM", "Equivalent Meaning of Concept Name");
const DSRCodedEntryValue kNoUnits("1", "UCUM", "no units");
// TID 1500's Procedure Reported is drawn from CID 100 (Quantitative Diagnostic Imaging
// Procedures), which has no chest radiograph; PixelMed refuses a code outside it, so the
// AIR SR names the generic imaging procedure of CID 100 (the text report has the specific
// one, the code table's).
const DSRCodedEntryValue kImagingProcedure("363679005", "SCT", "Imaging procedure");
const char kPresentThreshold[] = "Operating threshold: present at or above";
const char kUncertainThreshold[] = "Operating threshold: uncertain at or above";
// The Contributing Equipment's purpose in an AIR SR (see radraft/sr.h and README).
const char kAirPurposeValue[] = "109102";
const char kAirPurposeScheme[] = "DCM";
const char kAirPurposeMeaning[] = "Processing Equipment";

// The finding whose code in `codes` is `cv`, or -1.
int finding_of_code(const rd_sr_codes &codes, const DSRCodedEntryValue &cv)
{
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        if (cv.getCodeValue() == codes.finding[i].value &&
            cv.getCodingSchemeDesignator() == codes.finding[i].scheme)
            return i;
    return -1;
}

DSRCodedEntryValue to_dsr(const rd_sr_code &c)
{
    return DSRCodedEntryValue(c.value, c.scheme, c.meaning);
}

void init_once()
{
    static std::once_flag once;
    std::call_once(once, [] {
        // DCMTK would print its own warnings on stderr; failures come back as statuses.
        static const char *const loggers[] = {"dcmtk.dcmsr", "dcmtk.dcmdata"};
        for (const char *name : loggers)
            OFLog::getLogger(name).setLogLevel(OFLogger::FATAL_LOG_LEVEL);
    });
}

// The decimal digits of a 128-bit value after "2.25." (PS3.5 B.2).
std::string uid_from_u128(unsigned __int128 v)
{
    char digits[48];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + static_cast<int>(v % 10));
        v /= 10;
    } while (v != 0);
    std::string out = "2.25.";
    while (n > 0)
        out.push_back(digits[--n]);
    return out;
}

// A "2.25." UID from a random version-4 UUID (PS3.5 B.2): no registered root needed.
bool make_uid(std::string &out)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        got += static_cast<size_t>(n);
    }
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    unsigned __int128 v = 0;
    for (unsigned char c : b)
        v = (v << 8) | c;
    out = uid_from_u128(v);
    return true;
}

// SHA-1 (FIPS 180-4), only for name-based UUIDs (RFC 4122 version 5): not for security.
// pacs/ is a leaf and cannot use src/base's helpers, and DCMTK has no public hash.
void sha1(const unsigned char *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
    auto rol = [](uint32_t x, int k) { return (x << k) | (x >> (32 - k)); };
    // The message, its 0x80 pad byte, zeros and the 64-bit length, in 64-byte blocks.
    size_t total = ((len + 8) / 64 + 1) * 64;
    std::vector<unsigned char> m(total, 0);
    if (len)
        std::memcpy(m.data(), data, len);
    m[len] = 0x80;
    unsigned long long bits = static_cast<unsigned long long>(len) * 8u;
    for (int i = 0; i < 8; i++)
        m[total - 1 - static_cast<size_t>(i)] = static_cast<unsigned char>(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = static_cast<uint32_t>(m[off + 4 * i]) << 24 |
                   static_cast<uint32_t>(m[off + 4 * i + 1]) << 16 |
                   static_cast<uint32_t>(m[off + 4 * i + 2]) << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5a827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ed9eba1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8f1bbcdcu;
            } else {
                f = b ^ c ^ d;
                k = 0xca62c1d6u;
            }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    for (int i = 0; i < 20; i++)
        out[i] = static_cast<unsigned char>(h[i / 4] >> (24 - 8 * (i % 4)));
}

// A "2.25." UID of 39 digits at most back to its 128-bit value; false if it is not one.
bool u128_from_uid(const char *uid, unsigned __int128 &v)
{
    if (std::strncmp(uid, "2.25.", 5) != 0 || !uid[5])
        return false;
    v = 0;
    const unsigned __int128 max = ~static_cast<unsigned __int128>(0);
    for (const char *p = uid + 5; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = static_cast<unsigned>(*p - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    return true;
}

// A version-5 UUID (RFC 4122, SHA-1) of `name` in the namespace `ns` (itself a "2.25."
// UUID), as a "2.25." UID: the same name always gives the same UID.
bool name_uid(const char *ns_uid, const std::string &name, std::string &out)
{
    unsigned __int128 ns;
    if (!u128_from_uid(ns_uid, ns))
        return false;
    std::vector<unsigned char> buf(16 + name.size());
    for (int i = 0; i < 16; i++)
        buf[static_cast<size_t>(i)] = static_cast<unsigned char>(ns >> (8 * (15 - i)));
    if (!name.empty())
        std::memcpy(buf.data() + 16, name.data(), name.size());
    unsigned char h[20];
    sha1(buf.data(), buf.size(), h);
    h[6] = static_cast<unsigned char>((h[6] & 0x0f) | 0x50);
    h[8] = static_cast<unsigned char>((h[8] & 0x3f) | 0x80);
    unsigned __int128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | h[i];
    out = uid_from_u128(v);
    return true;
}

// The signed series of a study: the version-5 UUID of its Study Instance UID in radraft's
// namespace, so that it depends on the study alone (see rd_sr_signed_series_uid).
bool make_signed_series_uid(const std::string &study, std::string &out)
{
    return name_uid(RD_SR_SIGNED_SERIES_NAMESPACE, study, out);
}

std::string now_dt(const char *fmt)
{
    time_t t = time(nullptr);
    struct tm tm;
    char buf[32] = "";
    if (localtime_r(&t, &tm))
        strftime(buf, sizeof buf, fmt, &tm);
    return buf;
}

bool valid_utf8(const char *s)
{
    const unsigned char *p = reinterpret_cast<const unsigned char *>(s);
    while (*p) {
        unsigned char c = *p;
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || (len == 2 && c < 0xc2))
            return false;
        for (size_t k = 1; k < len; k++)
            if ((p[k] & 0xc0) != 0x80)
                return false;
        p += len;
    }
    return true;
}

void put(char *dst, size_t size, const char *v)
{
    size_t len = std::strlen(v);
    size_t n = len < size - 1 ? len : size - 1;
    // Cut at a UTF-8 character boundary.
    while (n > 0 && n < len && (static_cast<unsigned char>(v[n]) & 0xc0) == 0x80)
        n--;
    std::memcpy(dst, v, n);
    dst[n] = '\0';
}

void put(char *dst, size_t size, const std::string &v)
{
    put(dst, size, v.c_str());
}

int finding_index(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        if (strcasecmp(name, kFindingName[i]) == 0)
            return i;
    return -1;
}

// The int value of an enum that came from C (any int may arrive; see dicom_write.cc).
template <class E> int enum_value(const E &e)
{
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

// Puts "path: " before the message rd__dicom_load left in `err` (which does not name the
// file), through a copy since the message is both source and destination.
rd_status prefix_error(rd_error *err, rd_status st, const char *path)
{
    if (!err)
        return st;
    std::string msg = err->msg;
    return rd_error_set(err, st, "%s: %s", path, msg.c_str());
}

struct coded {
    int index;
    int state; // RD_STATE_PRESENT or RD_STATE_UNCERTAIN
    double score;
};

rd_status check_findings(const rd_sr_finding *f, size_t n, std::vector<coded> &out, rd_error *err)
{
    if (n > RD_FINDING_N_ABNORMAL)
        return rd_error_set(err, RD_E_INVALID, "%zu coded findings (at most %d)", n,
                            RD_FINDING_N_ABNORMAL);
    if (n > 0 && !f)
        return rd_error_set(err, RD_E_INVALID, "findings is NULL");
    for (size_t i = 0; i < n; i++) {
        int idx = finding_index(f[i].name);
        int st = enum_value(f[i].state);
        if (idx < 0)
            return rd_error_set(err, RD_E_INVALID, "unknown finding '%s'",
                                f[i].name ? f[i].name : "(null)");
        if (st != RD_STATE_PRESENT && st != RD_STATE_UNCERTAIN)
            return rd_error_set(err, RD_E_INVALID,
                                "finding %s: only present or uncertain findings are coded",
                                kFindingName[idx]);
        if (!(f[i].score < 0) && !(f[i].score <= 1.0))
            return rd_error_set(err, RD_E_INVALID, "finding %s: score %g outside [0, 1]",
                                kFindingName[idx], f[i].score);
        for (const coded &c : out)
            if (c.index == idx)
                return rd_error_set(err, RD_E_INVALID, "finding %s given twice", kFindingName[idx]);
        out.push_back({idx, st, f[i].score < 0 ? -1.0 : f[i].score});
    }
    return RD_OK;
}

rd_status check_text(const char *what, const char *s, rd_error *err)
{
    if (!s || !s[0])
        return rd_error_set(err, RD_E_INVALID, "the %s text is empty", what);
    if (std::strlen(s) > RD_SR_MAX_TEXT)
        return rd_error_set(err, RD_E_TOO_LARGE, "the %s text exceeds %u bytes", what,
                            RD_SR_MAX_TEXT);
    if (!valid_utf8(s))
        return rd_error_set(err, RD_E_INVALID, "the %s text is not valid UTF-8", what);
    return RD_OK;
}

// Adds content items one after another; the first failure stops it with a message.
class tree_builder : public first_error
{
  public:
    explicit tree_builder(DSRDocumentTree &t) : t_(t) {}

    void add(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt, DSRTypes::E_AddMode mode,
             const DSRCodedEntryValue &name)
    {
        if (!ok())
            return;
        if (t_.addContentItem(rel, vt, mode) == 0) {
            fail(std::string("cannot add content item '") + name.getCodeMeaning().c_str() + "'");
            return;
        }
        check(t_.getCurrentContentItem().setConceptName(name), name);
    }
    void text(const std::string &v, const DSRCodedEntryValue &name)
    {
        if (ok())
            check(t_.getCurrentContentItem().setStringValue(v.c_str()), name);
    }
    void code(const DSRCodedEntryValue &v, const DSRCodedEntryValue &name)
    {
        if (ok())
            check(t_.getCurrentContentItem().setCodeValue(v), name);
    }
    void num(const std::string &v, const DSRCodedEntryValue &unit, const DSRCodedEntryValue &name)
    {
        if (ok())
            check(t_.getCurrentContentItem().setNumericValue(
                      DSRNumericMeasurementValue(v.c_str(), unit)),
                  name);
    }
    // An IMAGE item (no concept name: TID 1601 and 320 give it none).
    void image(DSRTypes::E_RelationshipType rel, DSRTypes::E_AddMode mode,
               const std::string &sop_class, const std::string &sop)
    {
        if (!ok())
            return;
        if (t_.addContentItem(rel, DSRTypes::VT_Image, mode) == 0) {
            fail("cannot add an image reference");
            return;
        }
        OFCondition c = t_.getCurrentContentItem().setImageReference(
            DSRImageReferenceValue(sop_class.c_str(), sop.c_str()));
        if (c.bad())
            fail(std::string("image reference: ") + c.text(),
                 rd__dcm_build_status(c, RD_E_DICOM) == RD_E_NOMEM);
    }
    void up()
    {
        if (ok() && t_.goUp() == 0)
            fail("cannot move up the content tree");
    }
    // The present findings as sibling CODE items (TID 2002 row 1), the first one added with
    // `first_mode` relative to the current node, the others after it. Uncertain findings
    // are not coded: TID 2002 has no row for a certainty (see radraft/sr.h). The cursor
    // ends on the last one added, or stays where it was when none is.
    void findings(const std::vector<coded> &list, const rd_sr_codes &codes,
                  DSRTypes::E_AddMode first_mode)
    {
        bool first = true;
        for (const coded &c : list) {
            if (c.state != RD_STATE_PRESENT)
                continue;
            add(DSRTypes::RT_contains, DSRTypes::VT_Code,
                first ? first_mode : DSRTypes::AM_afterCurrent, kFinding);
            first = false;
            code(to_dsr(codes.finding[c.index]), kFinding);
        }
    }
    void check(const OFCondition &c, const DSRCodedEntryValue &name)
    {
        if (c.bad())
            fail(std::string(name.getCodeMeaning().c_str()) + ": " + c.text(),
                 rd__dcm_build_status(c, RD_E_DICOM) == RD_E_NOMEM);
    }

  private:
    DSRDocumentTree &t_;
};

struct content {
    std::string findings_text;
    std::string impression_text;
    std::vector<coded> findings;
    std::string device_uid;
    std::string model;
    const rd_sr_codes *codes;
};

rd_status build_tree(DSRDocumentTree &t, const content &c, rd_error *err)
{
    tree_builder b(t);
    b.add(DSRTypes::RT_isRoot, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent, kRoot);
    if (b.ok())
        b.check(t.setTemplateIdentification("2000", "DCMR"), kRoot);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRTypes::AM_belowCurrent, kLanguage);
    b.code(kEnglish, kLanguage);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRTypes::AM_afterCurrent,
          kProcedureReported);
    b.code(to_dsr(c.codes->procedure), kProcedureReported);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, DSRTypes::AM_afterCurrent, kObserverType);
    b.code(kDevice, kObserverType);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, DSRTypes::AM_afterCurrent, kDeviceUid);
    b.text(c.device_uid, kDeviceUid);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent, kDeviceName);
    b.text("radraft", kDeviceName);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent,
          kDeviceManufacturer);
    b.text("radraft", kDeviceManufacturer);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent, kDeviceModel);
    b.text(c.model, kDeviceModel);
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent,
          kFindingsSection);
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRTypes::AM_belowCurrent, kFinding);
    b.text(c.findings_text, kFinding);
    b.findings(c.findings, *c.codes, DSRTypes::AM_afterCurrent);
    b.up();
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent,
          kImpressionSection);
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRTypes::AM_belowCurrent, kImpression);
    b.text(c.impression_text, kImpression);
    if (!b.ok())
        return rd_error_set(err, b.status(RD_E_DICOM), "SR content: %s", b.msg().c_str());
    return RD_OK;
}

std::string get_str(DcmItem *ds, const DcmTagKey &tag)
{
    OFString v;
    if (ds->findAndGetOFStringArray(tag, v).bad())
        return std::string();
    return std::string(v.c_str(), v.length());
}

bool is_ascii(const std::string &s)
{
    for (unsigned char c : s)
        if (c >= 0x80 || c == 0x1b)
            return false;
    return true;
}

// A text attribute of the source as UTF-8; false when its character set cannot be
// converted here (the caller then leaves the attribute empty rather than mislabel bytes).
bool source_text_utf8(DcmItem *ds, const DcmTagKey &tag, const char *delimiters, std::string &out)
{
    std::string raw = get_str(ds, tag);
    std::string charset = get_str(ds, DCM_SpecificCharacterSet);
    if (is_ascii(raw) || charset == "ISO_IR 192") {
        out = raw;
        return valid_utf8(raw.c_str());
    }
    DcmSpecificCharacterSet cs;
    OFString conv;
    if (cs.selectCharacterSet(charset.c_str()).good() &&
        cs.convertString(raw.c_str(), raw.size(), conv, delimiters).good()) {
        out.assign(conv.c_str(), conv.length());
        return valid_utf8(out.c_str());
    }
    out.clear();
    return false;
}

// What one source instance contributes.
struct source_ref {
    std::string study, series, sop_class, sop;
};

// Sets a header value copied from the source. One that DCMTK's VR check refuses (a name
// over 64 characters, a malformed date) is copied unchecked, as the source has it, and
// noted: the PACS files the report by these values, so they must match the images even
// where the images are not quite valid DICOM. Memory running out is no such note: it is
// thrown as std::bad_alloc (RD_E_NOMEM at the C boundary), so that no SR is written
// without the value.
template <class F>
void set_or_note(F setter, const std::string &value, const char *what, std::string &warning)
{
    OFCondition c = setter(value, true);
    if (c.good())
        return;
    if (c == EC_MemoryExhausted || (c = setter(value, false)) == EC_MemoryExhausted)
        throw std::bad_alloc();
    if (c.bad())
        setter(std::string(), false);
    if (warning.empty())
        warning = std::string(what) + " of the source is not valid DICOM; copied as is";
}

// The header attributes of an SR that DSRDocument holds, with its getter of each: what the
// checks below compare.
using doc_getter = OFCondition (DSRDocument::*)(OFString &, const signed long) const;
struct header_attr {
    doc_getter get;
    DcmTagKey tag;
    const char *name;
};
const header_attr kHeader[] = {
    {&DSRDocument::getPatientName, DCM_PatientName, "Patient's Name"},
    {&DSRDocument::getPatientID, DCM_PatientID, "Patient ID"},
    {&DSRDocument::getPatientBirthDate, DCM_PatientBirthDate, "Patient's Birth Date"},
    {&DSRDocument::getPatientSex, DCM_PatientSex, "Patient's Sex"},
    {&DSRDocument::getStudyInstanceUID, DCM_StudyInstanceUID, "Study Instance UID"},
    {&DSRDocument::getStudyDate, DCM_StudyDate, "Study Date"},
    {&DSRDocument::getStudyTime, DCM_StudyTime, "Study Time"},
    {&DSRDocument::getAccessionNumber, DCM_AccessionNumber, "Accession Number"},
    {&DSRDocument::getReferringPhysicianName, DCM_ReferringPhysicianName,
     "Referring Physician's Name"},
    {&DSRDocument::getStudyID, DCM_StudyID, "Study ID"},
    {&DSRDocument::getStudyDescription, DCM_StudyDescription, "Study Description"},
    {&DSRDocument::getSpecificCharacterSet, DCM_SpecificCharacterSet, "Specific Character Set"},
    {&DSRDocument::getSOPClassUID, DCM_SOPClassUID, "SOP Class UID"},
    {&DSRDocument::getModality, DCM_Modality, "Modality"},
    {&DSRDocument::getSeriesInstanceUID, DCM_SeriesInstanceUID, "Series Instance UID"},
    {&DSRDocument::getSeriesNumber, DCM_SeriesNumber, "Series Number"},
    {&DSRDocument::getSeriesDescription, DCM_SeriesDescription, "Series Description"},
    {&DSRDocument::getSeriesDate, DCM_SeriesDate, "Series Date"},
    {&DSRDocument::getSeriesTime, DCM_SeriesTime, "Series Time"},
    {&DSRDocument::getTimezoneOffsetFromUTC, DCM_TimezoneOffsetFromUTC, "Timezone Offset"},
    {&DSRDocument::getSOPInstanceUID, DCM_SOPInstanceUID, "SOP Instance UID"},
    {&DSRDocument::getInstanceNumber, DCM_InstanceNumber, "Instance Number"},
    {&DSRDocument::getContentDate, DCM_ContentDate, "Content Date"},
    {&DSRDocument::getContentTime, DCM_ContentTime, "Content Time"},
    {&DSRDocument::getManufacturer, DCM_Manufacturer, "Manufacturer"},
    {&DSRDocument::getManufacturerModelName, DCM_ManufacturerModelName, "Model Name"},
    {&DSRDocument::getSoftwareVersions, DCM_SoftwareVersions, "Software Versions"}};

// DCMTK's SR reader (DSRDocument::read) copies each header attribute of the dataset into the
// document, and one whose value buffer it cannot allocate (new (std::nothrow) returning
// NULL) is left empty, silently (found by tests/unit/test_alloc_faults); a signed SR would
// then go out without it. So the document read is compared with its dataset, attribute by
// attribute; a difference fails as RD_E_NOMEM.
rd_status check_read(DSRDocument &doc, DcmItem &ds, const char *path, rd_error *err)
{
    OFString a, b;
    for (const header_attr &h : kHeader) {
        if (ds.findAndGetOFStringArray(h.tag, a).bad())
            a.clear();
        (doc.*h.get)(b, -1);
        if (a != b)
            return rd_error_set(err, RD_E_NOMEM, "%s: out of memory reading the SR: %s was lost",
                                path, h.name);
    }
    return RD_OK;
}

// What an SR written must say, for check_written: the document it was written from, and
// its Study, Series and SOP Instance UIDs (which DSRDocument would make up afresh when it
// lost them).
struct sr_expect {
    DSRDocument *doc;
    std::string study, series, sop;
};

// DCMTK's SR writer drops what it cannot store: an attribute or content item value whose
// buffer it cannot allocate (new (std::nothrow) returning NULL) is left out or empty, or,
// for a UID, made up afresh, in DSRDocument::write and again in saveFile (which writes such
// an element empty, inside an item whose length counted its value), and the write still
// succeeds (found by tests/unit/test_alloc_faults). So the file written is read back into a
// second document, before it is renamed into place, and compared with the first: its
// header, its lists and its content tree. Both hold the same values unless one was lost
// that way, so a difference, or a file that does not read back, fails as RD_E_NOMEM.
rd_status check_written(const sr_expect &x, const char *path, rd_error *err)
{
    DcmFileFormat ff;
    DSRDocument back;
    DSRDocument &doc = *x.doc;
    OFCondition c = ff.loadFile(path);
    if (c.good())
        c = back.read(*ff.getDataset());
    if (c.bad())
        return rd_error_set(err, RD_E_NOMEM,
                            "out of memory writing the SR: the file does not read back (%s)",
                            c.text());
    const char *lost = nullptr;
    OFString a, b;
    for (const header_attr &h : kHeader) {
        (back.*h.get)(b, -1);
        if (h.tag == DCM_StudyInstanceUID)
            a = x.study.c_str();
        else if (h.tag == DCM_SeriesInstanceUID)
            a = x.series.c_str();
        else if (h.tag == DCM_SOPInstanceUID)
            a = x.sop.c_str();
        else
            (doc.*h.get)(a, -1);
        if (a != b) {
            lost = h.name;
            break;
        }
    }
    if (!lost && (back.getDocumentType() != doc.getDocumentType() ||
                  back.getSpecificCharacterSetType() != doc.getSpecificCharacterSetType() ||
                  back.getCompletionFlag() != doc.getCompletionFlag() ||
                  back.getVerificationFlag() != doc.getVerificationFlag() ||
                  back.getPreliminaryFlag() != doc.getPreliminaryFlag()))
        lost = "the document type, character set or a flag";
    if (!lost && (back.getCurrentRequestedProcedureEvidence().getNumberOfInstances() !=
                      doc.getCurrentRequestedProcedureEvidence().getNumberOfInstances() ||
                  back.getPredecessorDocuments().getNumberOfInstances() !=
                      doc.getPredecessorDocuments().getNumberOfInstances() ||
                  back.getCodingSchemeIdentification().getNumberOfItems() !=
                      doc.getCodingSchemeIdentification().getNumberOfItems() ||
                  back.getNumberOfVerifyingObservers() != doc.getNumberOfVerifyingObservers()))
        lost = "a reference, coding scheme or verifying observer";
    for (size_t i = 1; !lost && i <= doc.getNumberOfVerifyingObservers(); i++) {
        OFString dt[2], name[2], org[2];
        doc.getVerifyingObserver(i, dt[0], name[0], org[0]);
        back.getVerifyingObserver(i, dt[1], name[1], org[1]);
        if (dt[0] != dt[1] || name[0] != name[1] || org[0] != org[1])
            lost = "a verifying observer";
    }
    // The content tree, node by node in document order: each node's relationship, value
    // type, concept name and value (DSRDocumentTreeNode::operator==) and its level.
    DSRDocumentTree &t0 = doc.getTree(), &t1 = back.getTree();
    OFString tid[2], res[2];
    t0.getTemplateIdentification(tid[0], res[0]);
    t1.getTemplateIdentification(tid[1], res[1]);
    if (!lost && (tid[0] != tid[1] || res[0] != res[1]))
        lost = "the template identification";
    size_t n0 = t0.gotoRoot(), n1 = t1.gotoRoot();
    while (!lost && (n0 != 0 || n1 != 0)) {
        const DSRDocumentTreeNode *p = t0.getCurrentNode(), *q = t1.getCurrentNode();
        if (n0 == 0 || n1 == 0 || !p || !q || *p != *q || t0.getLevel() != t1.getLevel())
            lost = "a content item";
        n0 = t0.iterate();
        n1 = t1.iterate();
    }
    if (lost)
        return rd_error_set(err, RD_E_NOMEM,
                            "out of memory writing the SR: DCMTK left out %s (the file read "
                            "back differs from the document)",
                            lost);
    return RD_OK;
}

// A temporary file beside the output, removed when it goes out of scope unless it was
// renamed into place: an early return or an exception (a std::bad_alloc out of DCMTK while
// it writes) leaves no temporary behind.
struct temp_file {
    std::vector<char> name;
    bool created = false;
    ~temp_file()
    {
        if (created)
            unlink(name.data());
    }
};

// Whether the file meta header names the dataset's class and instance, Explicit VR Little
// Endian and radraft. DCMTK's validateMetaInfo drops the condition of every value it makes
// there (a value whose buffer it cannot allocate is left empty), so a header is checked
// before it is written: every value is ours and valid, so only an exhausted heap leaves one
// out.
bool meta_complete(DcmMetaInfo *meta, DcmDataset *ds)
{
    OFString a, b;
    const Uint8 *version = nullptr;
    unsigned long n = 0;
    auto same = [&](const DcmTagKey &in_meta, const DcmTagKey &in_ds) {
        return meta->findAndGetOFString(in_meta, a).good() &&
               ds->findAndGetOFString(in_ds, b).good() && !a.empty() && a == b;
    };
    auto is = [&](const DcmTagKey &tag, const char *v) {
        return meta->findAndGetOFString(tag, a).good() && a == v;
    };
    return same(DCM_MediaStorageSOPClassUID, DCM_SOPClassUID) &&
           same(DCM_MediaStorageSOPInstanceUID, DCM_SOPInstanceUID) &&
           is(DCM_TransferSyntaxUID, UID_LittleEndianExplicitTransferSyntax) &&
           is(DCM_ImplementationClassUID, RD_SR_IMPLEMENTATION_CLASS_UID) &&
           is(DCM_ImplementationVersionName, RD_SR_IMPLEMENTATION_VERSION_NAME) &&
           meta->findAndGetUint8Array(DCM_FileMetaInformationVersion, version, &n).good() &&
           version && n == 2 && version[0] == 0 && version[1] == 1;
}

// Writes `ff` to `path` through a temporary file, which is checked against `x`
// (check_written) before it is renamed into place.
rd_status save_atomic(DcmFileFormat &ff, const sr_expect &x, const char *path, rd_error *err)
{
    char tmp_name[4096];
    if (!rd_temp_name(tmp_name, sizeof tmp_name - 7, path))
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", path);
    std::string tmp = std::string(tmp_name) + "-XXXXXX";
    temp_file t;
    t.name.assign(tmp.begin(), tmp.end());
    t.name.push_back('\0');
    int fd = mkstemp(t.name.data());
    if (fd < 0)
        return rd_error_set(err, RD_E_IO, "%s: cannot create a temporary file: %s", path,
                            std::strerror(errno));
    t.created = true;
    close(fd);
    // radraft's own implementation identification rather than DCMTK's (which saveFile
    // would write when the meta information is created afresh).
    DcmMetaInfo *meta = ff.getMetaInfo();
    OFCondition c = ff.validateMetaInfo(EXS_LittleEndianExplicit, EWM_createNewMeta);
    if (c.good())
        c = meta->putAndInsertString(DCM_ImplementationClassUID, RD_SR_IMPLEMENTATION_CLASS_UID);
    if (c.good())
        c = meta->putAndInsertString(DCM_ImplementationVersionName,
                                     RD_SR_IMPLEMENTATION_VERSION_NAME);
    if (c.good() && !meta_complete(meta, ff.getDataset()))
        return rd_error_set(err, RD_E_NOMEM, "%s: out of memory making the file meta header", path);
    if (c.good())
        c = meta->computeGroupLengthAndPadding(EGL_recalcGL, EPD_noChange, EXS_LittleEndianExplicit,
                                               EET_ExplicitLength);
    if (c.good())
        c = ff.saveFile(t.name.data(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL,
                        EPD_noChange, 0, 0, EWM_dontUpdateMeta);
    if (c.bad())
        return rd_error_set(err, rd__dcm_build_status(c, RD_E_IO), "%s: %s", path, c.text());
    rd_status st = check_written(x, t.name.data(), err);
    if (st != RD_OK)
        return st;
    fd = open(t.name.data(), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    if (std::rename(t.name.data(), path) != 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, std::strerror(errno));
    t.created = false;
    return RD_OK;
}

// What an SR says about the equipment that contributed to it.
struct equipment {
    const char *purpose_value; // Purpose of Reference (CID 7005)
    const char *purpose_scheme;
    const char *purpose_meaning;
    const char *description;
    std::string device_uid; // "": no Device UID
};

rd_status put_contributing_equipment(DcmItem *ds, const std::string &model_name,
                                     const std::string &model_version, const equipment &what,
                                     rd_error *err)
{
    DcmItem *eq = nullptr, *purpose = nullptr;
    // Software Versions is multi-valued (LO, 64 characters a value): radraft's own version,
    // then the model's, so that neither has to share a value with the other.
    std::string versions = std::string("radraft " RD_VERSION "\\") + model_version;
    OFCondition c = ds->findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, eq, -2);
    if (c.good())
        c = eq->putAndInsertString(DCM_Manufacturer, "radraft");
    if (c.good())
        c = eq->putAndInsertString(DCM_ManufacturerModelName, model_name.c_str());
    if (c.good())
        c = eq->putAndInsertString(DCM_SoftwareVersions, versions.c_str());

    if (c.good() && !what.device_uid.empty())
        c = eq->putAndInsertString(DCM_DeviceUID, what.device_uid.c_str());
    if (c.good())
        c = eq->putAndInsertString(DCM_ContributionDateTime, now_dt("%Y%m%d%H%M%S").c_str());
    if (c.good())
        c = eq->putAndInsertString(DCM_ContributionDescription, what.description);
    if (c.good())
        c = eq->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, -2);
    if (c.good())
        c = purpose->putAndInsertString(DCM_CodeValue, what.purpose_value);
    if (c.good())
        c = purpose->putAndInsertString(DCM_CodingSchemeDesignator, what.purpose_scheme);
    if (c.good())
        c = purpose->putAndInsertString(DCM_CodeMeaning, what.purpose_meaning);
    if (c.bad())
        return rd_error_set(err, rd__dcm_build_status(c, RD_E_DICOM),
                            "Contributing Equipment Sequence: %s", c.text());
    return RD_OK;
}

// Declares radraft's private scheme in the Coding Scheme Identification Sequence when the
// tree holds a code of it (and only then: a validator flags any scheme it does not know).
rd_status add_scheme_if_used(DSRDocument &doc, const rd_sr_codes &codes, rd_error *err)
{
    DSRDocumentTree &t = doc.getTree();
    bool used = false;
    for (size_t id = t.gotoRoot(); id != 0 && !used; id = t.iterate()) {
        DSRContentItem &it = t.getCurrentContentItem();
        if (it.getConceptName().getCodingSchemeDesignator() == codes.private_scheme ||
            (it.getValueType() == DSRTypes::VT_Code &&
             it.getCodeValue().getCodingSchemeDesignator() == codes.private_scheme))
            used = true;
    }
    DSRCodingSchemeIdentificationList &l = doc.getCodingSchemeIdentification();
    l.clear();
    if (!used)
        return RD_OK;
    OFCondition c = l.addItem(codes.private_scheme, "", codes.private_scheme_name,
                              codes.private_scheme_responsible);
    if (c.bad())
        return rd_error_set(err, rd__dcm_build_status(c, RD_E_DICOM),
                            "Coding Scheme Identification: %s", c.text());
    return RD_OK;
}

// Series Date, Series Time and the Timezone Offset From UTC of the moment of writing
// (Orthanc and other PACS list a series by its date).
rd_status set_series_time(DSRDocument &doc, rd_error *err)
{
    time_t t = time(nullptr);
    struct tm tm;
    char date[16] = "", tod[16] = "", tz[8] = "+0000";
    if (localtime_r(&t, &tm)) {
        strftime(date, sizeof date, "%Y%m%d", &tm);
        strftime(tod, sizeof tod, "%H%M%S", &tm);
        long off = tm.tm_gmtoff / 60;
        long a = off < 0 ? -off : off;
        std::snprintf(tz, sizeof tz, "%c%02ld%02ld", off < 0 ? '-' : '+', (a / 60) % 100, a % 60);
    }
    OFCondition c = doc.setSeriesDate(date);
    if (c.good())
        c = doc.setSeriesTime(tod);
    if (c.good())
        c = doc.setTimezoneOffsetFromUTC(tz);
    if (c.bad())
        return rd_error_set(err, rd__dcm_build_status(c, RD_E_DICOM), "series date and time: %s",
                            c.text());
    return RD_OK;
}

// Called once the output is in place, so it allocates nothing (an exception now would
// report a failure for an SR that was written).
void fill_result(rd_sr_result *res, const char *study, const char *series, const char *sop,
                 const char *sop_class, int n_evidence, const char *warning)
{
    if (!res)
        return;
    std::memset(res, 0, sizeof *res);
    put(res->study_uid, sizeof res->study_uid, study);
    put(res->series_uid, sizeof res->series_uid, series);
    put(res->sop_instance_uid, sizeof res->sop_instance_uid, sop);
    put(res->sop_class_uid, sizeof res->sop_class_uid, sop_class);
    res->n_evidence = n_evidence;
    put(res->warning, sizeof res->warning, warning);
}

rd_status load_file(DcmFileFormat &ff, const char *path, rd_error *err)
{
    struct stat st;
    if (!path || !path[0])
        return rd_error_set(err, RD_E_INVALID, "no file name");
    if (stat(path, &st) != 0)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s", path,
                            std::strerror(errno));
    if (static_cast<long long>(st.st_size) > RD_DICOM_MAX_FILE_BYTES)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: file too large", path);
    // Values over 4 KiB (pixel data) stay on disk: only header attributes are needed. The
    // loader checks every length against the file (a deflated file is inflated within a cap)
    // before DCMTK loads a value at its claimed length (dcm_load.h).
    E_TransferSyntax xfer = EXS_Unknown;
    unsigned long long size = 0;
    rd_status rs = rd__dcm_load_file(ff, path, true, 4096, &xfer, &size, err);
    if (rs != RD_OK)
        return rd_error_prefix(err, rs == RD_E_CORRUPT ? RD_E_DICOM : rs, "%s", path);
    return RD_OK;
}

// Reads an SR file into `doc`, its text converted to UTF-8 first when it uses another
// character set (so that what we copy or return is UTF-8).
rd_status read_sr(DcmFileFormat &ff, DSRDocument &doc, const char *path, size_t flags,
                  rd_error *err)
{
    rd_status st = load_file(ff, path, err);
    if (st != RD_OK)
        return st;
    DcmDataset *ds = ff.getDataset();
    std::string cs = get_str(ds, DCM_SpecificCharacterSet);
    if (!cs.empty() && cs != "ISO_IR 192" && cs != "ISO_IR 6") {
        OFCondition c = ds->convertToUTF8();
        if (c.bad())
            return rd_error_set(err, rd__dcm_status(c, RD_E_DICOM), "%s: character set '%s': %s",
                                path, cs.c_str(), c.text());
    }
    OFCondition c = doc.read(*ds, flags);
    if (c.bad())
        return rd_error_set(err, rd__dcm_status(c, RD_E_DICOM),
                            "%s: not a readable SR document: %s", path, c.text());
    return RD_OK;
}

bool is_node(DSRContentItem &it, DSRTypes::E_ValueType vt, const DSRCodedEntryValue &name)
{
    return it.getValueType() == vt && it.getConceptName() == name;
}

// The sources of a draft: one study, one patient, each with its UIDs; the first one's
// metadata and its texts that the SR copies (converted to UTF-8, or left empty with a note
// in `warning`).
rd_status read_sources(const char *const *sources, size_t n_sources, std::vector<source_ref> &refs,
                       rd_dicom_meta &meta, std::string &referring, std::string &study_id,
                       std::string &warning, rd_error *err)
{
    rd_status st;
    for (size_t i = 0; i < n_sources; i++) {
        DcmFileFormat ff;
        st = load_file(ff, sources[i], err);
        if (st != RD_OK)
            return st;
        DcmDataset *ds = ff.getDataset();
        source_ref r{get_str(ds, DCM_StudyInstanceUID), get_str(ds, DCM_SeriesInstanceUID),
                     get_str(ds, DCM_SOPClassUID), get_str(ds, DCM_SOPInstanceUID)};
        if (!rd_uid_valid(r.study.c_str()) || !rd_uid_valid(r.series.c_str()) ||
            !rd_uid_valid(r.sop_class.c_str()) || !rd_uid_valid(r.sop.c_str()))
            return rd_error_set(err, RD_E_INVALID,
                                "%s: missing or malformed study, series or SOP UIDs", sources[i]);
        if (i == 0) {
            rd_dicom_options opts = {16384, 0.5, 99.5};
            st = rd__dicom_load(sources[i], &opts, &meta, nullptr, err);
            if (st != RD_OK)
                return prefix_error(err, st, sources[i]);
            if (!source_text_utf8(ds, DCM_ReferringPhysicianName, "\\^=", referring))
                warning = "Referring Physician's Name not convertible to UTF-8; left empty";
            if (!source_text_utf8(ds, DCM_StudyID, "\\", study_id))
                warning = "Study ID not convertible to UTF-8; left empty";
        } else if (r.study != refs[0].study) {
            return rd_error_set(err, RD_E_INVALID,
                                "%s belongs to study %s, not %s: one report per study", sources[i],
                                r.study.c_str(), refs[0].study.c_str());
        }
        refs.push_back(r);
    }
    // Several patients in one study is a source error we refuse to paper over.
    for (size_t i = 1; i < n_sources; i++) {
        rd_dicom_meta m;
        rd_dicom_options opts = {16384, 0.5, 99.5};
        st = rd__dicom_load(sources[i], &opts, &m, nullptr, err);
        if (st != RD_OK)
            return prefix_error(err, st, sources[i]);
        if (std::strcmp(m.patient_id, meta.patient_id) != 0)
            return rd_error_set(err, RD_E_INVALID,
                                "%s has another Patient ID than %s: one patient per report",
                                sources[i], sources[0]);
    }

    return RD_OK;
}

// The patient and study attributes of a new SR, copied from its source (see set_or_note).
void set_study_header(DSRDocument &doc, const rd_dicom_meta &meta, const std::string &referring,
                      const std::string &study_id, std::string &warning)
{
    auto setter = [&doc](OFCondition (DSRDocument::*fn)(const OFString &, const OFBool)) {
        return [&doc, fn](const std::string &v, bool check) {
            return (doc.*fn)(v.c_str(), check ? OFTrue : OFFalse);
        };
    };
    set_or_note(setter(&DSRDocument::setPatientName), meta.patient_name, "Patient's Name", warning);
    set_or_note(setter(&DSRDocument::setPatientID), meta.patient_id, "Patient ID", warning);
    set_or_note(setter(&DSRDocument::setPatientBirthDate), meta.patient_birth_date,
                "Patient's Birth Date", warning);
    std::string sex = meta.patient_sex;
    set_or_note(setter(&DSRDocument::setPatientSex),
                sex == "M" || sex == "F" || sex == "O" ? sex : std::string(), "Patient's Sex",
                warning);
    set_or_note(setter(&DSRDocument::setStudyDate), meta.study_date, "Study Date", warning);
    set_or_note(setter(&DSRDocument::setStudyTime), meta.study_time, "Study Time", warning);
    set_or_note(setter(&DSRDocument::setAccessionNumber), meta.accession_number, "Accession Number",
                warning);
    set_or_note(setter(&DSRDocument::setReferringPhysicianName), referring,
                "Referring Physician's Name", warning);
    set_or_note(setter(&DSRDocument::setStudyID), study_id, "Study ID", warning);
    set_or_note(setter(&DSRDocument::setStudyDescription), meta.study_description,
                "Study Description", warning);
}

rd_status draft_impl(const rd_sr_params *p, const char *out_path, rd_sr_result *res, rd_error *err)
{
    init_once();
    if (!p || !out_path || !out_path[0])
        return rd_error_set(err, RD_E_INVALID, "missing parameters or output path");
    if (p->n_sources == 0 || !p->sources)
        return rd_error_set(err, RD_E_INVALID, "no source instances");
    if (p->n_sources > RD_SR_MAX_SOURCES)
        return rd_error_set(err, RD_E_TOO_LARGE, "%zu source instances (at most %d)", p->n_sources,
                            RD_SR_MAX_SOURCES);
    rd_status st = check_text("findings", p->findings_text, err);
    if (st == RD_OK)
        st = check_text("impression", p->impression_text, err);
    if (st != RD_OK)
        return st;
    if (!p->model_name || !p->model_name[0] || !p->model_version || !p->model_version[0])
        return rd_error_set(err, RD_E_INVALID, "the model name and version are required");
    if (std::strlen(p->model_name) > 64 || std::strlen(p->model_version) > 64 ||
        !valid_utf8(p->model_name) || !valid_utf8(p->model_version))
        return rd_error_set(err, RD_E_INVALID,
                            "model name or version longer than 64 bytes, or not UTF-8");
    if (!p->codes)
        return rd_error_set(err, RD_E_INVALID, "no code table");
    content c;
    c.codes = p->codes;
    st = check_findings(p->findings, p->n_findings, c.findings, err);
    if (st != RD_OK)
        return st;
    c.findings_text = p->findings_text;
    c.impression_text = p->impression_text;
    c.device_uid = p->device_uid && p->device_uid[0] ? p->device_uid : RD_SR_DEFAULT_DEVICE_UID;
    if (!rd_uid_valid(c.device_uid.c_str()))
        return rd_error_set(err, RD_E_INVALID, "device UID '%s' is not a valid UID",
                            c.device_uid.c_str());
    c.model = std::string("radraft ") + p->model_name + " " + p->model_version;
    if (p->series_number < 0)
        return rd_error_set(err, RD_E_INVALID, "negative series number");
    int series_number = p->series_number ? p->series_number : RD_SR_DEFAULT_SERIES_NUMBER;

    std::vector<source_ref> refs;
    rd_dicom_meta meta;
    std::string referring, study_id, warning;
    if ((st = read_sources(p->sources, p->n_sources, refs, meta, referring, study_id, warning,
                           err)) != RD_OK)
        return st;

    DSRDocument doc;
    OFCondition cond = doc.createNewDocument(DSRTypes::DT_EnhancedSR);
    if (cond.good())
        cond = doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
    if (cond.good())
        cond = doc.createNewSeriesInStudy(refs[0].study.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "new SR document: %s",
                            cond.text());
    set_study_header(doc, meta, referring, study_id, warning);
    char num[16];
    std::snprintf(num, sizeof num, "%d", series_number);
    cond = doc.setSeriesNumber(num);
    if (cond.good())
        cond = doc.setInstanceNumber("1");
    if (cond.good())
        cond = doc.setSeriesDescription(RD_SR_DRAFT_SERIES_DESCRIPTION);
    if (cond.good())
        cond = doc.setManufacturer("radraft");
    if (cond.good())
        cond = doc.setManufacturerModelName(p->model_name);
    if (cond.good())
        cond = doc.setSoftwareVersions("radraft " RD_VERSION);
    if (cond.good())
        cond = doc.setPreliminaryFlag(DSRTypes::PF_Preliminary);
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "SR header: %s",
                            cond.text());
    for (const source_ref &r : refs) {
        cond = doc.getCurrentRequestedProcedureEvidence().addItem(
            r.study.c_str(), r.series.c_str(), r.sop_class.c_str(), r.sop.c_str());
        if (cond.bad())
            return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "evidence %s: %s",
                                r.sop.c_str(), cond.text());
    }
    st = build_tree(doc.getTree(), c, err);
    if (st == RD_OK)
        st = add_scheme_if_used(doc, *p->codes, err);
    if (st == RD_OK)
        st = set_series_time(doc, err);
    if (st != RD_OK)
        return st;

    std::string series_uid, sop_uid;
    if (!make_uid(series_uid) || !make_uid(sop_uid))
        return rd_error_set(err, RD_E_IO, "no random bytes for UIDs: %s", std::strerror(errno));
    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    cond = doc.write(*ds);
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM),
                            "writing the SR dataset: %s", cond.text());
    const equipment eq = {"109102", "DCM", "Processing Equipment",
                          "Report draft generated from image findings", std::string()};
    st = put_contributing_equipment(ds, p->model_name, p->model_version, eq, err);
    const sr_expect x = {&doc, refs[0].study, series_uid, sop_uid};
    if (st == RD_OK)
        st = save_atomic(ff, x, out_path, err);
    if (st != RD_OK)
        return st;
    fill_result(res, refs[0].study.c_str(), series_uid.c_str(), sop_uid.c_str(),
                UID_EnhancedSRStorage, static_cast<int>(refs.size()), warning.c_str());
    return RD_OK;
}

// Whether the cursor is on an item of a person observer in the root's observer context
// (TID 1002 with TID 1003): what an amendment replaces by the amending radiologist's.
bool on_person_observer_item(DSRDocumentTree &t)
{
    DSRContentItem &it = t.getCurrentContentItem();
    if (t.getLevel() != 2 || it.getRelationshipType() != DSRTypes::RT_hasObsContext)
        return false;
    const DSRCodedEntryValue &n = it.getConceptName();
    if (n == kObserverType)
        return it.getValueType() == DSRTypes::VT_Code && it.getCodeValue() == kPerson;
    return n == kPersonName || n == kPersonOrg || n == kPersonRoleInOrg || n == kPersonRoleInProc;
}

// Puts the verifier in the root's observer context as a person observer, before the
// device observer (or, lacking one, before the first section), after removing any person
// observer there was.
rd_status put_person_observer(DSRDocumentTree &t, const char *name, const char *org,
                              const char *path, rd_error *err)
{
    for (;;) {
        bool removed = false;
        for (size_t id = t.gotoRoot(); id != 0; id = t.iterate()) {
            if (on_person_observer_item(t)) {
                t.removeCurrentContentItem();
                removed = true;
                break;
            }
        }
        if (!removed)
            break;
    }
    size_t before = 0;
    if (t.gotoRoot() != 0 && t.goDown() != 0) {
        do {
            DSRContentItem &it = t.getCurrentContentItem();
            if ((it.getRelationshipType() == DSRTypes::RT_hasObsContext &&
                 it.getConceptName() == kObserverType) ||
                it.getRelationshipType() == DSRTypes::RT_contains) {
                before = t.getNodeID();
                break;
            }
        } while (t.gotoNext() != 0);
    }
    if (before == 0 || t.gotoNode(before) == 0)
        return rd_error_set(err, RD_E_INVALID, "%s: no place for the observer context", path);
    tree_builder b(t);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, DSRTypes::AM_beforeCurrent, kObserverType);
    b.code(kPerson, kObserverType);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_PName, DSRTypes::AM_afterCurrent, kPersonName);
    b.text(name, kPersonName);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent, kPersonOrg);
    b.text(org, kPersonOrg);
    if (!b.ok())
        return rd_error_set(err, b.status(RD_E_INVALID), "person observer: %s", b.msg().c_str());
    return RD_OK;
}

// The Author Observer Sequence (SR Document General Module, Identified Person or Device
// Macro): the radiologist who wrote the final text. dcmsr 3.6 does not model it.
rd_status put_author_observer(DcmItem *ds, const char *name, const char *org, rd_error *err)
{
    DcmItem *a = nullptr;
    ds->findAndDeleteElement(DCM_AuthorObserverSequence);
    OFCondition c = ds->findOrCreateSequenceItem(DCM_AuthorObserverSequence, a, -2);
    if (c.good())
        c = a->putAndInsertString(DCM_ObserverType, "PSN");
    if (c.good())
        c = a->putAndInsertString(DCM_PersonName, name);
    // Type 2C for a person: present, and empty, since radraft has no code for the person.
    if (c.good())
        c = a->insertEmptyElement(DCM_PersonIdentificationCodeSequence);
    if (c.good())
        c = a->putAndInsertString(DCM_InstitutionName, org);
    // Type 2 in dicom3tools' macro (1C in later editions of PS3.3): empty, no code either.
    if (c.good())
        c = a->insertEmptyElement(DCM_InstitutionCodeSequence);
    if (c.bad())
        return rd_error_set(err, rd__dcm_build_status(c, RD_E_DICOM),
                            "Author Observer Sequence: %s", c.text());
    return RD_OK;
}

long to_long(const OFString &s)
{
    char *end = nullptr;
    long v = std::strtol(s.c_str(), &end, 10);
    return end && end != s.c_str() ? v : 0;
}

// What signing needs besides the tree's changes, common to the text report and the AI
// results: who signs, which instance and series the signed version gets.
struct sign_request {
    const char *verifier_name;
    const char *organization;
    const char *datetime;
    const char *sop_instance_uid;
    int amend;
    int series_number;
    const char *series_namespace; // of the study's signed series (see name_uid)
    long default_series_number;
    const char *series_description;
    const rd_sr_codes *codes; // NULL: the Coding Scheme Identification is left as it was
};

// A signing in progress: the input read and checked, the output's instance and series.
struct signing {
    DcmFileFormat in_ff;
    DSRDocument doc;
    OFString study, series, sop_class, sop, instance_number;
    std::string sop_uid, signed_series;
    long series_number = 0;
};

// Checks the request, reads the input (a draft, or a signed SR to amend) and works out the
// signed version's series and number.
rd_status sign_begin(const char *in_path, const sign_request &q, signing &g, rd_error *err)
{
    if (!q.verifier_name || !q.verifier_name[0] || !q.organization || !q.organization[0])
        return rd_error_set(err, RD_E_INVALID,
                            "the verifier's name and organization are "
                            "required");
    if (!valid_utf8(q.verifier_name) || !valid_utf8(q.organization))
        return rd_error_set(err, RD_E_INVALID, "verifier or organization is not UTF-8");
    if (q.series_number < 0)
        return rd_error_set(err, RD_E_INVALID, "negative series number");
    if (q.sop_instance_uid && q.sop_instance_uid[0]) {
        g.sop_uid = q.sop_instance_uid;
        if (!rd_uid_valid(g.sop_uid.c_str()))
            return rd_error_set(err, RD_E_INVALID, "SOP Instance UID '%.64s' is not a valid UID",
                                q.sop_instance_uid);
    }
    rd_status st = read_sr(g.in_ff, g.doc, in_path, 0, err);
    if (st == RD_OK)
        st = check_read(g.doc, *g.in_ff.getDataset(), in_path, err);
    if (st != RD_OK)
        return st;
    DSRDocument &doc = g.doc;
    bool verified = doc.getVerificationFlag() == DSRTypes::VF_Verified;
    bool complete = doc.getCompletionFlag() == DSRTypes::CF_Complete;
    if (!q.amend && (verified || complete))
        return rd_error_set(err, RD_E_INVALID,
                            "%s is already complete or verified; sign the draft, or amend "
                            "the signed SR",
                            in_path);
    if (q.amend && !(verified && complete))
        return rd_error_set(err, RD_E_INVALID,
                            "%s is not a signed SR (complete and verified); only a signed SR "
                            "is amended",
                            in_path);
    OFString input_series_number;
    doc.getStudyInstanceUID(g.study);
    doc.getSeriesInstanceUID(g.series);
    doc.getSOPClassUID(g.sop_class);
    doc.getSOPInstanceUID(g.sop);
    doc.getInstanceNumber(g.instance_number);
    doc.getSeriesNumber(input_series_number);
    if (!g.sop_uid.empty() && g.sop_uid == g.sop.c_str())
        return rd_error_set(err, RD_E_INVALID,
                            "the SOP Instance UID asked for is %s's own: a signed SR is a new "
                            "instance",
                            in_path);
    if (!rd_uid_valid(g.study.c_str()) ||
        !name_uid(q.series_namespace, g.study.c_str(), g.signed_series))
        return rd_error_set(err, RD_E_INVALID, "%s: malformed Study Instance UID", in_path);
    // The signed series keeps one number: an amendment of an SR already in it keeps its
    // number; anything else gets the caller's or the default.
    long in_series = to_long(input_series_number);
    g.series_number = q.series_number;
    if (g.series_number == 0)
        g.series_number = q.amend && g.series == g.signed_series.c_str() && in_series > 0
                              ? in_series
                              : q.default_series_number;
    if (!q.amend && g.series_number == in_series)
        return rd_error_set(err, RD_E_INVALID,
                            "series number %ld is the draft's; the signed series needs "
                            "another",
                            g.series_number);
    return RD_OK;
}

// Writes the signed version of g.doc (its tree already changed) to `out_path`: a new
// instance (or, amending, dcmsr's revised version) in the signed series, COMPLETE, VERIFIED,
// FINAL, the predecessor, the verifying and author observers, the input's Contributing
// Equipment Sequence.
rd_status sign_finish(signing &g, const sign_request &q, const char *out_path, rd_sr_result *res,
                      rd_error *err)
{
    DSRDocument &doc = g.doc;
    rd_status st;
    long inst = to_long(g.instance_number);
    char num[24], series_num[24];
    std::snprintf(num, sizeof num, "%ld", inst > 0 && inst < 1000000000L ? inst + 1 : 2);
    std::snprintf(series_num, sizeof series_num, "%ld", g.series_number);
    OFCondition cond;
    if (q.amend) {
        // dcmsr's revision: the input becomes the only predecessor, and its verification
        // and completion are reset for the new version's.
        cond = doc.createRevisedVersion(OFTrue);
    } else {
        doc.createNewSOPInstance();
        doc.getPredecessorDocuments().clear();
        cond = doc.getPredecessorDocuments().addItem(g.study, g.series, g.sop_class, g.sop);
    }
    if (cond.good())
        cond = doc.setInstanceNumber(num);
    if (cond.good())
        cond = doc.setSeriesNumber(series_num);
    if (cond.good())
        cond = doc.setSeriesDescription(q.series_description);
    if (cond.good())
        cond = doc.setContentDate(now_dt("%Y%m%d").c_str());
    if (cond.good())
        cond = doc.setContentTime(now_dt("%H%M%S").c_str());
    if (cond.good())
        cond = doc.completeDocument();
    if (cond.good())
        cond = doc.setPreliminaryFlag(DSRTypes::PF_Final);
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "signed SR header: %s",
                            cond.text());
    if (q.codes && (st = add_scheme_if_used(doc, *q.codes, err)) != RD_OK)
        return st;
    if ((st = set_series_time(doc, err)) != RD_OK)
        return st;
    std::string dt = q.datetime && q.datetime[0] ? q.datetime : now_dt("%Y%m%d%H%M%S");
    cond = doc.verifyDocument(q.verifier_name, q.organization, dt.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_INVALID), "verifying observer: %s",
                            cond.text());
    // verifyDocument succeeds even when DCMTK could not store a value of the observer.
    OFString v_dt, v_name, v_org;
    doc.getVerifyingObserver(doc.getNumberOfVerifyingObservers(), v_dt, v_name, v_org);
    if (v_dt != dt.c_str() || v_name != q.verifier_name || v_org != q.organization)
        return rd_error_set(err, RD_E_NOMEM, "out of memory storing the verifying observer");

    if (g.sop_uid.empty() && !make_uid(g.sop_uid))
        return rd_error_set(err, RD_E_IO, "no random bytes for UIDs: %s", std::strerror(errno));
    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    cond = doc.write(*ds);
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SeriesInstanceUID, g.signed_series.c_str());
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SOPInstanceUID, g.sop_uid.c_str());
    DcmElement *eq = nullptr;
    if (cond.good() &&
        g.in_ff.getDataset()->findAndGetElement(DCM_ContributingEquipmentSequence, eq).good() &&
        eq) {
        // Owned here until the dataset has it: insert may throw (DcmList allocates a node).
        std::unique_ptr<DcmElement> copy(OFstatic_cast(DcmElement *, eq->clone()));
        if (!copy)
            return rd_error_set(err, RD_E_NOMEM, "out of memory");
        cond = ds->insert(copy.get(), OFTrue);
        if (cond.good())
            copy.release();
    }
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM),
                            "writing the signed SR dataset: %s", cond.text());
    st = put_author_observer(ds, q.verifier_name, q.organization, err);
    OFString sop_class;
    doc.getSOPClassUID(sop_class);
    const int n_evidence =
        static_cast<int>(doc.getCurrentRequestedProcedureEvidence().getNumberOfInstances());
    const sr_expect x = {&doc, g.study.c_str(), g.signed_series, g.sop_uid};
    if (st == RD_OK)
        st = save_atomic(ff, x, out_path, err);
    if (st != RD_OK)
        return st;
    fill_result(res, g.study.c_str(), g.signed_series.c_str(), g.sop_uid.c_str(), sop_class.c_str(),
                n_evidence, "");
    return RD_OK;
}

rd_status signed_impl(const char *draft_path, const rd_sr_sign_params *p, const char *out_path,
                      rd_sr_result *res, rd_error *err)
{
    init_once();
    if (!p || !out_path || !out_path[0])
        return rd_error_set(err, RD_E_INVALID, "missing parameters or output path");
    rd_status st = RD_OK;
    if (p->findings_text)
        st = check_text("findings", p->findings_text, err);
    if (st == RD_OK && p->impression_text)
        st = check_text("impression", p->impression_text, err);
    if (st != RD_OK)
        return st;
    std::vector<coded> findings;
    if (p->replace_findings && !p->codes)
        return rd_error_set(err, RD_E_INVALID, "no code table");
    if (p->replace_findings) {
        st = check_findings(p->findings, p->n_findings, findings, err);
        if (st != RD_OK)
            return st;
    }
    const sign_request q = {p->verifier_name,
                            p->organization,
                            p->datetime,
                            p->sop_instance_uid,
                            p->amend,
                            p->series_number,
                            RD_SR_SIGNED_SERIES_NAMESPACE,
                            RD_SR_DEFAULT_SIGNED_SERIES_NUMBER,
                            "radraft signed reports",
                            p->codes};
    signing g;
    if ((st = sign_begin(draft_path, q, g, err)) != RD_OK)
        return st;

    DSRDocumentTree &t = g.doc.getTree();
    bool has_findings = false, has_impression = false;
    for (size_t id = t.gotoRoot(); id != 0; id = t.iterate()) {
        DSRContentItem &it = t.getCurrentContentItem();
        if (is_node(it, DSRTypes::VT_Text, kFinding)) {
            has_findings = true;
            if (p->findings_text && it.setStringValue(p->findings_text).bad())
                return rd_error_set(err, RD_E_INVALID, "the findings text is not valid");
        } else if (is_node(it, DSRTypes::VT_Text, kImpression)) {
            has_impression = true;
            if (p->impression_text && it.setStringValue(p->impression_text).bad())
                return rd_error_set(err, RD_E_INVALID, "the impression text is not valid");
        }
    }
    if (!has_findings || !has_impression)
        return rd_error_set(err, RD_E_INVALID, "%s has no Finding or no Impression text item",
                            draft_path);
    if (p->replace_findings) {
        // Remove the coded findings (with their properties), one per pass: removing moves
        // the cursor, so each pass starts again from the root.
        for (;;) {
            bool removed = false;
            for (size_t id = t.gotoRoot(); id != 0; id = t.iterate()) {
                if (is_node(t.getCurrentContentItem(), DSRTypes::VT_Code, kFinding)) {
                    t.removeCurrentContentItem();
                    removed = true;
                    break;
                }
            }
            if (!removed)
                break;
        }
        if (t.gotoNamedNode(kFindingsSection) == 0 && t.gotoNamedNode(kLegacyFindingsSection) == 0)
            return rd_error_set(err, RD_E_INVALID, "%s has no Findings section", draft_path);
        // Below the section's last child, after the findings text.
        size_t section = t.getNodeID();
        tree_builder b(t);
        if (t.goDown() != 0) {
            while (t.gotoNext() != 0) {
            }
            b.findings(findings, *p->codes, DSRTypes::AM_afterCurrent);
        } else if (t.gotoNode(section) != 0) {
            b.findings(findings, *p->codes, DSRTypes::AM_belowCurrent);
        }
        if (!b.ok())
            return rd_error_set(err, b.status(RD_E_DICOM), "SR content: %s", b.msg().c_str());
    }
    st = put_person_observer(t, p->verifier_name, p->organization, draft_path, err);
    if (st != RD_OK)
        return st;

    return sign_finish(g, q, out_path, res, err);
}

// ---- the AI results (AIR) SR ----

// A probability or threshold as a DS value (at most 16 characters).
std::string ds_value(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

bool in_unit(double v)
{
    return v >= 0.0 && v <= 1.0;
}

const rd_sr_code &state_code(const rd_sr_codes &codes, int state)
{
    if (state == RD_STATE_PRESENT)
        return codes.present;
    if (state == RD_STATE_UNCERTAIN)
        return codes.uncertain;
    return codes.absent;
}

// The state whose code in `codes` is `cv`, or -1.
int state_of_code(const rd_sr_codes &codes, const DSRCodedEntryValue &cv)
{
    const int states[] = {RD_STATE_PRESENT, RD_STATE_UNCERTAIN, RD_STATE_ABSENT};
    for (int st : states) {
        const rd_sr_code &c = state_code(codes, st);
        if (cv.getCodeValue() == c.value && cv.getCodingSchemeDesignator() == c.scheme)
            return st;
    }
    return -1;
}

bool make_device_uid(const std::string &name, const std::string &version, std::string &out)
{
    return name_uid(RD_SR_AIR_DEVICE_NAMESPACE, name + "\n" + version, out);
}

struct air_content {
    const rd_sr_codes *codes;
    std::string device_uid, device_model, model_name, model_version, parameters;
    std::string frontal_class, frontal_sop;
    rd_sr_air_finding findings[RD_FINDING_N_ABNORMAL];
    std::string tracking_uid[RD_FINDING_N_ABNORMAL];
};

// TID 4019 below the current node (first_mode) or after it.
void add_algorithm(tree_builder &b, const air_content &c, DSRTypes::E_AddMode first_mode)
{
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, first_mode, kAlgorithmName);
    b.text(c.model_name, kAlgorithmName);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent,
          kAlgorithmVersion);
    b.text(c.model_version, kAlgorithmVersion);
    if (!c.parameters.empty()) {
        b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent,
              kAlgorithmParameters);
        b.text(c.parameters, kAlgorithmParameters);
    }
}

void add_threshold(tree_builder &b, double v, const char *meaning)
{
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Num, DSRTypes::AM_afterCurrent, kThresholdValue);
    b.num(ds_value(v), kNoUnits, kThresholdValue);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, DSRTypes::AM_belowCurrent,
          kEquivalentMeaning);
    b.text(meaning, kEquivalentMeaning);
    b.up();
}

rd_status build_air_tree(DSRDocumentTree &t, const air_content &c, rd_error *err)
{
    const rd_sr_codes &codes = *c.codes;
    const DSRCodedEntryValue score = to_dsr(codes.score);
    tree_builder b(t);
    b.add(DSRTypes::RT_isRoot, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent, kAirRoot);
    if (b.ok())
        b.check(t.setTemplateIdentification("1500", "DCMR"), kAirRoot);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRTypes::AM_belowCurrent, kLanguage);
    b.code(kEnglish, kLanguage);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, DSRTypes::AM_afterCurrent, kObserverType);
    b.code(kDevice, kObserverType);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, DSRTypes::AM_afterCurrent, kDeviceUid);
    b.text(c.device_uid, kDeviceUid);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent, kDeviceName);
    b.text("radraft", kDeviceName);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent,
          kDeviceManufacturer);
    b.text("radraft", kDeviceManufacturer);
    b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_afterCurrent, kDeviceModel);
    b.text(c.device_model, kDeviceModel);
    b.add(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRTypes::AM_afterCurrent,
          kProcedureReported);
    b.code(kImagingProcedure, kProcedureReported);

    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent, kImageLibrary);
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_belowCurrent,
          kImageLibraryGroup);
    b.image(DSRTypes::RT_contains, DSRTypes::AM_belowCurrent, c.frontal_class, c.frontal_sop);
    b.up();
    b.up();

    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent,
          kImagingMeasurements);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const rd_sr_air_finding &x = c.findings[f];
        b.add(DSRTypes::RT_contains, DSRTypes::VT_Container,
              f == 0 ? DSRTypes::AM_belowCurrent : DSRTypes::AM_afterCurrent, kMeasurementGroup);
        b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, DSRTypes::AM_belowCurrent,
              kTrackingId);
        b.text(kFindingName[f], kTrackingId);
        b.add(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, DSRTypes::AM_afterCurrent,
              kTrackingUid);
        b.text(c.tracking_uid[f], kTrackingUid);
        b.add(DSRTypes::RT_contains, DSRTypes::VT_Code, DSRTypes::AM_afterCurrent, kFinding);
        b.code(to_dsr(codes.finding[f]), kFinding);
        add_algorithm(b, c, DSRTypes::AM_afterCurrent);
        b.add(DSRTypes::RT_contains, DSRTypes::VT_Num, DSRTypes::AM_afterCurrent, score);
        b.num(ds_value(x.probability), kNoUnits, score);
        b.image(DSRTypes::RT_inferredFrom, DSRTypes::AM_belowCurrent, c.frontal_class,
                c.frontal_sop);
        b.up();
        add_threshold(b, x.present_threshold, kPresentThreshold);
        add_threshold(b, x.uncertain_threshold, kUncertainThreshold);
        b.up();
    }
    b.up();

    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRTypes::AM_afterCurrent,
          kQualitativeEvaluations);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const DSRCodedEntryValue name = to_dsr(codes.finding[f]);
        b.add(DSRTypes::RT_contains, DSRTypes::VT_Code,
              f == 0 ? DSRTypes::AM_belowCurrent : DSRTypes::AM_afterCurrent, name);
        b.code(to_dsr(state_code(codes, enum_value(c.findings[f].state))), name);
    }
    if (!b.ok())
        return rd_error_set(err, b.status(RD_E_DICOM), "AIR SR content: %s", b.msg().c_str());
    return RD_OK;
}

rd_status check_model(const char *name, const char *version, rd_error *err)
{
    if (!name || !name[0] || !version || !version[0])
        return rd_error_set(err, RD_E_INVALID, "the model name and version are required");
    if (std::strlen(name) > 64 || std::strlen(version) > 64 || !valid_utf8(name) ||
        !valid_utf8(version))
        return rd_error_set(err, RD_E_INVALID,
                            "model name or version longer than 64 bytes, or not UTF-8");
    return RD_OK;
}

rd_status air_impl(const rd_sr_air_params *p, const char *out_path, rd_sr_result *res,
                   rd_error *err)
{
    init_once();
    if (!p || !out_path || !out_path[0])
        return rd_error_set(err, RD_E_INVALID, "missing parameters or output path");
    if (p->n_sources == 0 || !p->sources)
        return rd_error_set(err, RD_E_INVALID, "no source instances");
    if (p->n_sources > RD_SR_MAX_SOURCES)
        return rd_error_set(err, RD_E_TOO_LARGE, "%zu source instances (at most %d)", p->n_sources,
                            RD_SR_MAX_SOURCES);
    if (!p->codes)
        return rd_error_set(err, RD_E_INVALID, "no code table");
    rd_status st = check_model(p->model_name, p->model_version, err);
    if (st != RD_OK)
        return st;
    if (!p->frontal_sop_instance_uid || !rd_uid_valid(p->frontal_sop_instance_uid))
        return rd_error_set(err, RD_E_INVALID, "no valid SOP Instance UID of the frontal image");
    air_content c;
    c.codes = p->codes;
    c.model_name = p->model_name;
    c.model_version = p->model_version;
    c.device_model = std::string("radraft ") + p->model_name + " " + p->model_version;
    if (p->algorithm_parameters && p->algorithm_parameters[0]) {
        if (std::strlen(p->algorithm_parameters) > RD_SR_AIR_MAX_PARAMETERS)
            return rd_error_set(err, RD_E_TOO_LARGE, "algorithm parameters over %d bytes",
                                RD_SR_AIR_MAX_PARAMETERS);
        if (!valid_utf8(p->algorithm_parameters))
            return rd_error_set(err, RD_E_INVALID, "algorithm parameters are not UTF-8");
        c.parameters = p->algorithm_parameters;
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const rd_sr_air_finding &x = p->findings[f];
        int state = enum_value(x.state);
        if (state < RD_STATE_NOT_MENTIONED || state > RD_STATE_PRESENT)
            return rd_error_set(err, RD_E_INVALID, "finding %s: state %d", kFindingName[f], state);
        if (!in_unit(x.probability) || !in_unit(x.present_threshold) ||
            !in_unit(x.uncertain_threshold) || x.uncertain_threshold > x.present_threshold)
            return rd_error_set(err, RD_E_INVALID,
                                "finding %s: probability %g or thresholds %g / %g outside [0, 1] "
                                "or out of order",
                                kFindingName[f], x.probability, x.uncertain_threshold,
                                x.present_threshold);
        c.findings[f] = x;
        if (!make_uid(c.tracking_uid[f]))
            return rd_error_set(err, RD_E_IO, "no random bytes for UIDs: %s", std::strerror(errno));
    }
    if (!make_device_uid(c.model_name, c.model_version, c.device_uid))
        return rd_error_set(err, RD_E_INTERNAL, "malformed device namespace");
    int series_number = p->series_number ? p->series_number : RD_SR_AIR_SERIES_NUMBER;
    if (p->series_number < 0)
        return rd_error_set(err, RD_E_INVALID, "negative series number");

    std::vector<source_ref> refs;
    rd_dicom_meta meta;
    std::string referring, study_id, warning;
    if ((st = read_sources(p->sources, p->n_sources, refs, meta, referring, study_id, warning,
                           err)) != RD_OK)
        return st;
    const source_ref *frontal = nullptr;
    for (const source_ref &r : refs)
        if (r.sop == p->frontal_sop_instance_uid)
            frontal = &r;
    if (!frontal)
        return rd_error_set(err, RD_E_INVALID, "the frontal image %s is not among the sources",
                            p->frontal_sop_instance_uid);
    c.frontal_class = frontal->sop_class;
    c.frontal_sop = frontal->sop;

    DSRDocument doc;
    OFCondition cond = doc.createNewDocument(DSRTypes::DT_Comprehensive3DSR);
    if (cond.good())
        cond = doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
    if (cond.good())
        cond = doc.createNewSeriesInStudy(frontal->study.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "new SR document: %s",
                            cond.text());
    set_study_header(doc, meta, referring, study_id, warning);
    char num[16];
    std::snprintf(num, sizeof num, "%d", series_number);
    cond = doc.setSeriesNumber(num);
    if (cond.good())
        cond = doc.setInstanceNumber("1");
    if (cond.good())
        cond = doc.setSeriesDescription(RD_SR_AIR_SERIES_DESCRIPTION);
    if (cond.good())
        cond = doc.setManufacturer("radraft");
    if (cond.good())
        cond = doc.setManufacturerModelName(p->model_name);
    if (cond.good())
        cond = doc.setSoftwareVersions("radraft " RD_VERSION);
    if (cond.good())
        cond = doc.setPreliminaryFlag(DSRTypes::PF_Preliminary);
    if (cond.good())
        cond = doc.getCurrentRequestedProcedureEvidence().addItem(
            frontal->study.c_str(), frontal->series.c_str(), frontal->sop_class.c_str(),
            frontal->sop.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM), "AIR SR header: %s",
                            cond.text());
    st = build_air_tree(doc.getTree(), c, err);
    if (st == RD_OK)
        st = add_scheme_if_used(doc, *p->codes, err);
    if (st == RD_OK)
        st = set_series_time(doc, err);
    if (st != RD_OK)
        return st;

    std::string series_uid, sop_uid;
    if (!make_uid(series_uid) || !make_uid(sop_uid))
        return rd_error_set(err, RD_E_IO, "no random bytes for UIDs: %s", std::strerror(errno));
    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    cond = doc.write(*ds);
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
    if (cond.good())
        cond = ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
    if (cond.bad())
        return rd_error_set(err, rd__dcm_build_status(cond, RD_E_DICOM),
                            "writing the AIR SR dataset: %s", cond.text());
    const equipment eq = {kAirPurposeValue, kAirPurposeScheme, kAirPurposeMeaning,
                          "AI results: the model's calibrated probability and state of each "
                          "finding",
                          c.device_uid};
    st = put_contributing_equipment(ds, p->model_name, p->model_version, eq, err);
    const sr_expect x = {&doc, frontal->study, series_uid, sop_uid};
    if (st == RD_OK)
        st = save_atomic(ff, x, out_path, err);
    if (st != RD_OK)
        return st;
    fill_result(res, frontal->study.c_str(), series_uid.c_str(), sop_uid.c_str(),
                UID_Comprehensive3DSRStorage, 1, warning.c_str());
    return RD_OK;
}

// Whether the document is an AI results SR (its root concept).
bool is_air_doc(DSRDocumentTree &t)
{
    return t.gotoRoot() != 0 && t.getCurrentContentItem().getConceptName() == kAirRoot;
}

// Calls fn(item) for each child of the root's Qualitative Evaluations container; the
// cursor is on the child during the call. False when there is no such container.
template <class F> bool for_each_evaluation(DSRDocumentTree &t, F fn)
{
    if (t.gotoRoot() == 0 || t.goDown() == 0)
        return false;
    do {
        DSRContentItem &it = t.getCurrentContentItem();
        if (it.getValueType() == DSRTypes::VT_Container &&
            it.getConceptName() == kQualitativeEvaluations) {
            if (t.goDown() != 0) {
                do {
                    if (!fn(t.getCurrentContentItem()))
                        break;
                } while (t.gotoNext() != 0);
            }
            return true;
        }
    } while (t.gotoNext() != 0);
    return false;
}

rd_status air_signed_impl(const char *air_path, const rd_sr_air_sign_params *p,
                          const char *out_path, rd_sr_result *res, rd_error *err)
{
    init_once();
    if (!p || !out_path || !out_path[0])
        return rd_error_set(err, RD_E_INVALID, "missing parameters or output path");
    if (!p->codes)
        return rd_error_set(err, RD_E_INVALID, "no code table");
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        int state = enum_value(p->states[f]);
        if (state < RD_STATE_NOT_MENTIONED || state > RD_STATE_PRESENT)
            return rd_error_set(err, RD_E_INVALID, "finding %s: state %d", kFindingName[f], state);
    }
    const sign_request q = {p->verifier_name,
                            p->organization,
                            p->datetime,
                            p->sop_instance_uid,
                            p->amend,
                            p->series_number,
                            RD_SR_AIR_SIGNED_SERIES_NAMESPACE,
                            RD_SR_AIR_SIGNED_SERIES_NUMBER,
                            RD_SR_AIR_SIGNED_SERIES_DESCRIPTION,
                            p->codes};
    signing g;
    rd_status st = sign_begin(air_path, q, g, err);
    if (st != RD_OK)
        return st;
    DSRDocumentTree &t = g.doc.getTree();
    if (!is_air_doc(t))
        return rd_error_set(err, RD_E_INVALID, "%s is not an AI results SR (TID 1500)", air_path);
    // The final states replace the model's, finding by finding.
    bool seen[RD_FINDING_N_ABNORMAL] = {};
    bool bad = false;
    const rd_sr_codes &codes = *p->codes;
    for_each_evaluation(t, [&](DSRContentItem &it) {
        if (it.getValueType() != DSRTypes::VT_Code)
            return true;
        int f = finding_of_code(codes, it.getConceptName());
        if (f < 0)
            return true;
        seen[f] = true;
        bad = bad || it.setCodeValue(to_dsr(state_code(codes, enum_value(p->states[f])))).bad();
        return true;
    });
    if (bad)
        return rd_error_set(err, RD_E_DICOM, "%s: cannot set a final state", air_path);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        if (!seen[f])
            return rd_error_set(err, RD_E_INVALID, "%s has no evaluation of %s", air_path,
                                kFindingName[f]);
    if ((st = put_person_observer(t, p->verifier_name, p->organization, air_path, err)) != RD_OK)
        return st;
    return sign_finish(g, q, out_path, res, err);
}

char *dup_text(const std::string &s)
{
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p)
        std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

// The entry of finding f in info->findings, added (state not mentioned, no score) when
// there is none yet; NULL when full.
auto *info_finding(rd_sr_info *info, int f)
{
    for (int k = 0; k < info->n_findings; k++)
        if (info->findings[k].finding == static_cast<rd_finding>(f))
            return &info->findings[k];
    if (info->n_findings >= RD_FINDING_N_ABNORMAL)
        return static_cast<decltype(&info->findings[0])>(nullptr);
    auto *e = &info->findings[info->n_findings++];
    e->finding = static_cast<rd_finding>(f);
    e->state = RD_STATE_NOT_MENTIONED;
    e->score = -1;
    return e;
}

// An AIR SR's findings: the states of its qualitative evaluations, the probabilities of its
// measurement groups (see radraft/sr.h).
void read_air_findings(DSRDocumentTree &t, const rd_sr_codes &codes, rd_sr_info *info)
{
    for_each_evaluation(t, [&](DSRContentItem &it) {
        int f = it.getValueType() == DSRTypes::VT_Code ? finding_of_code(codes, it.getConceptName())
                                                       : -1;
        int st = f >= 0 ? state_of_code(codes, it.getCodeValue()) : -1;
        auto *e = st >= 0 ? info_finding(info, f) : nullptr;
        if (e)
            e->state = static_cast<rd_finding_state>(st);
        return true;
    });
    const DSRCodedEntryValue score = to_dsr(codes.score);
    for (size_t id = t.gotoRoot(); id != 0; id = t.iterate()) {
        if (!is_node(t.getCurrentContentItem(), DSRTypes::VT_Container, kMeasurementGroup))
            continue;
        size_t group = t.getNodeID();
        int f = -1;
        double p = -1;
        if (t.goDown() != 0) {
            do {
                DSRContentItem &it = t.getCurrentContentItem();
                if (is_node(it, DSRTypes::VT_Code, kFinding))
                    f = finding_of_code(codes, it.getCodeValue());
                else if (p < 0 && is_node(it, DSRTypes::VT_Num, score)) {
                    char *end = nullptr;
                    const OFString &v = it.getNumericValue().getNumericValue();
                    double x = std::strtod(v.c_str(), &end);
                    if (end != v.c_str() && x >= 0 && x <= 1)
                        p = x;
                }
            } while (t.gotoNext() != 0);
        }
        t.gotoNode(group);
        auto *e = f >= 0 ? info_finding(info, f) : nullptr;
        if (e)
            e->score = p;
    }
}

rd_status read_impl(const char *path, const rd_sr_codes *codes, rd_sr_info *info, rd_error *err)
{
    init_once();
    if (!info)
        return rd_error_set(err, RD_E_INVALID, "info is NULL");
    std::memset(info, 0, sizeof *info);
    DcmFileFormat ff;
    DSRDocument doc;
    // Other producers' SRs are read leniently (an invalid image reference, say, is
    // skipped) since only the texts and header are wanted; signing reads strictly.
    rd_status st = read_sr(ff, doc, path,
                           DSRTypes::RF_acceptInvalidContentItemValue |
                               DSRTypes::RF_ignoreRelationshipConstraints |
                               DSRTypes::RF_skipInvalidContentItems,
                           err);
    if (st != RD_OK)
        return st;
    OFString v, dt, name, org;
    DcmDataset *ds = ff.getDataset();
    put(info->sop_class_uid, sizeof info->sop_class_uid, get_str(ds, DCM_SOPClassUID));
    put(info->sop_instance_uid, sizeof info->sop_instance_uid, get_str(ds, DCM_SOPInstanceUID));
    put(info->series_uid, sizeof info->series_uid, get_str(ds, DCM_SeriesInstanceUID));
    put(info->study_uid, sizeof info->study_uid, get_str(ds, DCM_StudyInstanceUID));
    put(info->patient_name, sizeof info->patient_name, get_str(ds, DCM_PatientName));
    put(info->patient_id, sizeof info->patient_id, get_str(ds, DCM_PatientID));
    put(info->accession_number, sizeof info->accession_number, get_str(ds, DCM_AccessionNumber));
    put(info->study_date, sizeof info->study_date, get_str(ds, DCM_StudyDate));
    put(info->study_time, sizeof info->study_time, get_str(ds, DCM_StudyTime));
    put(info->timezone_offset, sizeof info->timezone_offset,
        get_str(ds, DCM_TimezoneOffsetFromUTC));
    const char *s = DSRTypes::completionFlagToEnumeratedValue(doc.getCompletionFlag());
    put(info->completion_flag, sizeof info->completion_flag, s ? s : "");
    s = DSRTypes::verificationFlagToEnumeratedValue(doc.getVerificationFlag());
    put(info->verification_flag, sizeof info->verification_flag, s ? s : "");
    s = DSRTypes::preliminaryFlagToEnumeratedValue(doc.getPreliminaryFlag());
    put(info->preliminary_flag, sizeof info->preliminary_flag, s ? s : "");
    if (doc.getNumberOfVerifyingObservers() > 0 &&
        doc.getVerifyingObserver(1, dt, name, org).good()) {
        put(info->verifier_name, sizeof info->verifier_name, name.c_str());
        put(info->verifier_organization, sizeof info->verifier_organization, org.c_str());
        put(info->verification_datetime, sizeof info->verification_datetime, dt.c_str());
    }
    DSRSOPInstanceReferenceList &pred = doc.getPredecessorDocuments();
    if (pred.gotoFirstItem().good())
        put(info->predecessor_sop_uid, sizeof info->predecessor_sop_uid,
            pred.getSOPInstanceUID(v).c_str());
    info->n_evidence =
        static_cast<int>(doc.getCurrentRequestedProcedureEvidence().getNumberOfInstances());
    put(info->series_description, sizeof info->series_description,
        get_str(ds, DCM_SeriesDescription));
    DcmSequenceOfItems *authors = nullptr;
    if (ds->findAndGetSequence(DCM_AuthorObserverSequence, authors).good() && authors) {
        for (unsigned long k = 0; k < authors->card(); k++) {
            DcmItem *a = authors->getItem(k);
            if (a && get_str(a, DCM_ObserverType) == "PSN") {
                put(info->author_name, sizeof info->author_name, get_str(a, DCM_PersonName));
                put(info->author_organization, sizeof info->author_organization,
                    get_str(a, DCM_InstitutionName));
                break;
            }
        }
    }

    std::string findings, impression;
    bool have_f = false, have_i = false;
    DSRDocumentTree &t = doc.getTree();
    info->is_air = is_air_doc(t);
    for (size_t id = t.gotoRoot(); id != 0; id = t.iterate()) {
        DSRContentItem &it = t.getCurrentContentItem();
        if (!have_f && is_node(it, DSRTypes::VT_Text, kFinding)) {
            findings = it.getStringValue().c_str();
            have_f = true;
        } else if (!have_i && is_node(it, DSRTypes::VT_Text, kImpression)) {
            impression = it.getStringValue().c_str();
            have_i = true;
        } else if (is_node(it, DSRTypes::VT_Text, kDeviceModel)) {
            put(info->device_model_name, sizeof info->device_model_name,
                it.getStringValue().c_str());
        } else if (t.getLevel() == 2 && !info->person_observer_name[0] &&
                   is_node(it, DSRTypes::VT_PName, kPersonName)) {
            put(info->person_observer_name, sizeof info->person_observer_name,
                it.getStringValue().c_str());
        } else if (t.getLevel() == 2 && !info->person_observer_organization[0] &&
                   is_node(it, DSRTypes::VT_Text, kPersonOrg)) {
            put(info->person_observer_organization, sizeof info->person_observer_organization,
                it.getStringValue().c_str());
        } else if (t.getLevel() == 2 && !info->device_uid[0] &&
                   is_node(it, DSRTypes::VT_UIDRef, kDeviceUid)) {
            put(info->device_uid, sizeof info->device_uid, it.getStringValue().c_str());
        } else if (codes && !info->is_air && is_node(it, DSRTypes::VT_Code, kFinding)) {
            const DSRCodedEntryValue &cv = it.getCodeValue();
            int i = finding_of_code(*codes, cv);
            bool seen = false;
            for (int k = 0; k < info->n_findings; k++)
                seen = seen || info->findings[k].finding == static_cast<rd_finding>(i);
            if (i >= 0 && !seen && info->n_findings < RD_FINDING_N_ABNORMAL) {
                int cur = info->n_findings++;
                info->findings[cur].finding = static_cast<rd_finding>(i);
                info->findings[cur].state = RD_STATE_PRESENT;
                info->findings[cur].score = -1;
            }
        }
    }
    if (codes && info->is_air)
        read_air_findings(t, *codes, info);
    if (have_f && !(info->findings_text = dup_text(findings)))
        goto nomem;
    if (have_i && !(info->impression_text = dup_text(impression)))
        goto nomem;
    return RD_OK;
nomem:
    rd_sr_info_free(info);
    return rd_error_set(err, RD_E_NOMEM, "out of memory");
}

// The boundary of the C API: no exception leaves it. `f` returns an rd_status; a
// bad_alloc is RD_E_NOMEM, anything else RD_E_INTERNAL naming `what` was being done.
template <class F> rd_status guarded(rd_error *err, const char *what, F &&f)
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    } catch (...) {
        return rd_error_set(err, RD_E_INTERNAL, "unexpected exception %s", what);
    }
}

} // namespace

extern "C" {

void rd_sr_params_init(rd_sr_params *p)
{
    if (p)
        std::memset(p, 0, sizeof *p);
}

void rd_sr_sign_params_init(rd_sr_sign_params *p)
{
    if (p)
        std::memset(p, 0, sizeof *p);
}

rd_status rd_sr_write_draft(const rd_sr_params *p, const char *out_path, rd_sr_result *res,
                            rd_error *err)
{
    return guarded(err, "writing an SR", [&] { return draft_impl(p, out_path, res, err); });
}

rd_status rd_sr_write_signed(const char *draft_path, const rd_sr_sign_params *p,
                             const char *out_path, rd_sr_result *res, rd_error *err)
{
    return guarded(err, "signing an SR",
                   [&] { return signed_impl(draft_path, p, out_path, res, err); });
}

rd_status rd_sr_read(const char *path, const rd_sr_codes *codes, rd_sr_info *info, rd_error *err)
{
    try {
        return read_impl(path, codes, info, err);
    } catch (const std::bad_alloc &) {
        if (info)
            rd_sr_info_free(info);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    } catch (...) {
        if (info)
            rd_sr_info_free(info);
        return rd_error_set(err, RD_E_INTERNAL, "unexpected exception reading an SR");
    }
}

void rd_sr_air_params_init(rd_sr_air_params *p)
{
    if (p)
        std::memset(p, 0, sizeof *p);
}

void rd_sr_air_sign_params_init(rd_sr_air_sign_params *p)
{
    if (p)
        std::memset(p, 0, sizeof *p);
}

rd_status rd_sr_write_air(const rd_sr_air_params *p, const char *out_path, rd_sr_result *res,
                          rd_error *err)
{
    return guarded(err, "writing an AIR SR", [&] { return air_impl(p, out_path, res, err); });
}

rd_status rd_sr_write_air_signed(const char *air_path, const rd_sr_air_sign_params *p,
                                 const char *out_path, rd_sr_result *res, rd_error *err)
{
    return guarded(err, "signing an AIR SR",
                   [&] { return air_signed_impl(air_path, p, out_path, res, err); });
}

rd_status rd_sr_air_device_uid(const char *model_name, const char *model_version,
                               char out[RD_UID_SIZE], rd_error *err)
{
    try {
        std::string uid;
        if (out)
            out[0] = '\0';
        if (!out || !model_name || !model_name[0] || !model_version || !model_version[0])
            return rd_error_set(err, RD_E_INVALID, "a model name and version are required");
        if (!make_device_uid(model_name, model_version, uid))
            return rd_error_set(err, RD_E_INTERNAL, "malformed device namespace");
        put(out, RD_UID_SIZE, uid);
        return RD_OK;
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
}

rd_status rd_sr_signed_air_series_uid(const char *study_uid, char out[RD_UID_SIZE], rd_error *err)
{
    try {
        std::string uid;
        if (out)
            out[0] = '\0';
        if (!out || !study_uid || !rd_uid_valid(study_uid))
            return rd_error_set(err, RD_E_INVALID, "not a valid Study Instance UID");
        if (!name_uid(RD_SR_AIR_SIGNED_SERIES_NAMESPACE, study_uid, uid))
            return rd_error_set(err, RD_E_INTERNAL, "malformed signed AIR series namespace");
        put(out, RD_UID_SIZE, uid);
        return RD_OK;
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
}

rd_status rd_sr_signed_series_uid(const char *study_uid, char out[RD_UID_SIZE], rd_error *err)
{
    try {
        std::string uid;
        if (out)
            out[0] = '\0';
        if (!out || !study_uid || !rd_uid_valid(study_uid))
            return rd_error_set(err, RD_E_INVALID, "not a valid Study Instance UID");
        if (!make_signed_series_uid(study_uid, uid))
            return rd_error_set(err, RD_E_INTERNAL, "malformed signed series namespace");
        put(out, RD_UID_SIZE, uid);
        return RD_OK;
    } catch (const std::bad_alloc &) {
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
}

void rd_sr_info_free(rd_sr_info *info)
{
    if (!info)
        return;
    std::free(info->findings_text);
    std::free(info->impression_text);
    std::memset(info, 0, sizeof *info);
}

} // extern "C"
