/* DICOM networking in one process: the listener and the sender talk to each other over
 * loopback; the store callback decides the C-STORE status. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "radraft/log.h"
#include "radraft/net.h"
#include "radraft/store.h"
#include "rdtest.h"
#include "base/util.h"

RD_TEST(peer_parse)
{
    rd_net_peer p;
    rd_error err;
    CHECK_OK(rd_net_peer_parse("PACS@localhost:104", &p, &err), &err);
    CHECK_STR(p.ae_title, "PACS");
    CHECK_STR(p.host, "localhost");
    CHECK_EQ_INT(p.port, 104);
    CHECK_OK(rd_net_peer_parse("A@::1:11112", &p, &err), &err); /* last colon is the port */
    CHECK_STR(p.host, "::1");
    CHECK_EQ_INT(p.port, 11112);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@localhost", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("@localhost:104", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@:104", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:0", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:65536", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:12x", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("SEVENTEEN_CHARS_X@h:1", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("A\\B@h:1", &p, NULL), RD_E_INVALID);
    /* TLS per destination: a suffix decides, none follows outbox.tls. */
    CHECK_OK(rd_net_peer_parse("PACS@localhost:104", &p, &err), &err);
    CHECK_EQ_INT(p.tls, -1);
    CHECK_OK(rd_net_peer_parse("PACS@pacs.example.org:2762+tls", &p, &err), &err);
    CHECK_STR(p.host, "pacs.example.org");
    CHECK_EQ_INT(p.port, 2762);
    CHECK_EQ_INT(p.tls, 1);
    CHECK_OK(rd_net_peer_parse("A@::1:104+plain", &p, &err), &err);
    CHECK_STR(p.host, "::1");
    CHECK_EQ_INT(p.port, 104);
    CHECK_EQ_INT(p.tls, 0);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:104+ssl", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:104+tls+tls", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:+tls", &p, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_net_peer_parse("PACS@h:+104", &p, NULL), RD_E_INVALID);
}

typedef struct fake_store {
    pthread_mutex_t mu;
    rd_status answer; /* what the store callback returns */
    int calls;
    size_t last_len, last_offset;
    char last_sop[80];
    char last_xfer[80];
    unsigned char head[132];
    int begun, ended;
    int spooled; /* spool files made; each must be gone once its C-STORE is answered */
} fake_store;

/* The spool folder of the fake store: one per test process. */
static const char *spool_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        rd_strlcpy(dir, "/tmp/rd-test-net-XXXXXX", sizeof dir);
        if (!mkdtemp(dir))
            dir[0] = '\0';
    }
    return dir;
}

/* Spool files left in spool_dir(). */
static int spool_left(void)
{
    DIR *d = opendir(spool_dir());
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static rd_status fs_spool(void *ctx, void *actx, char *path, size_t size, int *fd, rd_error *err)
{
    fake_store *fs = ctx;
    (void)actx;
    snprintf(path, size, "%s/in-XXXXXX", spool_dir());
    if ((*fd = mkstemp(path)) < 0)
        return rd_error_set(err, RD_E_IO, "%s: cannot create", path);
    pthread_mutex_lock(&fs->mu);
    fs->spooled++;
    pthread_mutex_unlock(&fs->mu);
    return RD_OK;
}

static rd_status fs_begin(void *ctx, void **actx, rd_error *err)
{
    fake_store *fs = ctx;
    (void)err;
    pthread_mutex_lock(&fs->mu);
    fs->begun++;
    pthread_mutex_unlock(&fs->mu);
    *actx = fs;
    return RD_OK;
}

static void fs_end(void *ctx, void *actx)
{
    fake_store *fs = ctx;
    CHECK(actx == fs);
    pthread_mutex_lock(&fs->mu);
    fs->ended++;
    pthread_mutex_unlock(&fs->mu);
}

static rd_status fs_store(void *ctx, void *actx, const rd_net_instance *in, rd_error *err)
{
    fake_store *fs = ctx;
    rd_status st;
    (void)actx;
    pthread_mutex_lock(&fs->mu);
    fs->calls++;
    fs->last_len = in->file_len;
    fs->last_offset = in->dataset_offset;
    rd_strlcpy(fs->last_sop, in->sop_instance_uid, sizeof fs->last_sop);
    rd_strlcpy(fs->last_xfer, in->transfer_syntax_uid, sizeof fs->last_xfer);
    {
        /* The spool file holds the whole Part 10 file; the store callback owns it. */
        FILE *f = fopen(in->path, "rb");
        CHECK(f != NULL);
        if (f) {
            CHECK_EQ_INT((int)fread(fs->head, 1, sizeof fs->head, f), (int)sizeof fs->head);
            CHECK(fseek(f, 0, SEEK_END) == 0 && (size_t)ftell(f) == in->file_len);
            fclose(f);
        }
        unlink(in->path);
    }
    st = fs->answer;
    pthread_mutex_unlock(&fs->mu);
    if (st != RD_OK)
        return rd_error_set(err, st, "injected store failure");
    return RD_OK;
}

static int test_port(int offset)
{
    /* 21900-21979: the integration tests use 21000-21899, the benchmark 21980-21989. */
    return 21900 + (int)(getpid() % 20) * 4 + offset;
}

static rd_net_scp *start(fake_store *fs, int port, const rd_strlist *allow)
{
    /* Keep the listener's log quiet. (This call also makes the linker take the log
     * module from radraft_core before it reads radraft_pacs, which uses it.) */
    rd_log_set_level(RD_LOG_ERROR);
    rd_net_scp_options o;
    rd_net_handlers h = {fs, fs_begin, fs_end, fs_spool, fs_store};
    rd_net_scp *scp = NULL;
    rd_error err;
    memset(&o, 0, sizeof o);
    o.port = port;
    rd_strlcpy(o.ae_title, "UNITSCP", sizeof o.ae_title);
    o.allowed_calling_aes = allow;
    o.max_associations = 4;
    o.max_pdu = 116794;
    o.acse_timeout = 10;
    o.dimse_timeout = 10;
    o.idle_timeout = 10;
    if (rd_net_scp_start(&scp, &o, &h, &err) != RD_OK) {
        fprintf(stderr, "start: %s\n", rd_error_message(&err));
        return NULL;
    }
    return scp;
}

static void scu_opts(rd_net_scu_options *o, const char *ae)
{
    memset(o, 0, sizeof *o);
    rd_strlcpy(o->calling_ae, ae, sizeof o->calling_ae);
    o->max_pdu = 116794;
    o->acse_timeout = 10;
    o->dimse_timeout = 10;
}

RD_TEST(echo_and_store_roundtrip)
{
    const char *data = rd_test_shared_data();
    fake_store fs;
    rd_net_peer peer;
    rd_net_scu_options so;
    rd_net_scp_stats stats;
    rd_error err;
    char file[1024];
    const char *files[1] = {file};
    rd_status res = RD_E_INTERNAL;
    int port = test_port(0);
    rd_net_scp *scp;

    memset(&fs, 0, sizeof fs);
    pthread_mutex_init(&fs.mu, NULL);
    fs.answer = RD_OK;
    snprintf(file, sizeof file, "%s/dicom/codecs/JPEG-LL.dcm", data);
    scp = start(&fs, port, NULL);
    REQUIRE(scp);
    snprintf(peer.host, sizeof peer.host, "127.0.0.1");
    rd_strlcpy(peer.ae_title, "UNITSCP", sizeof peer.ae_title);
    peer.tls = -1; /* as the sender options say */
    peer.port = port;
    scu_opts(&so, "UNITSCU");
    CHECK_OK(rd_net_echo(&peer, &so, &err), &err);
    CHECK_OK(rd_net_send_files(&peer, &so, files, 1, &res, &err), &err);
    CHECK_EQ_INT(res, RD_OK);
    CHECK_EQ_INT(fs.calls, 1);
    /* A Part 10 file: preamble, "DICM", the dataset after the meta header, in the file's
     * own transfer syntax (JPEG Lossless SV1: no transcoding). */
    CHECK(memcmp(fs.head + 128, "DICM", 4) == 0);
    CHECK(fs.last_offset > 132 && fs.last_offset < fs.last_len);
    CHECK_STR(fs.last_xfer, "1.2.840.10008.1.2.4.70");
    CHECK(strlen(fs.last_sop) > 0);
    /* Received into a spool file, which the store callback took. */
    CHECK_EQ_INT(fs.spooled, 1);
    CHECK_EQ_INT(spool_left(), 0);
    rd_net_scp_get_stats(scp, &stats);
    CHECK_EQ_INT(stats.stored, 1);
    CHECK_EQ_INT(stats.associations, 2);
    rd_net_scp_stop(scp);
    CHECK_EQ_INT(fs.begun, 2);
    CHECK_EQ_INT(fs.ended, 2);
    pthread_mutex_destroy(&fs.mu);
}

/* A full disk (RD_E_IO from the store) must answer a failure, never success; the sender
 * reports it per file. */
RD_TEST(store_failure_is_a_failure_status)
{
    const char *data = rd_test_shared_data();
    fake_store fs;
    rd_net_peer peer;
    rd_net_scu_options so;
    rd_error err;
    char f1[1024], f2[1024];
    const char *files[2] = {f1, f2};
    rd_status res[2] = {RD_OK, RD_OK};
    int port = test_port(1);
    rd_net_scp *scp;

    memset(&fs, 0, sizeof fs);
    pthread_mutex_init(&fs.mu, NULL);
    fs.answer = RD_E_IO;
    snprintf(f1, sizeof f1, "%s/dicom/codecs/JPEG-LL.dcm", data);
    snprintf(f2, sizeof f2, "%s/dicom/codecs/emri_small_RLE.dcm", data);
    scp = start(&fs, port, NULL);
    REQUIRE(scp);
    rd_strlcpy(peer.host, "127.0.0.1", sizeof peer.host);
    rd_strlcpy(peer.ae_title, "UNITSCP", sizeof peer.ae_title);
    peer.tls = -1; /* as the sender options say */
    peer.port = port;
    scu_opts(&so, "UNITSCU");
    CHECK_EQ_INT(rd_net_send_files(&peer, &so, files, 2, res, &err), RD_E_NET);
    CHECK(strstr(err.msg, "0xa700") != NULL);
    CHECK_EQ_INT(res[0], RD_E_NET);
    CHECK_EQ_INT(res[1], RD_E_NET);
    /* Invalid UIDs (RD_E_INVALID) answer 0xA900. */
    fs.answer = RD_E_INVALID;
    CHECK_EQ_INT(rd_net_send_files(&peer, &so, files, 1, res, &err), RD_E_NET);
    CHECK(strstr(err.msg, "0xa900") != NULL);
    CHECK_EQ_INT(fs.spooled, 3);
    CHECK_EQ_INT(spool_left(), 0); /* refused: no spool file left behind */
    rd_net_scp_stop(scp);
    pthread_mutex_destroy(&fs.mu);
}

RD_TEST(allowlist_rejects_unknown_calling_ae)
{
    fake_store fs;
    rd_strlist allow;
    rd_net_peer peer;
    rd_net_scu_options so;
    rd_net_scp_stats stats;
    rd_error err;
    int port = test_port(2);
    rd_net_scp *scp;

    memset(&fs, 0, sizeof fs);
    pthread_mutex_init(&fs.mu, NULL);
    memset(&allow, 0, sizeof allow);
    rd_strlcpy(allow.items[0], "FRIEND", sizeof allow.items[0]);
    allow.count = 1;
    scp = start(&fs, port, &allow);
    REQUIRE(scp);
    rd_strlcpy(peer.host, "127.0.0.1", sizeof peer.host);
    rd_strlcpy(peer.ae_title, "UNITSCP", sizeof peer.ae_title);
    peer.tls = -1; /* as the sender options say */
    peer.port = port;
    scu_opts(&so, "STRANGER");
    CHECK_EQ_INT(rd_net_echo(&peer, &so, &err), RD_E_NET);
    CHECK(strstr(err.msg, "rejected") != NULL);
    scu_opts(&so, "FRIEND");
    CHECK_OK(rd_net_echo(&peer, &so, &err), &err);
    rd_net_scp_get_stats(scp, &stats);
    CHECK_EQ_INT(stats.rejected, 1);
    rd_net_scp_stop(scp);
    pthread_mutex_destroy(&fs.mu);
}

RD_TEST(send_to_closed_port_fails_cleanly)
{
    rd_net_peer peer;
    rd_net_scu_options so;
    rd_error err;
    const char *files[1] = {"/nonexistent/file.dcm"};
    rd_status res = RD_OK;
    rd_strlcpy(peer.host, "127.0.0.1", sizeof peer.host);
    rd_strlcpy(peer.ae_title, "NOBODY", sizeof peer.ae_title);
    peer.tls = -1; /* as the sender options say */
    peer.port = test_port(3);
    scu_opts(&so, "UNITSCU");
    CHECK_EQ_INT(rd_net_echo(&peer, &so, &err), RD_E_NET);
    /* An unreadable file fails by itself, before any connection. */
    CHECK_EQ_INT(rd_net_send_files(&peer, &so, files, 1, &res, &err), RD_E_DICOM);
    CHECK_EQ_INT(res, RD_E_DICOM);
}

RD_TEST_MAIN()
