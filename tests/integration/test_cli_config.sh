#!/bin/bash
# `radraft config`: --print shows the effective configuration as JSON (the built-in
# defaults, then the file of --config or $RADRAFT_CONFIG, then --set), --keys lists every key
# with its type, range and default, and a bad key or value stops the command with exit 1
# and a message that names where it came from (the file or the command line) and the key.
#
# usage: bash test_cli_config.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
command -v python3 >/dev/null || { echo "FAIL: python3 is not installed"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
unset RADRAFT_CONFIG
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
# get FILE KEY: the value of dotted KEY in the JSON configuration FILE, as JSON.
get() {
    python3 -c '
import functools, json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps(functools.reduce(lambda o, k: o[k], sys.argv[2].split("."), d)))' "$1" "$2"
}
# refused WHAT CODE MESSAGE ARGS...: `radraft config ARGS...` exits CODE, prints nothing on
# standard output, and its error output holds MESSAGE (a fixed string).
refused() {
    local what=$1 code=$2 msg=$3 rc
    shift 3
    "$RADRAFT" config "$@" >refused.out 2>refused.err
    rc=$?
    if [ $rc -ne "$code" ]; then
        fail "$what: exit $rc (wanted $code): $(cat refused.err)"
    elif [ -s refused.out ]; then
        fail "$what: printed a configuration anyway: $(head -c 200 refused.out)"
    elif ! grep -qF -- "$msg" refused.err; then
        fail "$what: '$(cat refused.err)' does not say '$msg'"
    else
        pass "$what: $(head -1 refused.err)"
    fi
}

# ---- --print and --keys agree: the same keys, and each default as --keys gives it ----
"$RADRAFT" config --print >print.json 2>print.err || fail "config --print: $(cat print.err)"
"$RADRAFT" config >default.json 2>/dev/null || fail "config"
cmp -s print.json default.json && pass "--print is the default" || fail "config and config --print differ"
"$RADRAFT" config --keys >keys.txt 2>keys.err || fail "config --keys: $(cat keys.err)"
python3 - keys.txt print.json <<'PY' && pass "--keys and --print: the same $(wc -l <keys.txt) keys, every default" || fail "--keys and --print disagree"
import json, re, sys
keys = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(\S+)\s+(string|int|number|bool|list)\s+(.*?)\s*default (\S+)", line)
    assert m, f"a line of --keys without key, type and default: {line!r}"
    keys[m.group(1)] = (m.group(2), m.group(4))
printed = {}
def walk(prefix, obj):
    for k, v in obj.items():
        if isinstance(v, dict):
            walk(prefix + k + ".", v)
        else:
            printed[prefix + k] = v
walk("", json.load(open(sys.argv[2])))
assert len(keys) > 50, len(keys)
assert set(keys) == set(printed), (set(keys) ^ set(printed))
for key, (kind, default) in keys.items():
    v = printed[key]
    if kind == "int":
        want = int(default)
    elif kind == "number":
        want = float(default)
    elif kind == "bool":
        want = default == "true"
    elif kind == "list":
        want = [] if default == '""' else default.split(",")
    else:
        want = "" if default == '""' else default
    assert v == want and type(v) is type(want) or (kind == "number" and v == want), (key, v, want)
PY
[ "$(get print.json server.port)" = 11112 ] && [ "$(get print.json server.ae_title)" = '"RADRAFT"' ] &&
    [ "$(get print.json log.level)" = '"info"' ] && pass "defaults: server.port 11112, AE RADRAFT, log info" ||
    fail "defaults: $(get print.json server.port) $(get print.json server.ae_title) $(get print.json log.level)"

# ---- the file, then --set; nested and dotted keys mean the same ----
cat >site.json <<'JSON'
{"server": {"port": 104, "allowed_calling_aes": ["PACS"]}, "server.ae_title": "SITEAE",
 "log": {"level": "warn"}}
JSON
"$RADRAFT" config --config site.json >site.out 2>site.err || fail "config --config site.json: $(cat site.err)"
[ "$(get site.out server.port)" = 104 ] && [ "$(get site.out server.ae_title)" = '"SITEAE"' ] &&
    [ "$(get site.out server.allowed_calling_aes)" = '["PACS"]' ] && [ "$(get site.out log.level)" = '"warn"' ] &&
    pass "the file's values, nested and dotted" || fail "with site.json: $(cat site.out)"
[ "$(get site.out server.stable_seconds)" = "$(get print.json server.stable_seconds)" ] &&
    pass "keys the file does not set keep their defaults" || fail "server.stable_seconds changed"
"$RADRAFT" config --config site.json --set server.port=105 --set server.allowed_calling_aes=A,B \
    --set server.check_called_ae=true >set.out 2>set.err || fail "--set: $(cat set.err)"
[ "$(get set.out server.port)" = 105 ] && [ "$(get set.out server.ae_title)" = '"SITEAE"' ] &&
    [ "$(get set.out server.allowed_calling_aes)" = '["A", "B"]' ] &&
    [ "$(get set.out server.check_called_ae)" = true ] &&
    pass "--set overrides the file (an int, a list, a bool)" || fail "--set over the file: $(cat set.out)"
echo '{"server": {"port": 106}}' >other.json
RADRAFT_CONFIG=site.json "$RADRAFT" config >env.out 2>env.err || fail "RADRAFT_CONFIG: $(cat env.err)"
RADRAFT_CONFIG=site.json "$RADRAFT" config --config other.json >both.out 2>both.err ||
    fail "RADRAFT_CONFIG and --config: $(cat both.err)"
[ "$(get env.out server.port)" = 104 ] && [ "$(get both.out server.port)" = 106 ] &&
    pass "\$RADRAFT_CONFIG is read, and --config wins over it" ||
    fail "RADRAFT_CONFIG: port $(get env.out server.port), with --config $(get both.out server.port)"

# ---- refusals: exit 1, nothing printed, and the source and the key named ----
refused "a misspelt key on the command line" 1 \
    "command line: unknown key 'server.prot' (did you mean 'server.port'?)" --set server.prot=104
refused "a port of 0" 1 "command line: key 'server.port': 0 is not an integer in [1, 65535]" \
    --set server.port=0
refused "a port of 65536" 1 "key 'server.port': 65536 is not an integer in [1, 65535]" \
    --set server.port=65536
refused "a port that is not a number" 1 "key 'server.port': 'abc' is not a number" --set server.port=abc
refused "an unknown log level" 1 "key 'log.level': 'loud' is not one of error|warn|info|debug" \
    --set log.level=loud
refused "an unknown duplicate policy" 1 \
    "key 'store.duplicate_policy': 'bogus' is not one of keep-first|replace" --set store.duplicate_policy=bogus
refused "a bool that is neither" 1 "key 'server.check_called_ae': 'maybe' is not true or false" \
    --set server.check_called_ae=maybe
refused "--set without =" 1 "--set expects KEY=VALUE, got 'nokey'" --set nokey
echo '{"server": {"port": 104, "ae_titel": "X"}}' >misspelt.json
refused "a misspelt key in the file" 1 \
    "misspelt.json: unknown key 'server.ae_titel' (did you mean 'server.ae_title'?)" --config misspelt.json
echo '{"server": {"port": "104"}}' >string.json
refused "a string for an int in the file" 1 "string.json: key 'server.port' must be a number" \
    --config string.json
echo '{"server": {"port": 70000}}' >range.json
refused "a port out of range in the file" 1 \
    "range.json: key 'server.port': 70000 is not an integer in [1, 65535]" --config range.json
echo '{"server": ' >broken.json
refused "a file that is not JSON" 1 "broken.json: not valid JSON (near byte 12)" --config broken.json
echo '[1, 2]' >array.json
refused "a file that is not an object" 1 "array.json: the configuration must be a JSON object" \
    --config array.json
refused "a missing file" 1 "missing.json: No such file or directory" --config missing.json
RADRAFT_CONFIG=misspelt.json refused "a bad file named by \$RADRAFT_CONFIG" 1 \
    "misspelt.json: unknown key 'server.ae_titel'"
# A refusal in the file is one even when --set would give the key a good value.
refused "a bad file under a good --set" 1 "range.json: key 'server.port'" --config range.json \
    --set server.port=104
refused "an operand" 2 "unexpected argument 'extra'" extra
"$RADRAFT" config --help >help.txt 2>&1 && grep -q "usage: radraft config (--print | --keys)" help.txt &&
    pass "--help" || fail "--help: $(cat help.txt)"

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
