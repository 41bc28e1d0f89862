#!/usr/bin/env bash
# The Debian package (issue 19). scripts/package.sh builds radraft_<version>_<arch>.deb in a
# build folder of its own (under WORKDIR); lintian finds no error in it; dpkg -i installs
# the binary, the model, the man page, the configuration (a conffile, 0640 root:radraft),
# the systemd unit (systemd-analyze verify passes it), the radraft system user and its data
# directory (0700). The installed radraft serve then runs as that user on the installed
# configuration (on free ports, bound to 127.0.0.1), answers echoscu's C-ECHO, serves the
# web page, drafts a study storescu sends and delivers its SRs to a storescp, and stops on
# SIGTERM. It runs under strace, and what it did is checked against the unit's hardening:
# every system call within its SystemCallFilter, every socket of RestrictAddressFamilies,
# no memory both writable and executable (MemoryDenyWriteExecute), no write outside
# ReadWritePaths and the private temporary folders (ProtectSystem=strict, PrivateTmp), no
# access to /home (ProtectHome) nor to /proc beyond processes (ProcSubset=pid). Reinstalling
# keeps the data, `dpkg -r` keeps the configuration and the data, and `dpkg --purge` removes
# both, as Debian policy wants (the system user stays, as Debian recommends).
#
# It installs a package, so it needs root (CI runs as root). The other tests use the build
# tree's radraft, never /usr/bin/radraft, so installing beside them is safe. A radraft
# package that this test did not install is left alone: the test stops instead.
#
# usage: bash test_package.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"

if [ "$(id -u)" != 0 ]; then
    echo "FAIL: test_package installs a Debian package (dpkg -i) and needs root; CI runs as root"
    exit 1
fi
for tool in lintian dpkg-shlibdeps dpkg-buildflags systemd-analyze echoscu storescu storescp \
    setpriv strace curl python3 man; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed (bash scripts/setup.sh --test)"; exit 1; }
done

UNIT=/lib/systemd/system/radraft.service
CONFIG=/etc/radraft/radraft.json
DATA=/var/lib/radraft
MODELS=/usr/share/radraft/models
# Written into the data directory once this test has installed the package: a radraft
# package with it is this test's own, left behind by a run that was killed (a trap does
# not run on SIGKILL), and is purged; any other is someone's, and the test stops.
MARK=$DATA/.installed-by-test_package
installed() { dpkg-query -W -f='${db:Status-Status}' radraft 2>/dev/null | grep -qvx not-installed; }
if installed; then
    if [ -e "$MARK" ]; then
        echo "note: purging the radraft package a killed run of this test left installed"
        dpkg --purge radraft >/dev/null || { echo "FAIL: cannot purge the leftover package"; exit 1; }
    else
        echo "FAIL: a radraft package is installed (dpkg -s radraft), and not by this test;" \
            "it installs and purges its own: remove that one first (dpkg --purge radraft)"
        exit 1
    fi
fi

rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
WORK=$(pwd)
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
fatal() { echo "FAIL: $*"; exit 1; }
STRACE=
SERVE=
SCP=
OURS=0
cleanup() {
    [ -n "$SERVE" ] && kill -9 $SERVE 2>/dev/null
    [ -n "$STRACE" ] && kill -9 $STRACE 2>/dev/null
    [ -n "$SCP" ] && kill -9 $SCP 2>/dev/null
    if [ $OURS = 1 ] && installed; then
        dpkg --purge radraft >/dev/null 2>&1 || echo "FAIL: cleanup: dpkg --purge radraft failed"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# as_radraft CMD...: CMD as the radraft user and group, without privileges, as the unit
# runs it (User=, NoNewPrivileges=, an empty CapabilityBoundingSet=).
as_radraft() {
    setpriv --reuid=radraft --regid=radraft --init-groups --no-new-privs --inh-caps=-all \
        --bounding-set=-all "$@"
}

# ---- build ----------------------------------------------------------------------------
# The build tree's binary keeps its own model (the normal build is not the package's).
"$RADRAFT" config --print | python3 -c '
import json, sys
sys.exit(json.load(sys.stdin)["encoder"]["model"] != sys.argv[1])' "$SRC/models/cxr-resnet-small" &&
    pass "the build tree's radraft still uses $SRC/models" || fail "the build tree's encoder.model"
version=$("$RADRAFT" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
start=$SECONDS
bash "$SRC/scripts/package.sh" "$WORK/build-deb" >package.log 2>&1 ||
    fatal "scripts/package.sh: $(tail -20 package.log)"
deb=$(tail -1 package.log)
[ "$deb" = "$WORK/build-deb/radraft_${version}_${arch}.deb" ] && [ -f "$deb" ] &&
    pass "scripts/package.sh built $(basename "$deb") in $((SECONDS - start)) s" ||
    fatal "scripts/package.sh printed '$deb', not $WORK/build-deb/radraft_${version}_${arch}.deb"
grep -q -i 'warning:' package.log && fail "the package build warns: $(grep -i -m3 'warning:' package.log)" ||
    pass "the package build has no warning (Debian's hardening flags)"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >contents.txt
for f in /usr/bin/radraft $MODELS/cxr-resnet-small/model.json \
    $MODELS/cxr-resnet-small/model.safetensors $MODELS/cxr-resnet-small/seed-archive.bin \
    $MODELS/finding-codes.json $MODELS/labeler.json $MODELS/report-templates.json \
    $MODELS/README.md /usr/share/man/man1/radraft.1.gz $CONFIG $UNIT \
    /usr/share/doc/radraft/copyright /usr/share/doc/radraft/changelog.gz; do
    grep -qx "$f" contents.txt || fail "the package lacks $f"
done
extra=$(grep -v -e '/$' -e "^$MODELS/" -e '^/usr/share/doc/radraft/' -e '^/usr/bin/radraft$' \
    -e '^/usr/share/man/man1/radraft.1.gz$' -e '^/usr/share/lintian/overrides/radraft$' \
    -e "^$CONFIG\$" -e "^$UNIT\$" contents.txt)
[ -z "$extra" ] && pass "the package holds $(grep -vc '/$' contents.txt) files, none elsewhere" ||
    fail "unexpected files in the package: $(echo $extra)"
depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == *adduser* && $depends == *libdcmtk* && $depends == *libc6* ]] &&
    pass "Depends computed by dpkg-shlibdeps: $depends" || fail "Depends: '$depends'"
dpkg-deb -e "$deb" control
[ "$(cat control/conffiles)" = $CONFIG ] && pass "conffiles: $CONFIG" ||
    fail "conffiles: '$(cat control/conffiles 2>/dev/null)'"

# ---- lintian --------------------------------------------------------------------------
lintian_rc=0
lintian -I "$deb" >lintian.txt 2>&1 || lintian_rc=$?
grep -v -e '^running with root privileges' lintian.txt | sed 's/^/  lintian: /'
if [ $lintian_rc -ne 0 ] || grep -q '^E:' lintian.txt; then
    fail "lintian found $(grep -c '^E:' lintian.txt) error(s) (exit $lintian_rc)"
else
    pass "lintian: no error, $(grep -c '^W:' lintian.txt) warning(s), $(grep -c '^I:' lintian.txt) info(s)"
fi

# ---- install --------------------------------------------------------------------------
OURS=1 # from here on, what dpkg installed (even half) is purged on exit
dpkg -i "$deb" >dpkg-i.log 2>&1 || fatal "dpkg -i: $(tail -20 dpkg-i.log)"
touch "$MARK"
pass "dpkg -i installed radraft $version"
[ "$(/usr/bin/radraft --version | awk '{print $2}')" = "$version" ] &&
    pass "/usr/bin/radraft --version: $version" || fail "/usr/bin/radraft --version: $(/usr/bin/radraft --version)"
for f in cxr-resnet-small/model.json cxr-resnet-small/model.safetensors \
    cxr-resnet-small/seed-archive.bin finding-codes.json labeler.json report-templates.json README.md; do
    cmp -s "$SRC/models/$f" "$MODELS/$f" || fail "$MODELS/$f differs from models/$f"
done
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd radraft)
[ -n "${uid:-}" ] && [ "$uid" -lt 1000 ] && [ "$home" = $DATA ] && [ "$shell" = /usr/sbin/nologin ] &&
    pass "the radraft system user (uid $uid, home $home, shell $shell)" ||
    fail "the radraft user: $(getent passwd radraft)"
[ "$(stat -c '%a %U %G' $DATA)" = "700 radraft radraft" ] && pass "$DATA is 0700 radraft:radraft" ||
    fail "$DATA: $(stat -c '%a %U %G' $DATA 2>&1)"
[ "$(stat -c '%a %U %G' $CONFIG)" = "640 root radraft" ] && pass "$CONFIG is 0640 root:radraft" ||
    fail "$CONFIG: $(stat -c '%a %U %G' $CONFIG 2>&1)"
dpkg-query -W -f='${Conffiles}' radraft | grep -q "^ $CONFIG " && pass "dpkg records $CONFIG as a conffile" ||
    fail "dpkg's conffiles of radraft: $(dpkg-query -W -f='${Conffiles}' radraft)"

# The man page: every command of `radraft help` and every key of `radraft config --keys`
# (the installed binary's own), and no complaint from man.
zcat /usr/share/man/man1/radraft.1.gz >radraft.1
missing=""
for c in $(/usr/bin/radraft help | awk '/^commands:/ {on = 1; next} /^$/ {on = 0} on {print $1}'); do
    roff=$(printf '%s' "$c" | sed 's/-/\\-/g') # a hyphen is \- in the page
    grep -qxF ".B $roff" radraft.1 && grep -qxF ".SS \"radraft $roff\"" radraft.1 ||
        missing="$missing $c"
done
for k in $(/usr/bin/radraft config --keys | awk '{print $1}'); do
    grep -qxF ".B $k" radraft.1 || missing="$missing $k"
done
[ -z "$missing" ] && pass "radraft(1) describes every command and configuration key" ||
    fail "radraft(1) lacks:$missing"
man_warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
    /usr/share/man/man1/radraft.1.gz 2>&1 >/dev/null)
[ -z "$man_warnings" ] && pass "man renders radraft(1) without a warning" ||
    fail "man --warnings: $man_warnings"

# ---- the unit -------------------------------------------------------------------------
verify=$(systemd-analyze verify $UNIT 2>&1)
verify_rc=$?
[ $verify_rc = 0 ] && [ -z "$verify" ] && pass "systemd-analyze verify $UNIT" ||
    fail "systemd-analyze verify (exit $verify_rc): $verify"
exposure=$(systemd-analyze security --offline=yes $UNIT 2>&1 | grep -a 'Overall exposure level')
# On systemd's scale of 0 (most confined) to 10, where the unit scores 1.4 on Debian 12;
# --threshold counts tenths.
systemd-analyze security --offline=yes --threshold=20 $UNIT >/dev/null 2>&1 &&
    pass "systemd-analyze security: ${exposure#*: }" || fail "systemd-analyze security: $exposure (over 2.0)"

# The installed binary finds the installed model, and the data directory of the installed
# configuration, which the radraft user can read.
as_radraft /usr/bin/radraft config --print --config $CONFIG >config.json 2>config.err ||
    fail "radraft config --print --config $CONFIG as radraft: $(cat config.err)"
python3 - config.json $MODELS/cxr-resnet-small $DATA <<'PY' && pass "encoder.model is $MODELS/cxr-resnet-small, server.data_dir $DATA" || fail "the installed configuration"
import json, sys
cfg = json.load(open(sys.argv[1]))
assert cfg["encoder"]["model"] == sys.argv[2], cfg["encoder"]
assert cfg["server"]["data_dir"] == sys.argv[3], cfg["server"]
PY

# ---- radraft serve as the unit runs it --------------------------------------------------
"$RADRAFT" samples --out samples --size 256 --syntax explicit-le >/dev/null || fatal "radraft samples"
mkdir -p received
start_storescp() {
    local off
    SCP_PORT=$(rd_free_port)
    off=$(rd_log_size storescp.log)
    storescp -aet STORESCP -od received $SCP_PORT >>storescp.log 2>&1 &
    SCP=$!
    rd_wait_listening storescp $SCP storescp.log "$off" 20 $SCP_PORT
}
rd_retry_port 5 start_storescp || fatal "storescp did not start"
# The unit's ExecStart, with ports of the test's own, bound to this machine only, and a
# study stable after 1 s; in the data directory (WorkingDirectory=) with UMask=0077.
exec_start=$(sed -n 's/^ExecStart=//p' $UNIT)
[ "$exec_start" = "/usr/bin/radraft serve --config $CONFIG" ] || fail "ExecStart=$exec_start"
start_serve() {
    local off
    read -r PORT WEB_PORT < <(rd_free_ports 2)
    off=$(rd_log_size serve.log)
    rm -rf trace && mkdir trace
    (cd $DATA && umask 0077 && exec strace -ff -qq -o "$WORK/trace/t" setpriv --reuid=radraft \
        --regid=radraft --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all \
        $exec_start --port $PORT --stable-seconds 1 --set server.bind=127.0.0.1 \
        --set web.port=$WEB_PORT --send-to STORESCP@localhost:$SCP_PORT >>"$WORK/serve.log" 2>&1) &
    STRACE=$!
    # The traced process (setpriv, then radraft, as it executes it) is strace's child.
    rd_wait_for "strace to start radraft" 10 pgrep -P $STRACE || return 1
    SERVE=$(pgrep -P $STRACE)
    rd_wait_listening "radraft serve" $SERVE serve.log "$off" 30 $PORT $WEB_PORT
}
rd_retry_port 5 start_serve || fatal "radraft serve did not start: $(tail -5 serve.log)"
[ "$(readlink /proc/$SERVE/exe)" = /usr/bin/radraft ] && [ "$(stat -c %U /proc/$SERVE)" = radraft ] &&
    pass "radraft serve runs as radraft (pid $SERVE)" || fail "pid $SERVE: $(readlink /proc/$SERVE/exe), user $(stat -c %U /proc/$SERVE)"
echoscu -aet ECHOSCU -aec RADRAFT 127.0.0.1 $PORT >echoscu.log 2>&1 &&
    pass "echoscu: the installed radraft serve answers a C-ECHO" || fail "echoscu: $(cat echoscu.log)"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:$WEB_PORT/healthz)" = 200 ] &&
    pass "the review web page answers /healthz" || fail "web /healthz"
storescu -aet STORESCU -aec RADRAFT 127.0.0.1 $PORT samples/RDS0001/*.dcm >storescu.log 2>&1 ||
    fail "storescu: $(tail -3 storescu.log)"
drafted() {
    local srs rx
    srs=$(ls $DATA/sr/*-draft-sr.dcm 2>/dev/null | wc -l)
    rx=$(find received -type f | wc -l)
    echo "$srs draft SR(s) in $DATA/sr, $rx file(s) at storescp"
    [ "$srs" -ge 1 ] && [ "$rx" -ge 2 ]
}
rd_wait_for "the study drafted with the installed model and its SRs delivered" 90 drafted &&
    pass "the study is drafted and its SR and AI Results SR are delivered (${RD_WAIT_SAID})" ||
    fail "drafting: $RD_WAIT_SAID; $(tail -5 serve.log)"
grep -q "model resnet-small (cxr-resnet-small-1), archive of .* SRs into $DATA/sr" serve.log &&
    grep -q "seed archive entries from $MODELS/cxr-resnet-small/seed-archive.bin" serve.log &&
    pass "serve drafts with $MODELS/cxr-resnet-small and its seed archive" ||
    fail "serve's model: $(grep -a -m3 'pipeline:' serve.log)"
kill -TERM $SERVE
serve_rc=0
wait $STRACE || serve_rc=$?
STRACE=
SERVE=
[ $serve_rc = 0 ] && grep -q "serve: shutting down" serve.log && pass "radraft serve stops on SIGTERM (exit 0)" ||
    fail "radraft serve after SIGTERM: exit $serve_rc; $(tail -3 serve.log)"
kill -TERM $SCP 2>/dev/null
wait $SCP 2>/dev/null
SCP=

# What the traced radraft did, against the unit's settings.
systemd-analyze syscall-filter >syscall-groups.txt 2>/dev/null
python3 - $UNIT syscall-groups.txt $DATA trace/t.* <<'PY' && pass "radraft serve stays within the unit's hardening" || fail "radraft serve against the unit's hardening (above)"
import os, re, sys
unit, groups_file, data, *traces = sys.argv[1:]

settings = {}
for line in open(unit):
    if "=" in line and not line.startswith("#"):
        k, v = line.rstrip("\n").split("=", 1)
        settings.setdefault(k, []).append(v)

# The system call groups, as systemd-analyze syscall-filter lists them.
groups, cur = {}, None
for line in open(groups_file):
    s = line.strip()
    if line.startswith("@"):
        cur = groups.setdefault(s.split()[0], [])
    elif s and not s.startswith("#") and cur is not None:
        cur.append(s)

def expand(items):
    out = set()
    for x in items:
        out |= expand(groups[x]) if x.startswith("@") else {x}
    return out

allowed, denied = set(), set()
for v in settings["SystemCallFilter"]:
    if v.startswith("~"):
        denied |= expand(v[1:].split())
    else:
        allowed |= expand(v.split())
allowed -= denied
families = set(" ".join(settings["RestrictAddressFamilies"]).split())
writable = [p.rstrip("/") + "/" for p in " ".join(settings["ReadWritePaths"]).split()]
writable += ["/tmp/", "/var/tmp/"]  # PrivateTmp: the service's own

# One file per thread (strace -ff), so that each call and its result are on one line.
WRITES = {"mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2",
          "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "truncate", "creat",
          "mknod", "mknodat", "utimensat"}
call_re = re.compile(r"^([a-z0-9_]+)\((.*)$")
problems, calls = [], set()
for trace in traces:
    lines = open(trace, errors="replace").read().splitlines()
    # setpriv runs first, as root, in the first process: radraft's part starts at its execve.
    started = [i for i, l in enumerate(lines) if l.startswith('execve("/usr/bin/radraft"')]
    for line in lines[started[0] if started else 0:]:
        m = call_re.match(line)
        if not m:
            continue
        name, rest = m.groups()
        calls.add(name)
        if name == "socket" and rest.split(",")[0] not in families:
            problems.append(f"a socket of a family RestrictAddressFamilies denies: {line}")
        if name in ("mmap", "mprotect", "pkey_mprotect") and "PROT_WRITE" in rest and "PROT_EXEC" in rest:
            problems.append(f"memory both writable and executable (MemoryDenyWriteExecute): {line}")
        paths = re.findall(r'"((?:[^"\\]|\\.)*)"', rest)
        if not paths or name == "execve":
            continue
        # A path relative to a directory descriptor is under the directory radraft opened;
        # one relative to the working directory is under the data directory.
        if name.endswith("at") and not rest.startswith("AT_FDCWD") and not paths[0].startswith("/"):
            continue
        path = os.path.normpath(os.path.join(data, paths[0]))
        if re.match(r"^/(home|root|run/user)(/|$)", path):
            problems.append(f"a path under /home, /root or /run/user (ProtectHome): {line}")
        if path.startswith("/proc/") and not re.match(r"^/proc/(self|thread-self|\d+)(/|$)", path):
            problems.append(f"/proc beyond the processes (ProcSubset=pid): {line}")
        writes = name in WRITES or (name.startswith("open") and
                                    re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", rest))
        # mkdir -p of the data directory's parents finds them there (on a read-only file
        # system too, mkdir says EEXIST first).
        exists = name.startswith("mkdir") and "EEXIST" in rest
        if writes and not exists and not any((path + "/").startswith(w) for w in writable):
            problems.append(f"a write outside ReadWritePaths (ProtectSystem=strict): {line}")
for name in sorted(calls - allowed):
    problems.append(f"system call {name} is not in SystemCallFilter")
for p in problems:
    print("  " + p)
print(f"  {len(traces)} threads, {len(calls)} distinct system calls")
sys.exit(1 if problems or not calls else 0)
PY

# ---- reinstall, remove, purge -----------------------------------------------------------
dpkg -i "$deb" >dpkg-i2.log 2>&1 && [ -e "$MARK" ] && ls $DATA/sr/*-draft-sr.dcm >/dev/null 2>&1 &&
    [ "$(stat -c '%a %U %G' $CONFIG)" = "640 root radraft" ] &&
    pass "installing again keeps the data and the configuration's mode" ||
    fail "dpkg -i again: $(tail -5 dpkg-i2.log)"
dpkg -r radraft >dpkg-r.log 2>&1 || fail "dpkg -r: $(tail -5 dpkg-r.log)"
[ ! -e /usr/bin/radraft ] && [ ! -e $UNIT ] && [ ! -e $MODELS ] && [ -f $CONFIG ] && [ -e "$MARK" ] &&
    pass "dpkg -r removes the program and keeps the configuration and the data" ||
    fail "after dpkg -r: $(ls -d /usr/bin/radraft $UNIT $MODELS $CONFIG $DATA 2>&1 | tr '\n' ' ')"
dpkg --purge radraft >dpkg-purge.log 2>&1 || fail "dpkg --purge: $(tail -5 dpkg-purge.log)"
OURS=0
left=$(ls -d /etc/radraft $DATA /usr/share/radraft /usr/share/doc/radraft 2>/dev/null)
[ -z "$left" ] && ! installed && pass "dpkg --purge removes /etc/radraft and $DATA" ||
    fail "after dpkg --purge: left $left; status $(dpkg-query -W -f='${db:Status-Status}' radraft 2>&1)"
[ -z "$(dpkg-statoverride --list $CONFIG)" ] && pass "the configuration's dpkg-statoverride is gone" ||
    fail "dpkg-statoverride still has $(dpkg-statoverride --list $CONFIG)"
[ ! -e /var/lib/systemd/deb-systemd-helper-enabled/radraft.service.dsh-also ] &&
    pass "deb-systemd-helper forgot the unit" || fail "deb-systemd-helper state of radraft.service is left"
owned=$(find /etc /var -xdev -user radraft 2>/dev/null | head -5)
[ -z "$owned" ] && pass "no file of the radraft user is left in /etc or /var (the user stays)" ||
    fail "files of the radraft user left: $owned"

[ $FAILS -eq 0 ] && echo "PASS (${SECONDS} s)" || { echo "$FAILS failures"; exit 1; }
