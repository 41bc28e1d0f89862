/* radraft — a DICOM file from a folder into the store, as a C-STORE of it would put it there
 * (radraft batch --queue): its UIDs from its own attributes, its bytes copied into the
 * store's spool folder and handed to rd_store_put_file, so that the same durability rules
 * hold and the nodes' schedulers queue its study once it is stable. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "radraft/dicom.h"
#include "radraft/pipeline.h"
#include "radraft/store.h"
#include "base/util.h"

/* Bytes copied at a time. */
#define COPY_CHUNK (1 << 16)

/* The offset of the dataset after a Part 10 file's meta header: 128-byte preamble, "DICM",
 * then (0002,0000) UL, whose value is the length of the rest of group 2. 0 when the bytes
 * are not laid out so. */
static size_t dataset_offset(const unsigned char *h, size_t n, size_t file_size)
{
    uint32_t len;
    if (n < 144 || memcmp(h + 128, "DICM", 4) != 0 || h[132] != 0x02 || h[133] != 0 ||
        h[134] != 0 || h[135] != 0 || h[136] != 'U' || h[137] != 'L')
        return 0;
    len =
        (uint32_t)h[140] | (uint32_t)h[141] << 8 | (uint32_t)h[142] << 16 | (uint32_t)h[143] << 24;
    return 144 + (size_t)len <= file_size ? 144 + (size_t)len : 0;
}

/* Copies the file at `path` to the open spool file `out`; *offset gets its dataset offset. */
static rd_status copy_to_spool(const char *path, int out, size_t *offset, rd_error *err)
{
    unsigned char buf[COPY_CHUNK], head[144];
    size_t total = 0, n_head = 0;
    rd_status st = RD_OK;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (n_head < sizeof head) {
            size_t k = (size_t)n < sizeof head - n_head ? (size_t)n : sizeof head - n_head;
            memcpy(head + n_head, buf, k);
            n_head += k;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                close(in);
                return rd_error_set(err, RD_E_IO, "the store's spool: %s", strerror(errno));
            }
            done += w;
        }
        total += (size_t)n;
    }
    close(in);
    if (st == RD_OK && (*offset = dataset_offset(head, n_head, total)) == 0)
        st = rd_error_set(err, RD_E_DICOM, "%s: not a DICOM Part 10 file (no file meta header)",
                          path);
    return st;
}

rd_status rd_pipeline_ingest_file(rd_store *s, const char *path, const char *source_ae,
                                  char *study_uid, size_t study_uid_size,
                                  rd_store_put_result *result, rd_error *err)
{
    rd_dicom_meta m;
    char spool[4200];
    size_t offset = 0;
    rd_status st;
    int fd = -1;
    if ((st = rd_dicom_read_meta(path, &m, err)) != RD_OK)
        return st;
    if (!m.transfer_syntax_uid[0])
        return rd_error_set(err, RD_E_DICOM, "%s: not a DICOM Part 10 file (no file meta header)",
                            path);
    if ((st = rd_store_spool_create(s, spool, sizeof spool, &fd, err)) != RD_OK)
        return st;
    st = copy_to_spool(path, fd, &offset, err);
    close(fd);
    if (st != RD_OK) {
        unlink(spool);
        return st;
    }
    rd_store_instance in = {m.study_uid,     m.series_uid,          m.sop_instance_uid,
                            m.sop_class_uid, m.transfer_syntax_uid, m.modality,
                            source_ae};
    if ((st = rd_store_put_file(s, &in, spool, offset, result, err)) != RD_OK)
        return rd_error_prefix(err, st, "%s", path);
    rd_strlcpy(study_uid, m.study_uid, study_uid_size);
    return RD_OK;
}
