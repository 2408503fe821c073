"""proxyfs as a service: systemd's readiness protocol, the pid file, what
`meson install` puts in place, the man page (linted, and naming every flag,
file and config key that --help, the tree and the config have), and the
mount options that are usage matters (-o nonempty, an unknown -o).

The notify tests play systemd: a unix datagram socket of their own named
by NOTIFY_SOCKET, read with a deadline.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (EXIT_TIMEOUT, MOUNT_TIMEOUT, REPO, config_db, is_mounted, lazy_unmount,
                      wait_until, write_config, write_list)

NOTIFY_TIMEOUT = 15.0
BUILD_DIR = os.path.dirname(os.path.realpath(
    os.path.join(REPO, os.environ.get("PROXYFS_BIN", "build/proxyfs"))))
MAN_SOURCE = os.path.join(REPO, "doc", "proxyfs.8.in")
MAN_BUILT = os.path.join(BUILD_DIR, "doc", "proxyfs.8")


def good_conf(ps, tmp, good, extra=""):
    lst = write_list(tmp, "".join(p.line + "\n" for p in good))
    return write_config(tmp, ps.judge, lst, extra=extra), lst


def quiet_conf(tmp, extra=""):
    """A config whose judge never answers: the daemon mounts and serves an
    empty pool, which is all the tests of options need."""
    lst = write_list(tmp, "")
    conf = os.path.join(tmp, "proxyfs.ini")
    with open(conf, "w") as f:
        f.write("[proxyfs]\ndb = %s\n%s\n[check]\njudge = http://127.0.0.1:9/\n"
                "[source:local]\nurl = %s\n" % (os.path.join(tmp, "proxyfs.db"), extra, lst))
    return conf


# --- sd_notify ---

class NotifyListener:
    """What systemd does for Type=notify: a datagram socket, each message a
    set of KEY=value lines."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.env = "@" + address[1:] if address.startswith("\0") else address

    def next(self, timeout=NOTIFY_TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            pytest.fail("no notification within %.0fs" % timeout)
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    def wait_for(self, key, timeout=NOTIFY_TIMEOUT):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no %s= within %.0fs; got %r" % (key, timeout, seen))
            msg = self.next(left)
            seen.append(msg)
            if key in msg:
                return msg

    def close(self):
        self.sock.close()


def alive_in_status(status):
    m = re.match(r"(\d+) alive of (\d+)", status)
    assert m, "STATUS=%r has no pool summary" % status
    return int(m.group(1))


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_notify_ready_status_stopping(binary, peer_set, mounts, tmp_path, kind):
    """READY=1 comes once the mount is up and the last known pool is
    served (STATUS= counts it), a new STATUS= after a rescan publishes,
    STOPPING=1 when SIGTERM unmounts."""
    tmp = str(tmp_path)
    conf, _ = good_conf(peer_set, tmp, peer_set.good)
    first = mounts.new(conf).start()
    first.sync()
    known = len(first.live())
    assert known == len(peer_set.good)
    first.stop()

    address = (os.path.join(tmp, "notify.sock") if kind == "path"
               else "\0proxyfs-test-%d" % os.getpid())
    listener = NotifyListener(address)
    mnt = os.path.join(tmp, "mnt")
    log = open(os.path.join(tmp, "notify.log"), "wb")
    proc = subprocess.Popen([binary, "-f", "-c", conf, mnt], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log,
                            env=dict(os.environ, NOTIFY_SOCKET=listener.env))
    try:
        ready = listener.wait_for("READY")
        assert ready["READY"] == "1"
        # Ready means mounted, serving the warm pool from the database.
        assert is_mounted(mnt)
        assert alive_in_status(ready["STATUS"]) == known
        with open(os.path.join(mnt, "live.txt")) as f:
            assert len(f.read().splitlines()) == known

        with open(os.path.join(mnt, "control", "reload"), "w") as f:
            f.write("sync\n")
        update = listener.wait_for("STATUS")
        assert alive_in_status(update["STATUS"]) == known

        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING")
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if is_mounted(mnt):
            lazy_unmount(mnt)
        listener.close()
        log.close()


# --- the pid file ---

def test_pid_file_names_the_daemon_for_sighup(peer_set, mounts, tmp_path):
    """[proxyfs] pid_file holds the background daemon's pid once the
    command returns, `kill -HUP $(cat PIDFILE)` re-reads the sources, and
    the file is gone after a clean exit."""
    tmp = str(tmp_path)
    pid_file = os.path.join(tmp, "run", "proxyfs.pid")
    os.makedirs(os.path.dirname(pid_file))
    first, later = peer_set.good[:-1], peer_set.good[-1]
    conf, lst = good_conf(peer_set, tmp, first, extra="")
    with open(conf) as f:
        text = f.read().replace("[proxyfs]\n", "[proxyfs]\npid_file = %s\n" % pid_file, 1)
    with open(conf, "w") as f:
        f.write(text)

    d = mounts.new(conf, background=True).start()
    with open(pid_file) as f:
        assert f.read() == "%d\n" % d.pid
    d.sync()
    assert later.uri not in d.live()

    with open(lst, "a") as f:
        f.write(later.line + "\n")
    subprocess.run(["sh", "-c", 'kill -HUP "$(cat %s)"' % pid_file], check=True)
    wait_until(lambda: later.uri in d.live(), 20, "the proxy the HUP added to be live")

    d.stop()
    assert not os.path.exists(pid_file)


# --- mount options ---

def test_unknown_mount_option_is_a_usage_error(binary, tmp_path):
    """An -o option FUSE does not know exits 2 (as a usage error), names
    it, and starts nothing: no mount, no database."""
    tmp = str(tmp_path)
    conf = quiet_conf(tmp)
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    p = subprocess.run([binary, "-c", conf, "-o", "allow_other,no_such_option", mnt],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=MOUNT_TIMEOUT)
    try:
        assert p.returncode == 2, p.stderr
        assert b"no_such_option" in p.stderr
        assert not is_mounted(mnt)
        assert not os.path.exists(config_db(conf))
    finally:
        if is_mounted(mnt):
            lazy_unmount(mnt)


def test_nonempty_mountpoint_needs_consent(binary, mounts, tmp_path):
    """A mountpoint with files in it is refused (status 1, the reason on
    stderr, the files untouched) unless -o nonempty is given."""
    tmp = str(tmp_path)
    conf = quiet_conf(tmp)
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    with open(os.path.join(mnt, "precious"), "w") as f:
        f.write("keep\n")
    p = subprocess.run([binary, "-c", conf, mnt], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=MOUNT_TIMEOUT)
    try:
        assert p.returncode == 1, p.stderr
        assert b"not empty" in p.stderr and b"nonempty" in p.stderr
        assert not is_mounted(mnt)
        assert not os.path.exists(config_db(conf))
    finally:
        while is_mounted(mnt):
            lazy_unmount(mnt)
    assert os.listdir(mnt) == ["precious"]

    d = mounts.new(conf, mnt=mnt).start(["-o", "nonempty"])
    assert "random" in d.listdir()
    d.stop()
    with open(os.path.join(mnt, "precious")) as f:
        assert f.read() == "keep\n"


# --- install ---

def test_meson_install_puts_everything_in_place(tmp_path):
    """`meson install --destdir` installs the binary, the unit (paths of
    this prefix, Type=notify, no retry of status 2, its Documentation=
    installed), the man page and the example config; systemd-analyze
    verifies the unit."""
    dest = str(tmp_path / "dest")
    subprocess.run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild", "--destdir", dest],
                   check=True, capture_output=True, timeout=120)
    files = {os.path.relpath(os.path.join(d, f), dest)
             for d, _, fs in os.walk(dest) for f in fs}
    options = json.loads(subprocess.run(["meson", "introspect", "--buildoptions", BUILD_DIR],
                                        capture_output=True, text=True, check=True).stdout)
    prefix = next(o["value"] for o in options if o["name"] == "prefix").strip("/")
    unit_rel = os.path.join(prefix, "lib/systemd/system/proxyfs.service")
    for rel in ("bin/proxyfs", "lib/systemd/system/proxyfs.service",
                "share/man/man8/proxyfs.8", "share/doc/proxyfs/examples/proxyfs.ini",
                "share/doc/proxyfs/README.md"):
        assert os.path.join(prefix, rel) in files, sorted(files)

    with open(os.path.join(dest, unit_rel)) as f:
        unit = f.read()
    bindir = "/" + os.path.join(prefix, "bin")
    assert re.search(r"^Type=notify$", unit, re.M)
    assert re.search(r"^ExecStart=%s/proxyfs -f " % re.escape(bindir), unit, re.M)
    assert re.search(r"^RestartPreventExitStatus=2$", unit, re.M)
    assert re.search(r"^LimitNOFILE=\d+$", unit, re.M)
    doc = re.search(r"^Documentation=(.*)$", unit, re.M).group(1).split()
    assert "man:proxyfs(8)" in doc
    for url in doc:
        if url.startswith("file://"):
            assert os.path.exists(dest + url[len("file://"):]), url
    # Nothing may give the service a mount namespace: the mount would not
    # reach the host.
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "PrivateMounts", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "ReadWritePaths", "ProtectProc",
                "MountFlags"):
        assert not re.search(r"^%s=" % key, unit, re.M), key

    analyze = shutil.which("systemd-analyze")
    if analyze:
        # The unit as installed, pointed at the binary in the destdir;
        # the man page looked up where it was installed.
        local = str(tmp_path / "proxyfs.service")
        with open(local, "w") as f:
            f.write(unit.replace(bindir + "/proxyfs", os.path.join(dest, prefix, "bin/proxyfs")))
        p = subprocess.run([analyze, "verify", local], capture_output=True, text=True,
                           env=dict(os.environ,
                                    MANPATH=os.path.join(dest, prefix, "share/man")))
        assert p.returncode == 0 and "proxyfs.service" not in p.stderr, p.stderr


# --- the man page, and --help against it ---

def test_man_page_lints_clean():
    """The built page renders without a warning (groff -ww, man -l, and
    mandoc -T lint where installed)."""
    assert os.path.exists(MAN_BUILT), "build the project first"
    p = subprocess.run(["groff", "-ww", "-z", "-t", "-man", MAN_BUILT],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = subprocess.run(["man", "--warnings", "-l", MAN_BUILT], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = re.sub(".\b", "", p.stdout)  # overstrike (bold) undone
    assert "proxyfs check" in text and "EXIT STATUS" in text
    if shutil.which("mandoc"):
        p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", MAN_BUILT],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr


FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def man_sections():
    """The man page source, by .SH section, with \\- read as -."""
    with open(MAN_SOURCE) as f:
        text = f.read().replace("\\-", "-")
    sections = {}
    for part in re.split(r"^\.SH ", text, flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        sections[title.strip('"')] = body
    return sections


def source_flags(path):
    """The flags a command's getopt_long takes: its long options table and
    its short-option string (one of each in the file)."""
    with open(os.path.join(REPO, path)) as f:
        src = f.read()
    start = src.index("longopts[] = {")
    table = src[start:src.index("};", start)]
    flags = {"--" + n for n in re.findall(r'\{ "([\w-]+)",', table)}
    shorts = re.search(r'getopt_long\(argc, argv, "([^"]*)"', src[start:]).group(1)
    flags |= {"-" + c for c in shorts.replace(":", "")}
    return flags


def help_of(binary, *args):
    p = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("command,section,source", [
    ((), "OPTIONS", "src/main.c"),
    (("check",), "CHECK", "src/cli_check.c"),
    (("judge",), "JUDGE", "src/cli_judge.c"),
])
def test_help_and_man_name_every_flag(binary, command, section, source):
    """Every flag the command takes is in its --help and in its part of the
    man page, and neither names one it does not take."""
    taken = source_flags(source)
    text = help_of(binary, *command)
    if not command:
        # The daemon's text also shows the other commands' synopses.
        text = "\n".join(l for l in text.splitlines()
                         if "proxyfs check" not in l and "proxyfs judge" not in l)
    in_help = set(FLAG.findall(text))
    in_man = set(FLAG.findall(man_sections()[section]))
    assert in_help == taken, "--help: missing %s, extra %s" % (taken - in_help, in_help - taken)
    assert in_man == taken, "man page: missing %s, extra %s" % (taken - in_man, in_man - taken)


def test_help_and_man_name_every_file_of_the_tree(mounts, tmp_path, binary):
    """Every name the mounted tree shows (the root and each folder's files)
    is in --help and in the man page's THE TREE."""
    d = mounts.new(quiet_conf(str(tmp_path))).start()
    names = set()
    for top in d.listdir():
        names.add(top)
        if os.path.isdir(d.path(top)):
            for entry in d.listdir(top):
                names.add(entry)
    d.stop()
    help_text = help_of(binary)
    tree = man_sections()["THE TREE"]
    words = lambda text: set(re.findall(r"[\w.]+", text))
    assert names - {"local"} <= words(help_text), names - words(help_text)
    assert names - {"local"} <= words(tree), names - words(tree)
    assert "sources/NAME/" in help_text


def test_man_names_every_config_key():
    """Each key of the config's table is described in CONFIGURATION."""
    with open(os.path.join(REPO, "src", "config.c")) as f:
        keys = set(re.findall(r'\{SECT_\w+, "(\w+)"', f.read()))
    assert "pid_file" in keys
    conf = man_sections()["CONFIGURATION"]
    described = set(re.findall(r"^\.BR? (\w+)", conf, re.M))
    for pair in re.findall(r'^\.BR (\w+) ", " (\w+)', conf, re.M):
        described |= set(pair)
    assert keys <= described, keys - described
