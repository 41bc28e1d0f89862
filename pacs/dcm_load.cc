/* radraft — loading a DICOM file within bounds (see dcm_load.h). */
#include "dcm_load.h"

#include "radraft/error.h"

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcstack.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace
{

/* The first element whose length is over `limit` (its tag into `bad`), else true. */
bool lengths_plausible(DcmDataset *ds, unsigned long long limit, std::string &bad)
{
    DcmStack stack;
    while (ds->nextObject(stack, OFTrue).good()) {
        DcmObject *obj = stack.top();
        Uint32 len = obj->getLengthField();
        if (len != DCM_UndefinedLength && static_cast<unsigned long long>(len) > limit) {
            bad = obj->getTag().toString().c_str();
            return false;
        }
    }
    return true;
}

rd_status load_error(const OFCondition &cond, rd_error *err)
{
    bool truncated =
        cond == EC_StreamNotifyClient || cond == EC_SequEnd || cond == EC_InvalidStream;
    if (cond == EC_MemoryExhausted)
        return rd_error_set(err, RD_E_NOMEM, "out of memory reading DICOM: %s", cond.text());
    return rd_error_set(err, truncated ? RD_E_CORRUPT : RD_E_DICOM, "%s: %s",
                        truncated ? "truncated or corrupt DICOM" : "unreadable DICOM", cond.text());
}

unsigned le16(const unsigned char *p)
{
    return p[0] | (p[1] << 8);
}

unsigned long le32(const unsigned char *p)
{
    return static_cast<unsigned long>(p[0]) | (static_cast<unsigned long>(p[1]) << 8) |
           (static_cast<unsigned long>(p[2]) << 16) | (static_cast<unsigned long>(p[3]) << 24);
}

/* Where the dataset of a Part 10 file starts: after the preamble, "DICM" and the file meta
 * elements (group 0002, Explicit VR Little Endian as PS3.10 7.1 requires); 0 when the meta
 * header runs past the file. */
size_t dataset_offset(const std::vector<unsigned char> &f)
{
    size_t pos = 132;
    while (pos + 8 <= f.size() && le16(&f[pos]) == 0x0002) {
        const char *vr = reinterpret_cast<const char *>(&f[pos + 4]);
        static const char *const long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                               "SV", "UC", "UN", "UR", "UT", "UV"};
        bool long_form = false;
        for (const char *l : long_vrs)
            long_form = long_form || memcmp(vr, l, 2) == 0;
        size_t head = long_form ? 12 : 8;
        if (pos + head > f.size())
            return 0;
        size_t len = long_form ? le32(&f[pos + 8]) : le16(&f[pos + 6]);
        if (len > f.size() - pos - head)
            return 0;
        pos += head + len;
    }
    return pos <= f.size() ? pos : 0;
}

/* Inflates data[0, len) (raw deflate, as DCMTK reads it by default) into `fd`; at most
 * RD_DICOM_MAX_INFLATED_BYTES. *out_len gets the inflated size. */
rd_status inflate_to(const unsigned char *data, size_t len, int fd, unsigned long long *out_len,
                     rd_error *err)
{
    z_stream zs;
    std::vector<unsigned char> buf(1 << 16);
    unsigned long long total = 0;
    rd_status st = RD_OK;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return rd_error_set(err, RD_E_NOMEM, "cannot start inflating");
    zs.next_in = const_cast<unsigned char *>(data);
    zs.avail_in = static_cast<uInt>(len); /* len < 4 GiB: the file is at most 2 GiB */
    for (;;) {
        zs.next_out = buf.data();
        zs.avail_out = static_cast<uInt>(buf.size());
        int z = inflate(&zs, Z_NO_FLUSH);
        size_t got = buf.size() - zs.avail_out;
        total += got;
        if (total > RD_DICOM_MAX_INFLATED_BYTES) {
            st = rd_error_set(err, RD_E_TOO_LARGE,
                              "the deflated dataset inflates to more than %llu bytes",
                              RD_DICOM_MAX_INFLATED_BYTES);
            break;
        }
        for (size_t done = 0; done < got;) {
            ssize_t w = write(fd, buf.data() + done, got - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                st =
                    rd_error_set(err, RD_E_IO, "writing the inflated dataset: %s", strerror(errno));
                break;
            }
            done += static_cast<size_t>(w);
        }
        if (st != RD_OK || z == Z_STREAM_END)
            break;
        /* Truncated or corrupt deflate data: what was inflated so far is read (DCMTK then
         * reports a truncated dataset, as it would have). */
        if (z != Z_OK || (got == 0 && zs.avail_in == 0))
            break;
    }
    inflateEnd(&zs);
    *out_len = total;
    return st;
}

rd_status load_deflated(DcmFileFormat &ff, const char *path, Uint32 max_read,
                        unsigned long long *data_size, rd_error *err)
{
    struct stat sb;
    std::vector<unsigned char> file;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return rd_error_set(err, RD_E_IO, "%s", strerror(errno));
    if (fstat(fileno(fp), &sb) != 0 || sb.st_size < 0) {
        fclose(fp);
        return rd_error_set(err, RD_E_IO, "%s", strerror(errno));
    }
    file.resize(static_cast<size_t>(sb.st_size));
    size_t n = file.empty() ? 0 : fread(file.data(), 1, file.size(), fp);
    fclose(fp);
    if (n != file.size())
        return rd_error_set(err, RD_E_IO, "short read");
    size_t off = dataset_offset(file);
    if (off == 0)
        return rd_error_set(err, RD_E_CORRUPT, "the file meta header runs past the file");

    /* An anonymous file: no name on disk, gone when closed; DCMTK opens it by its
     * /proc/self/fd name. */
    int fd = memfd_create("radraft-inflated", MFD_CLOEXEC);
    if (fd < 0) {
        FILE *tmp = tmpfile();
        fd = tmp ? dup(fileno(tmp)) : -1;
        if (tmp)
            fclose(tmp);
        if (fd < 0)
            return rd_error_set(err, RD_E_IO, "no temporary file: %s", strerror(errno));
    }
    unsigned long long inflated = 0;
    rd_status st = inflate_to(file.data() + off, file.size() - off, fd, &inflated, err);
    std::vector<unsigned char>().swap(file);
    *data_size = inflated;
    if (st == RD_OK) {
        char name[64];
        snprintf(name, sizeof name, "/proc/self/fd/%d", fd);
        OFCondition cond =
            ff.loadFile(name, EXS_LittleEndianExplicit, EGL_noChange, max_read, ERM_dataset);
        std::string bad;
        if (cond.bad())
            st = load_error(cond, err);
        else if (!lengths_plausible(ff.getDataset(), inflated, bad))
            st = rd_error_set(err, RD_E_CORRUPT,
                              "element %s is longer than the inflated dataset allows", bad.c_str());
        else if ((cond = ff.getDataset()->loadAllDataIntoMemory()).bad())
            st = load_error(cond, err);
    }
    close(fd);
    return st;
}

} // namespace

rd_status rd__dcm_load_file(DcmFileFormat &ff, const char *path, bool part10, Uint32 max_read,
                            E_TransferSyntax *xfer, unsigned long long *data_size, rd_error *err)
{
    struct stat sb;
    std::string bad;
    *xfer = EXS_Unknown;
    *data_size = 0;
    if (stat(path, &sb) != 0)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s", strerror(errno));
    if (part10) {
        /* The meta header alone first (DCMTK stops before the first dataset element's
         * value), to learn whether the dataset is deflated. */
        DcmFileFormat head;
        OFCondition cond = head.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, max_read,
                                                 ERM_autoDetect, DcmTagKey(0x0000, 0x0001));
        if (cond.good() && head.getDataset() &&
            head.getDataset()->getOriginalXfer() == EXS_DeflatedLittleEndianExplicit) {
            *xfer = EXS_DeflatedLittleEndianExplicit;
            return load_deflated(ff, path, max_read, data_size, err);
        }
    }
    OFCondition cond = ff.loadFile(path, EXS_Unknown, EGL_noChange, max_read,
                                   part10 ? ERM_autoDetect : ERM_dataset);
    if (cond.bad())
        return load_error(cond, err);
    DcmDataset *ds = ff.getDataset();
    *data_size = static_cast<unsigned long long>(sb.st_size);
    if (ds && !lengths_plausible(ds, static_cast<unsigned long long>(sb.st_size), bad))
        return rd_error_set(err, RD_E_CORRUPT, "element %s is longer than the file allows",
                            bad.c_str());
    *xfer = ds ? ds->getOriginalXfer() : EXS_Unknown;
    /* Deflated after all, though the probe above could not tell (it failed on the meta
     * header where the full read did not): refused, as its values were read unbounded. */
    if (*xfer == EXS_DeflatedLittleEndianExplicit)
        return rd_error_set(err, RD_E_CORRUPT, "a deflated dataset behind a bad meta header");
    return RD_OK;
}
