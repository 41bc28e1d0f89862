#!/usr/bin/env bash
# radraft user and radraft audit, end to end: the first admin without --user, a
# radiologist with a password from standard input, list (text and JSON), disable and
# enable, a non-admin refused, passwords never taken from the arguments, then the audit
# trail: list, verify, and an edit made around the append-only triggers that verify finds.
#   test_user_audit.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
work="$3"
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v sqlite3 >/dev/null || fail "the sqlite3 command is needed (Debian package sqlite3)"
. "$(dirname "$0")/lib_store.sh"
d=(--data-dir "$work/d")

# ---- the first user: no --user, and it must be an admin ----
if "$radraft" user add rad1 --role radiologist --display-name "Doe^Jane" "${d[@]}" \
    >"$work/out" 2>"$work/err"; then
    fail "a first user that is not an admin was added"
fi
grep -q "first user must be an admin" "$work/err" || fail "first non-admin: $(cat "$work/err")"
printf 'admin-secret\n' | "$radraft" user add admin --role admin --display-name "Admin^Ada" \
    --password-stdin "${d[@]}" >"$work/out"
grep -q "user: added admin (admin)" "$work/out" || fail "bootstrap: $(cat "$work/out")"
# Once a user exists, adding one needs an acting admin.
set +e
"$radraft" user add eve --role admin --display-name "Eve^E" "${d[@]}" >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "a second user without --user: exit $rc"
grep -q "acting admin" "$work/err" || fail "second bootstrap: $(cat "$work/err")"

# ---- a radiologist with a password from standard input ----
printf 'rad1-secret-pw\n' | "$radraft" user add rad1 --role radiologist \
    --display-name "Doe^Jane" --password-stdin --user admin "${d[@]}" --json >"$work/add.json"
python3 - "$work/add.json" <<'PY'
import json, sys
u = json.loads(open(sys.argv[1]).read())
assert u["name"] == "rad1" and u["role"] == "radiologist" and u["has_password"], u
assert u["display_name"] == "Doe^Jane" and u["disabled"] is False, u
assert "password_hash" not in u, u
PY
# A password too short, and a malformed display name, are refused.
set +e
printf 'short\n' | "$radraft" user add v1 --role viewer --display-name "V^V" --password-stdin \
    --user admin "${d[@]}" >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "short password: exit $rc"
grep -q "8 to 1024 bytes" "$work/err" || fail "short password: $(cat "$work/err")"
set +e
"$radraft" user add v1 --role viewer --display-name "a^b^c^d^e^f" --user admin "${d[@]}" \
    >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "six-component PN: exit $rc"
grep -q "at most 5" "$work/err" || fail "six-component PN: $(cat "$work/err")"
# No --password option exists: a password never goes through argv.
set +e
"$radraft" user add v1 --role viewer --display-name "V^V" --password hunter22 --user admin \
    "${d[@]}" >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "--password on the command line: exit $rc"
# (--password is taken as an abbreviation of --password-stdin, which takes no value.)
grep -q "unexpected argument 'hunter22'" "$work/err" || fail "--password: $(cat "$work/err")"

# ---- list ----
"$radraft" user list "${d[@]}" >"$work/list.txt"
grep -Eq "^admin +admin +enabled +yes +Admin\^Ada$" "$work/list.txt" || fail "list: $(cat "$work/list.txt")"
grep -Eq "^rad1 +radiologist +enabled +yes +Doe\^Jane$" "$work/list.txt" || fail "list: $(cat "$work/list.txt")"
"$radraft" user list --json "${d[@]}" >"$work/list.jsonl"
python3 - "$work/list.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["name"] for r in rows] == ["admin", "rad1"], rows
assert rows[0]["role"] == "admin" and rows[1]["role"] == "radiologist", rows
assert all("password_hash" not in r and r["has_password"] for r in rows), rows
PY

# ---- a non-admin manages no user ----
set +e
"$radraft" user add carol --role viewer --display-name "Carol^C" --user rad1 "${d[@]}" \
    >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "a radiologist adding a user: exit $rc"
grep -q "user 'rad1' is a radiologist: the admin role is needed" "$work/err" ||
    fail "non-admin add: $(cat "$work/err")"
set +e
"$radraft" user disable admin --user rad1 "${d[@]}" >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "a radiologist disabling an admin: exit $rc"
grep -q "admin role is needed" "$work/err" || fail "non-admin disable: $(cat "$work/err")"

# ---- passwd: one's own, then disable and enable ----
printf 'rad1-new-secret\n' | "$radraft" user passwd rad1 --password-stdin "${d[@]}" >"$work/out"
grep -q "user: set the password of rad1" "$work/out" || fail "passwd: $(cat "$work/out")"
"$radraft" user disable rad1 --user admin "${d[@]}" >"$work/out"
grep -q "user: disabled rad1 (radiologist, disabled)" "$work/out" || fail "disable: $(cat "$work/out")"
"$radraft" user list "${d[@]}" | grep -Eq "^rad1 +radiologist +disabled " || fail "list after disable"
set +e
printf 'rad1-other-secret\n' | "$radraft" user passwd rad1 --password-stdin "${d[@]}" \
    >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "a disabled user's passwd: exit $rc"
grep -q "'rad1' is disabled" "$work/err" || fail "disabled passwd: $(cat "$work/err")"
"$radraft" user enable rad1 --user admin "${d[@]}" >"$work/out"
grep -q "user: enabled rad1 (radiologist)" "$work/out" || fail "enable: $(cat "$work/out")"

# ---- the audit trail ----
"$radraft" audit list "${d[@]}" >"$work/audit.txt"
[ "$(wc -l <"$work/audit.txt")" = 5 ] || fail "audit list: $(cat "$work/audit.txt")"
grep -Eq "^ +1 .* \(radraft\) +user-add +user=admin role=admin first-user$" "$work/audit.txt" ||
    fail "audit row 1: $(cat "$work/audit.txt")"
grep -Eq "^ +2 .* admin +user-add +user=rad1 role=radiologist$" "$work/audit.txt" ||
    fail "audit row 2: $(cat "$work/audit.txt")"
"$radraft" audit list --user admin --json "${d[@]}" >"$work/audit.jsonl"
python3 - "$work/audit.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["action"] for r in rows] == ["user-add", "user-disable", "user-enable"], rows
assert all(r["user"] == "admin" for r in rows), rows
for a, b in zip(rows, rows[1:]):
    assert len(a["hash"]) == 64 and b["id"] > a["id"], (a, b)
PY
"$radraft" audit list --user rad1 "${d[@]}" | grep -Eq "user-passwd +user=rad1$" ||
    fail "audit list --user rad1"
"$radraft" audit verify "${d[@]}" >"$work/verify.txt"
grep -qx "audit: 5 rows, chain intact" "$work/verify.txt" || fail "verify: $(cat "$work/verify.txt")"

# The triggers refuse an edit...
if rd_db "$work/d" "UPDATE audit SET user='mallory' WHERE id=2" 2>"$work/err"; then
    fail "the audit table accepted an UPDATE"
fi
grep -q "append-only" "$work/err" || fail "trigger: $(cat "$work/err")"
# ...and one made around them is found, at the row it changed.
rd_db_around_triggers "$work/d" "UPDATE audit SET user='mallory' WHERE id=2"
set +e
"$radraft" audit verify "${d[@]}" >"$work/verify.txt" 2>"$work/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "verify after tampering: exit $rc"
grep -q "chain broken at row 2" "$work/verify.txt" || fail "tampered verify: $(cat "$work/verify.txt")"
grep -q "audit row 2 does not match its hash" "$work/err" || fail "tampered verify: $(cat "$work/err")"
set +e
"$radraft" audit verify --json "${d[@]}" >"$work/verify.json" 2>/dev/null
set -e
python3 - "$work/verify.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
assert v["intact"] is False and v["bad_id"] == 2 and v["rows"] == 1, v
PY

# ---- usage ----
"$radraft" user --help | grep -q "usage: radraft user" || fail "user --help"
"$radraft" audit --help | grep -q "usage: radraft audit" || fail "audit --help"
set +e
"$radraft" user frobnicate x "${d[@]}" >/dev/null 2>"$work/err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "unknown user command: exit $rc"
grep -q "unknown user command 'frobnicate'" "$work/err" || fail "unknown user command: $(cat "$work/err")"
echo "PASS: test_user_audit"
