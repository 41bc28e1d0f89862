/* radraft user: the users of the review queue — add, passwd, disable, enable, list. The
 * rules (who may change whom, the first admin) are rd_review_user_* (src/review/users.c);
 * this file parses the command line and reads passwords from standard input, never from
 * the arguments, which other local users can read in the process list. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "radraft/review.h"
#include "radraft/store.h"

static const char help[] =
    "usage: radraft user COMMAND NAME [OPTIONS]\n"
    "The users of the review queue: viewers read it, radiologists also claim, edit, sign and\n"
    "reject, admins also manage users. Every change is recorded in the audit trail\n"
    "(radraft audit) together with the acting user.\n\n"
    "  add NAME --role ROLE --display-name PN [--password-stdin] [--user ADMIN]\n"
    "         adds a user; ROLE is viewer, radiologist or admin, PN a DICOM person name\n"
    "         (Family^Given). While there is no user at all, the first one is added without\n"
    "         --user and must be an admin; after that an admin adds the others.\n"
    "  passwd NAME --password-stdin [--user U]\n"
    "         sets NAME's password: a user changes their own (the default acting user is\n"
    "         NAME), an admin anyone's\n"
    "  disable NAME --user ADMIN    NAME can no longer act (its history stays)\n"
    "  enable NAME --user ADMIN     undoes disable\n"
    "  list                         every user (never the password hashes)\n\n"
    "  --data-dir D        data directory (server.data_dir, default ./radraft-data)\n"
    "  --user U            the acting user, recorded in the audit trail\n"
    "  --role ROLE         viewer, radiologist or admin (add)\n"
    "  --display-name PN   the user's name as DICOM PN, e.g. Curie^Marie (add)\n"
    "  --password-stdin    read the password from standard input (8 to 1024 bytes, one\n"
    "                      line; a trailing newline is removed)\n"
    "  --json              print users as JSON lines\n" RD_CLI_COMMON_HELP;

enum {
    OPT_DATA_DIR = RD_OPT_FIRST_PRIVATE,
    OPT_USER,
    OPT_ROLE,
    OPT_DISPLAY_NAME,
    OPT_PASSWORD_STDIN,
    OPT_JSON
};

typedef struct user_args {
    rd_cli cli;
    const char *sub;
    const char *data_dir;
    const char *acting;
    const char *role;
    const char *display_name;
    const char *name;
    int password_stdin;
    int json;
} user_args;

/* Room for the longest password, a "\r\n" and one byte more that shows it was longer. */
#define PASSWORD_BUF (RD_PASSWORD_MAX + 3)

/* Reads the password from standard input into `buf` (PASSWORD_BUF bytes): everything up to
 * the end of input, less one trailing "\n" or "\r\n". Returns 0, or -1 after printing why. */
static int read_password(const user_args *a, char *buf)
{
    size_t n = fread(buf, 1, PASSWORD_BUF - 1, stdin);
    if (ferror(stdin)) {
        rd_cli_error(&a->cli, "cannot read the password from standard input");
        return -1;
    }
    if (n == PASSWORD_BUF - 1 && fgetc(stdin) != EOF)
        n = PASSWORD_BUF; /* longer than any password: refused below */
    else
        buf[n] = '\0';
    if (n < PASSWORD_BUF && n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n < PASSWORD_BUF && n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    if (n > RD_PASSWORD_MAX || n < RD_PASSWORD_MIN) {
        rd_cli_error(&a->cli, "the password must be %d to %d bytes (standard input held %s%zu)",
                     RD_PASSWORD_MIN, RD_PASSWORD_MAX, n > RD_PASSWORD_MAX ? "more than " : "",
                     n > RD_PASSWORD_MAX ? (size_t)RD_PASSWORD_MAX : n);
        return -1;
    }
    if (memchr(buf, '\0', n) || memchr(buf, '\n', n) || memchr(buf, '\r', n)) {
        rd_cli_error(&a->cli, "the password must be one line of text");
        return -1;
    }
    return 0;
}

static cJSON *user_json(const rd_store_user *u)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "name", u->name);
    cJSON_AddStringToObject(o, "display_name", u->display_name);
    cJSON_AddStringToObject(o, "role", rd_user_role_name(u->role));
    cJSON_AddBoolToObject(o, "disabled", u->disabled);
    cJSON_AddBoolToObject(o, "has_password", u->password_hash[0] != '\0');
    cJSON_AddNumberToObject(o, "created_at", u->created_at);
    cJSON_AddNumberToObject(o, "updated_at", u->updated_at);
    return o;
}

static rd_status print_user_json(const rd_store_user *u, rd_error *err)
{
    cJSON *o = user_json(u);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return rd_error_set(err, RD_E_NOMEM, "out of memory printing a user");
    printf("%s\n", text);
    free(text);
    return RD_OK;
}

static rd_status list_one(void *ctx, const rd_store_user *u, rd_error *err)
{
    const user_args *a = ctx;
    if (a->json)
        return print_user_json(u, err);
    printf("%-20s %-12s %-9s %-9s %s\n", u->name, rd_user_role_name(u->role),
           u->disabled ? "disabled" : "enabled", u->password_hash[0] ? "yes" : "no",
           u->display_name);
    return RD_OK;
}

/* After a change: the user as it is now, as JSON or as one line naming what was done. */
static int report_change(const user_args *a, rd_store *s, const char *done)
{
    rd_store_user u;
    rd_error err;
    if (rd_store_user_get(s, a->name, &u, &err) != RD_OK ||
        (a->json && print_user_json(&u, &err) != RD_OK)) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        return RD_EXIT_FAIL;
    }
    if (!a->json)
        printf("user: %s %s (%s%s)\n", done, u.name, rd_user_role_name(u.role),
               u.disabled ? ", disabled" : "");
    return RD_EXIT_OK;
}

static int run(user_args *a)
{
    char password[PASSWORD_BUF];
    rd_store *s = NULL;
    rd_error err;
    rd_status st = RD_OK;
    rd_user_role role = RD_ROLE_VIEWER;
    int rc = RD_EXIT_OK, is_list = strcmp(a->sub, "list") == 0;
    const char *done = NULL;

    password[0] = '\0';
    if (is_list) {
        if (a->name) {
            rd_cli_error(&a->cli, "list takes no user name");
            return RD_EXIT_USAGE;
        }
    } else if (!a->name) {
        rd_cli_error(&a->cli, "%s needs a user NAME", a->sub);
        return RD_EXIT_USAGE;
    }
    if (strcmp(a->sub, "add") == 0) {
        if (!a->role || !a->display_name) {
            rd_cli_error(&a->cli, "add needs --role ROLE and --display-name PN");
            return RD_EXIT_USAGE;
        }
        if (rd_user_role_parse(a->role, &role, &err) != RD_OK) {
            rd_cli_error(&a->cli, "--role: %s", rd_error_message(&err));
            return RD_EXIT_USAGE;
        }
    } else if (strcmp(a->sub, "passwd") == 0) {
        if (!a->password_stdin) {
            rd_cli_error(&a->cli, "passwd reads the new password from standard input: give "
                                  "--password-stdin");
            return RD_EXIT_USAGE;
        }
    } else if (strcmp(a->sub, "disable") == 0 || strcmp(a->sub, "enable") == 0) {
        if (!a->acting) {
            rd_cli_error(&a->cli, "%s needs the acting admin: --user ADMIN", a->sub);
            return RD_EXIT_USAGE;
        }
    } else if (!is_list) {
        rd_cli_error(&a->cli, "unknown user command '%s' (add, passwd, disable, enable, list)",
                     a->sub);
        return RD_EXIT_USAGE;
    }
    if ((a->role || a->display_name) && strcmp(a->sub, "add") != 0) {
        rd_cli_error(&a->cli, "--role and --display-name are options of add");
        return RD_EXIT_USAGE;
    }
    if (a->password_stdin && strcmp(a->sub, "add") != 0 && strcmp(a->sub, "passwd") != 0) {
        rd_cli_error(&a->cli, "--password-stdin is an option of add and passwd");
        return RD_EXIT_USAGE;
    }
    /* The password is read before the store is opened, so that a bad one changes nothing. */
    if (a->password_stdin && read_password(a, password) != 0) {
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (rd_cli_store_open(&a->cli, a->data_dir, &s, &err) != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
        goto out;
    }
    if (is_list) {
        st = rd_store_user_list(s, list_one, a, &err);
    } else if (strcmp(a->sub, "add") == 0) {
        st = rd_review_user_add(s, a->acting, a->name, role, a->display_name,
                                a->password_stdin ? password : NULL, &err);
        done = "added";
    } else if (strcmp(a->sub, "passwd") == 0) {
        st = rd_review_user_passwd(s, a->acting, a->name, password, &err);
        done = "set the password of";
    } else {
        int disable = strcmp(a->sub, "disable") == 0;
        st = rd_review_user_disable(s, a->acting, a->name, disable, &err);
        done = disable ? "disabled" : "enabled";
    }
    if (st != RD_OK) {
        rd_cli_error(&a->cli, "%s", rd_error_message(&err));
        rc = RD_EXIT_FAIL;
    } else if (done) {
        rc = report_change(a, s, done);
    }
out:
    /* The password leaves no copy in this process's memory once used. */
    explicit_bzero(password, sizeof password);
    rd_store_close(s);
    return rc;
}

int rd_cmd_user(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"user", required_argument, NULL, OPT_USER},
        {"role", required_argument, NULL, OPT_ROLE},
        {"display-name", required_argument, NULL, OPT_DISPLAY_NAME},
        {"password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN},
        {"json", no_argument, NULL, OPT_JSON},
        RD_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0}};
    user_args a;
    int opt, rc;

    memset(&a, 0, sizeof a);
    rd_cli_init(&a.cli, "radraft user");
    if (!(a.sub = rd_cli_action(argc, argv, help, &rc)))
        return rc;
    argc--;
    argv++;
    while ((opt = rd_cli_getopt(&a.cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_DATA_DIR:
            a.data_dir = optarg;
            break;
        case OPT_USER:
            a.acting = optarg;
            break;
        case OPT_ROLE:
            a.role = optarg;
            break;
        case OPT_DISPLAY_NAME:
            a.display_name = optarg;
            break;
        case OPT_PASSWORD_STDIN:
            a.password_stdin = 1;
            break;
        case OPT_JSON:
            a.json = 1;
            break;
        }
    }
    if (opt < 0)
        return rc;
    if (optind < argc)
        a.name = argv[optind++];
    if ((rc = rd_cli_finish(&a.cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    if (!a.data_dir)
        a.data_dir = a.cli.cfg.server_data_dir;
    return run(&a);
}
