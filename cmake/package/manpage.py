#!/usr/bin/env python3
"""Writes the man page radraft(1) from what the radraft binary itself prints.

The command list comes from `radraft help`, each command's reference from `radraft CMD
--help`, and the configuration keys from `radraft config --keys`, so that a command or key
added to the binary is in the man page at the next build, and no help text is written
twice. Run by the build (cmake/package/package.cmake); a help text it cannot parse stops
the build instead of leaving something out.
"""

import argparse
import re
import subprocess
import sys


def run(radraft, *args):
    """The standard output of `radraft ARGS`, which must exit 0."""
    done = subprocess.run([radraft, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"manpage.py: radraft {' '.join(args)} exited {done.returncode}: "
                 f"{done.stderr.strip()}")
    return done.stdout


def esc(text):
    """Text as roff reads it literally: backslashes and hyphens escaped (a hyphen is then
    the ASCII one that a copied option needs), and a line that would start a request
    protected."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def commands(help_text):
    """(name, summary) of each command in `radraft help`: the lines between "commands:" and
    the blank line after them."""
    found, inside = [], False
    for line in help_text.splitlines():
        if line == "commands:":
            inside = True
        elif inside and not line.strip():
            break
        elif inside:
            m = re.match(r"^  (\S+) +(\S.*)$", line)
            if not m:
                sys.exit(f"manpage.py: not a command line of radraft help: {line!r}")
            found.append((m.group(1), m.group(2)))
    if not found:
        sys.exit("manpage.py: radraft help lists no commands")
    return found


# A line of `radraft config --keys`: name, type, range (empty, [lo, hi] or a|b choices),
# "default" and the default ("" when empty), then the meaning.
KEY_LINE = re.compile(
    r"^(?P<name>[a-z0-9_.]+) +(?P<type>int|number|string|bool|list) +"
    r"(?P<range>\[[^]]*\] +|[a-z0-9_|-]+ +)?default (?P<default>\S+) +(?P<help>\S.*)$")


def config_keys(keys_text):
    keys = []
    for line in keys_text.splitlines():
        m = KEY_LINE.match(line)
        if not m:
            sys.exit(f"manpage.py: not a key line of radraft config --keys: {line!r}")
        keys.append(m.groupdict())
    return keys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--radraft", required=True, help="the radraft binary")
    ap.add_argument("--version", required=True)
    ap.add_argument("--date", required=True, help="the release's date, as in the changelog")
    ap.add_argument("--config-file", required=True, help="the installed configuration")
    ap.add_argument("--data-dir", required=True, help="the service's data directory")
    ap.add_argument("--unit", required=True, help="the installed systemd unit")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    cmds = commands(run(a.radraft, "help"))
    keys = config_keys(run(a.radraft, "config", "--keys"))
    model = next((k["default"] for k in keys if k["name"] == "encoder.model"), None)
    if model is None:
        sys.exit("manpage.py: radraft config --keys has no encoder.model")

    out = []
    w = out.append
    w(f'.TH RADRAFT 1 "{a.date}" "radraft {a.version}" "User Commands"')
    w(".SH NAME")
    w("radraft \\- draft chest X\\-ray reports as DICOM Structured Reports")
    w(".SH SYNOPSIS")
    w(".B radraft")
    w(".I COMMAND")
    w("[\\fIOPTIONS\\fR] [\\fIARGS\\fR]")
    w(".br")
    w(".B radraft")
    w("\\fBhelp\\fR | \\fB\\-\\-version\\fR | \\fICOMMAND\\fR \\fB\\-\\-help\\fR")
    w(".SH DESCRIPTION")
    w("radraft drafts chest X\\-ray reports inside the DICOM world. As a DICOM node")
    w("(\\fBradraft serve\\fR) it receives studies by C\\-STORE, embeds their images with its")
    w("encoder model, finds similar past studies, drafts a report through templates and")
    w("sends it back as a DICOM Structured Report, for a radiologist to review, correct and")
    w("sign in the review queue (\\fBradraft queue\\fR) or on the review web page")
    w("(\\fBradraft web\\fR). The other commands draft whole archives, read and render")
    w("images, train and check models, and manage users and the audit trail.")
    w(".PP")
    w("radraft is not a diagnostic device: every draft needs a radiologist's review.")
    w(".SH COMMANDS")
    for name, summary in cmds:
        w(".TP")
        w(f".B {esc(name)}")
        w(esc(summary))
    w(".SH OPTIONS")
    w("Every command accepts these options (its reference below lists its own):")
    w(".TP")
    w("\\fB\\-\\-config\\fR \\fIFILE\\fR")
    w("the JSON configuration file (default: \\fB$RADRAFT_CONFIG\\fR if set)")
    w(".TP")
    w("\\fB\\-\\-set\\fR \\fIKEY\\fR=\\fIVALUE\\fR")
    w("override one configuration key (repeatable)")
    w(".TP")
    w("\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR")
    w("error, warn, info or debug")
    w(".TP")
    w("\\fB\\-h\\fR, \\fB\\-\\-help\\fR")
    w("the command's help, as in the reference below")
    w(".SH \"COMMAND REFERENCE\"")
    w("What \\fBradraft\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR prints.")
    for name, _ in cmds:
        w(f'.SS "radraft {esc(name)}"')
        w(".nf")
        for line in run(a.radraft, name, "--help").rstrip("\n").splitlines():
            w(esc(line) if line.strip() else "")
        w(".fi")
    w(".SH CONFIGURATION")
    w("A configuration file is JSON whose nesting follows the dotted key names:")
    w('{"server": {"port": 104}} and {"server.port": 104} mean the same. radraft applies')
    w("its defaults, then the file, then the command line (\\fB\\-\\-set\\fR, and options")
    w("such as \\fB\\-\\-port\\fR). An unknown key, a wrong type or a value out of range stops")
    w("the command with a message naming the file and the key.")
    w("\\fBradraft config \\-\\-print\\fR prints the effective configuration.")
    w("The keys, with their type, range and default:")
    for k in keys:
        kind = k["type"]
        if k["range"]:
            kind += " " + k["range"].strip()
        w(".TP")
        w(f".B {esc(k['name'])}")
        w(f"({esc(kind)}; default {esc(k['default'])})")
        w(".br")
        w(esc(k["help"]))
    w(".SH ENVIRONMENT")
    w(".TP")
    w(".B RADRAFT_CONFIG")
    w("the configuration file of a command given no \\fB\\-\\-config\\fR")
    w(".SH FILES")
    w(".TP")
    w(f".I {esc(a.config_file)}")
    w("the configuration of the radraft service")
    w(".TP")
    w(f".I {esc(a.data_dir)}")
    w("the service's data directory (server.data_dir): received studies, drafts, the")
    w("database; the radraft user's only (mode 0700)")
    w(".TP")
    w(f".I {esc(model)}")
    w("the encoder model radraft ships (encoder.model), with its seed archive; its model")
    w("card is README.md beside it")
    w(".TP")
    w(f".I {esc(a.unit)}")
    w("the systemd service: \\fBradraft serve\\fR as the radraft user; its log is in the")
    w("journal (\\fBjournalctl \\-u radraft\\fR)")
    w('.SH "EXIT STATUS"')
    w("0 on success, 1 on a failure (such as a file that could not be read), 2 on a usage")
    w("error.")
    w('.SH "SEE ALSO"')
    w(".BR echoscu (1),")
    w(".BR storescu (1),")
    w(".BR systemctl (1),")
    w(".BR journalctl (1)")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
