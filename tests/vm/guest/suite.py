#!/usr/bin/env python3
"""Guest test suite for tests/vm: runs as root under systemd (PID 1) in the Debian guest.

The host's 9p share is mounted on /mnt/vm: debs/ (the package, debs/newer/ a newer build),
filter (a regex: only matching tests run), target (x86_64, x86_64-trixie or aarch64), results
(this writes `ok NAME` / `FAIL NAME: reason`, one line per test), state (phase markers), logs/
(one log per test, and `timing`). Phase 1 runs at the first boot; the reboot test writes
`rebooting` to state and boot.sh reboots; phase 2 runs at the second boot and ends with
`suite done`. Every test has its own deadline (SIGALRM), every command its own
timeout, so a hang fails one test instead of the run.

On aarch64 (TCG emulation of a foreign CPU) only the SMOKE tests run, unless a filter picks
tests by name.
"""

import ctypes
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
import traceback
import urllib.request

V = "/mnt/vm"
WORK = "/var/tmp/vm-suite"  # on the guest disk: survives the reboot, not the run
CG = "/sys/fs/cgroup"
TARGET = open(V + "/target").read().strip() if os.path.exists(V + "/target") else "x86_64"
MANY = 20  # dynos in the formation the restart tests keep running


class Fail(Exception):
    pass


class Timeout(Exception):
    pass


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def sh(cmd, timeout=120, check=True, user=None, env=None):
    """Runs a shell command; its output. A non-zero exit fails the test when check is set."""
    if user:
        cmd = "runuser -u %s -- sh -c %s" % (user, shlex_quote(cmd))
    log("$", cmd)
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, env=env)
    out = p.stdout + p.stderr
    if out.strip():
        log(out.rstrip()[-4000:])
    if check and p.returncode != 0:
        raise Fail("`%s` exited %d: %s" % (cmd, p.returncode, last_line(out)))
    return p.stdout if check else (p.returncode, out)


def shlex_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "(no output)"


def roboku_json(*args, timeout=120):
    out = sh("roboku " + " ".join(args) + " --json", timeout=timeout)
    return json.loads(out)


def wait_for(what, secs, fn, every=0.5):
    """Polls fn until it returns something truthy; that value. Fails naming `what`."""
    deadline = time.time() + secs
    last_err = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (Fail, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            last_err = e
        time.sleep(every)
    raise Fail("timed out after %ds waiting for %s%s" % (secs, what, " (last error: %s)" % last_err if last_err else ""))


def unit_prop(unit, prop):
    return sh("systemctl show -p %s --value %s" % (prop, unit)).strip()


def main_pid():
    return int(unit_prop("robokud.service", "MainPID") or 0)


def service_up():
    """robokud.service active (READY=1 received) with a main pid, and the API answering."""
    if unit_prop("robokud.service", "ActiveState") != "active":
        return 0
    pid = main_pid()
    if pid and sh("roboku status", check=False, timeout=20)[0] == 0:
        return pid
    return 0


def ps(app):
    return {d["name"]: d for d in roboku_json("ps", "-a", app)}


def write_app(name, files):
    d = os.path.join(WORK, "apps", name)
    shutil.rmtree(d, ignore_errors=True)
    for rel, text in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return d


def deploy(app, files):
    d = write_app(app, files)
    if sh("roboku apps:info -a %s" % app, check=False)[0] != 0:
        sh("roboku apps:create %s" % app)
    return sh("roboku deploy %s -a %s" % (d, app), timeout=600)


def wait_up(app, name, secs=60, not_pid=None):
    def up():
        d = ps(app).get(name)
        if d and d["state"] == "up" and d["pid"] and d["pid"] != not_pid:
            return d
        return None

    return wait_for("%s %s up" % (app, name), secs, up)


def dyno_cgroup(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        rel = [l.split("::", 1)[1].strip() for l in f if l.startswith("0::")][0]
    return CG + rel


def read(path):
    with open(path) as f:
        return f.read().strip()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def http_get(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
        return r.read().decode()


# ---------------------------------------------------------------- the 20-dyno formation

TICK = 'tick: while :; do echo "tick $DYNO $(date +%s%3N)"; sleep 1; done\n'


def ensure_many():
    """App `many` with MANY tick dynos up; {name: pid}."""
    if sh("roboku apps:info -a many", check=False)[0] != 0:
        deploy("many", {"Procfile": TICK})
        sh("roboku ps:scale tick=%d -a many" % MANY)
    return snapshot_many()


def snapshot_many(secs=120):
    def all_up():
        dynos = ps("many")
        up = {n: d for n, d in dynos.items() if d["state"] == "up" and d["pid"]}
        return up if len(up) == MANY else None

    up = wait_for("%d many dynos up" % MANY, secs, all_up)
    return {n: (d["pid"], d["restarts"]) for n, d in up.items()}


def dyno_pids_alive(before):
    dead = [n for n, (pid, _) in before.items() if not alive(pid)]
    if dead:
        raise Fail("dynos died: %s" % ", ".join(sorted(dead)))


def check_kept(before, after_ms, what):
    """Same pids, no restarts, and every dyno's log lines captured after `after_ms`."""
    now = snapshot_many()
    changed = ["%s %s->%s" % (n, before[n], now.get(n)) for n in before if now.get(n) != before[n]]
    if changed:
        raise Fail("%s restarted dynos (pid, restarts): %s" % (what, "; ".join(sorted(changed))))

    def captured():
        lines = sh("roboku logs -a many --source app -n %d --json" % (MANY * 40), timeout=60)
        seen = set()
        for l in lines.splitlines():
            if l.strip():
                e = json.loads(l)
                if e["ts"] > after_ms + 1000 and e["line"].startswith("tick "):
                    seen.add(e["dyno"])
        missing = set(before) - seen
        return not missing or (log("no new lines yet from", sorted(missing)) and False)

    wait_for("log lines from all %d dynos after %s" % (MANY, what), 60, captured, every=2)
    log("%s: %d dynos kept, logs captured" % (what, MANY))


def service_back(old_pid, secs=90):
    return wait_for("robokud back (main pid other than %d)" % old_pid, secs,
                    lambda: (lambda p: p if p and p != old_pid else 0)(service_up()))


# ---------------------------------------------------------------- tests, phase 1


def t_deb_installs_and_service_is_active():
    deb = glob.glob(V + "/debs/roboku_*.deb")[0]
    sh("dpkg -i %s" % deb, timeout=300)
    wait_for("robokud.service active", 60, service_up)
    typ = unit_prop("robokud.service", "Type")
    if typ != "notify":
        raise Fail("robokud.service Type=%s, not notify" % typ)
    status = unit_prop("robokud.service", "StatusText")
    if "running" not in status:
        raise Fail("no STATUS= from robokud: %r" % status)
    log("status text:", status)


def t_status_works_for_a_roboku_group_user():
    sh("id robo >/dev/null 2>&1 || useradd -m -G roboku robo")
    sh("id outsider >/dev/null 2>&1 || useradd -m outsider")
    out = sh("roboku status", user="robo")
    if "v2, limits enforced" not in out:
        raise Fail("roboku status does not report cgroup v2 with limits enforced: %s" % out.strip())
    cg = json.loads(sh("roboku status --json", user="robo"))["cgroup"]
    if (cg["mode"], cg["enforced"]) != ("v2", True):
        raise Fail("status --json says cgroup %s" % cg)
    rc, out = sh("roboku status", user="outsider", check=False)
    if rc == 0:
        raise Fail("a user outside group roboku could use the API")


def t_doctor_on_a_robot():
    """`roboku doctor` on the robot: the agent, cgroup v2 with limits, the .deb's data dir."""
    rc, out = sh("roboku doctor", check=False)
    lines = {l.split()[1]: l for l in out.splitlines() if len(l.split()) > 1}
    for name, want in (("agent", "ok"), ("cgroups", "ok"), ("data", "ok"), ("clock", None)):
        line = lines.get(name)
        if line is None or (want and not line.startswith(want)):
            raise Fail("doctor line %r is %r (want %s): %s" % (name, line, want, out.strip()))
    if "v2" not in lines["cgroups"]:
        raise Fail("doctor does not see cgroup v2: %s" % lines["cgroups"])
    if rc != (1 if any(l.startswith("fail") for l in lines.values()) else 0):
        raise Fail("doctor exited %d for: %s" % (rc, out.strip()))


FAVOR_DIR = "/run/roboku-favordynmods"


def favoring_mounts(pid):
    """Mount points in /proc/PID/mountinfo whose superblock options carry favordynmods."""
    out = []
    for line in read("/proc/%d/mountinfo" % pid).splitlines():
        f = line.split(" ")
        if "-" not in f[6:]:
            continue
        sep = f.index("-", 6)
        if f[sep + 1].startswith("cgroup") and "favordynmods" in f[sep + 3].split(","):
            out.append(f[4])
    return out


def joins_ms(rounds):
    """fork -> the child has joined a fresh cgroup v2 (as a dyno does between fork and exec),
    one round every 0.2 s (an idle spell, as between crashes): median and max, ms."""
    root = CG + "/roboku-bench-joins"
    os.makedirs(root, exist_ok=True)
    times = []
    try:
        for i in range(rounds):
            d = "%s/j%d" % (root, i)
            os.mkdir(d)
            procs = os.open(d + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            r, w = os.pipe()
            time.sleep(0.2)
            t = time.perf_counter_ns()
            pid = os.fork()
            if pid == 0:
                try:
                    os.write(procs, b"0")
                    os.write(w, b"j")
                finally:
                    os._exit(0)
            os.read(r, 1)
            times.append((time.perf_counter_ns() - t) / 1e6)
            os.waitpid(pid, 0)
            for fd in (procs, r, w):
                os.close(fd)
            os.rmdir(d)
    finally:
        os.rmdir(root)
    return median(times), max(times)


def t_joins_are_fast_without_a_grace_period():
    """robokud turns favordynmods on under systemd with cgroup v2 only (docs/supervision.md): a
    named v1 hierarchy at /run/roboku-favordynmods, else the cgroup2 mount remounted. Records
    which, and fork + join times with it and without it (the mount taken away, then robokud
    restarted to put it back)."""
    cg = roboku_json("status")["cgroup"]
    joins = cg.get("joins") or ""
    if not joins.startswith("fast (favordynmods, "):
        raise Fail("status says joins %r: %s" % (joins, cg))
    mount = joins[len("fast (favordynmods, "):-1]
    pid = main_pid()
    mounts = favoring_mounts(pid)
    if mount not in mounts:
        raise Fail("status names %s; robokud's mountinfo has favordynmods on %s" % (mount, mounts))
    how = "named v1 hierarchy" if mount == FAVOR_DIR else "cgroup2 remount"
    on = joins_ms(15)
    off = None
    if mount == FAVOR_DIR:
        sh("umount %s" % FAVOR_DIR)
        off = joins_ms(15)
        old = main_pid()
        sh("systemctl restart robokud")
        service_back(old)
        again = roboku_json("status")["cgroup"].get("joins") or ""
        if again != joins:
            raise Fail("after a restart robokud says joins %r, before %r" % (again, joins))
    summary = ("favordynmods in the guest: %s (%s); fork + join a fresh v2 cgroup after 0.2 s "
               "idle, median/max of 15 (TCG): on %.2f/%.2f ms, off %s\n"
               % (mount, how, on[0], on[1], "%.2f/%.2f ms" % off if off else "not measured"))
    log(summary)
    with open(V + "/logs/favordynmods", "w") as f:
        f.write(summary)


def t_dynos_live_outside_robokud_service():
    deploy("lim", {"Procfile": "sleeper: exec sleep 100000\n"})
    sh("roboku ps:scale sleeper=1 -a lim")
    d = wait_up("lim", "sleeper.1")
    cg = dyno_cgroup(d["pid"])
    unit_cg = CG + unit_prop("robokud.service", "ControlGroup")
    log("dyno cgroup", cg, "robokud.service cgroup", unit_cg)
    if cg.startswith(unit_cg + "/"):
        raise Fail("dyno %s is inside robokud.service's cgroup (%s)" % (cg, unit_cg))
    # Nothing but robokud itself in the unit's cgroup tree.
    procs = sh("cat $(find %s -name cgroup.procs)" % unit_cg).split()
    if [p for p in procs if int(p) != main_pid()]:
        raise Fail("robokud.service holds other processes: %s" % procs)


def t_limits_land_in_v2_files():
    if sh("roboku apps:info -a lim", check=False)[0] != 0:
        deploy("lim", {"Procfile": "sleeper: exec sleep 100000\n"})
    sh("roboku ps:resize sleeper --memory 64M --memory-high 48M --cpu 0.5 --pids 50 --cpuset 0 -a lim")
    sh("roboku ps:scale sleeper=1 -a lim")
    old = ps("lim").get("sleeper.1", {}).get("pid")
    d = wait_for("sleeper.1 up with its limits", 60, lambda: (lambda x: x if x["pid"] else None)(wait_up("lim", "sleeper.1")))
    cg = dyno_cgroup(d["pid"])
    want = {"memory.max": "67108864", "memory.high": "50331648", "cpu.max": "50000 100000",
            "pids.max": "50", "cpuset.cpus": "0"}
    got = {k: read(os.path.join(cg, k)) for k in want}
    log("pid", d["pid"], "(was %s)" % old, cg, got)
    bad = ["%s=%r (want %r)" % (k, got[k], v) for k, v in want.items() if got[k] != v]
    if bad:
        raise Fail("in %s: %s" % (cg, ", ".join(bad)))
    sh("roboku ps:scale sleeper=0 -a lim")


def t_web_dyno_answers_over_http():
    deploy("hello", {"Procfile": "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n",
                     "index.html": "hello from the slug\n"})
    sh("roboku ps:scale web=1 -a hello")
    d = wait_up("hello", "web.1")
    body = wait_for("web.1 answering on port %d" % d["port"], 60, lambda: http_get(d["port"]))
    if body != "hello from the slug\n":
        raise Fail("web.1 answered %r" % body)


def t_killed_dyno_is_replaced():
    deploy("victim", {"Procfile": "sleeper: exec sleep 100000\n"})
    sh("roboku ps:scale sleeper=1 -a victim")
    d = wait_up("victim", "sleeper.1")
    old_cg = dyno_cgroup(d["pid"])
    os.kill(d["pid"], signal.SIGKILL)
    new = wait_up("victim", "sleeper.1", not_pid=d["pid"])
    exit_ = new.get("last_exit") or {}
    log("replaced pid %d by %d; last exit %s" % (d["pid"], new["pid"], exit_))
    if new["restarts"] != d["restarts"] + 1:
        raise Fail("restarts %d -> %d" % (d["restarts"], new["restarts"]))
    if exit_.get("signal") != signal.SIGKILL:
        raise Fail("last exit %s, not SIGKILL" % exit_)
    new_cg = dyno_cgroup(new["pid"])
    if new_cg == old_cg:
        raise Fail("the replacement runs in the killed dyno's cgroup %s" % old_cg)
    wait_for("the killed dyno's cgroup %s removed" % old_cg, 30, lambda: not os.path.exists(old_cg))
    sh("roboku ps:scale sleeper=0 -a victim")


HOG = "import time\nb = b'x' * (200 * 1024 * 1024)\nprint('allocated', flush=True)\ntime.sleep(600)\n"


def t_oom_kill_is_read_from_memory_events_and_reported():
    # Probation off: the hog is OOM-killed over and over by design, which is not its release failing.
    deploy("hog", {"Procfile": "hog: exec python3 hog.py\n", "hog.py": HOG,
                   "app.json": '{"roboku": {"probation": {"secs": 0}}}'})
    sh("roboku ps:resize hog --memory 32M -a hog")
    sh("roboku ps:scale hog=1 -a hog")

    def oomed():
        d = ps("hog").get("hog.1")
        return d if d and (d.get("last_exit") or {}).get("oom") else None

    d = wait_for("hog.1 OOM-killed and reported", 60, oomed)
    if d["oom_kills"] < 1 or "OOM" not in (d["last_exit"].get("reason") or ""):
        raise Fail("reported exit %s, oom_kills %s" % (d["last_exit"], d["oom_kills"]))
    events = sh("roboku events -a hog --json")
    if "oom" not in events.lower():
        raise Fail("no oom event: %s" % last_line(events))
    logs = sh("roboku logs -a hog --source app -n 100")
    if "allocated" in logs:
        raise Fail("the hog got 200M past a 32M limit")
    sh("roboku ps:scale hog=0 -a hog")


# A fork bomb that keeps trying: a refused fork does not end it (dash's `while true; do sleep &
# done` exits at its first "Cannot fork", so its instance lives at the cap only for milliseconds
# and a poll could miss it: CI did). This one sits at pids.max, so what the cap does is observable.
BOMB = """import os, time
refused = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    except OSError:
        refused += 1
        if refused == 1:
            print('fork refused', flush=True)
        time.sleep(0.01)
"""


def t_fork_bomb_is_stopped_by_pids_max():
    deploy("bomb", {"Procfile": "bomb: exec python3 bomb.py\n", "bomb.py": BOMB})
    sh("roboku ps:resize bomb --pids 20 -a bomb")
    sh("roboku ps:scale bomb=1 -a bomb")
    d = wait_up("bomb", "bomb.1")
    dir = dyno_cgroup(d["pid"])

    def counters():
        """(pids.current, pids.max, pids.events max) of the dyno's instance cgroup."""
        return (int(read(dir + "/pids.current")), read(dir + "/pids.max"),
                int(read(dir + "/pids.events").split()[1]))

    wait_for("the bomb refused a fork at its cap", 60, lambda: counters()[2] >= 1)
    worst, samples = 0, 0
    end = time.time() + 3
    while time.time() < end:
        n, mx, _ = counters()
        if mx != "20":
            raise Fail("%s has pids.max %s" % (dir, mx))
        worst, samples = max(worst, n), samples + 1
        time.sleep(0.1)
    n, _, refused = counters()
    log("bomb", dir, "worst", worst, "of", samples, "samples; refused forks", refused)
    if worst > 20:
        raise Fail("bomb reached %d tasks past pids.max 20" % worst)
    if worst < 19:
        raise Fail("the bomb never came near its cap (worst %d): is pids.max what stops it?" % worst)
    after = ps("bomb").get("bomb.1") or {}
    if after.get("pid") != d["pid"] or after.get("restarts"):
        raise Fail("the capped bomb was restarted (now %s): a refused fork must not end it" % after)
    wait_for("the bomb's 'fork refused' line in its logs", 30,
             lambda: "fork refused" in sh("roboku logs -a bomb --source app -n 50"))
    sh("roboku status")  # the agent still answers
    sh("roboku ps:scale bomb=0 -a bomb")
    wait_for("the bomb's cgroup removed", 30, lambda: not os.path.exists(dir))


IN_MODIFY = 0x2


def watch_modify(path, seen, stop):
    """Sets seen[0] when `path` is written (inotify IN_MODIFY: cgroupfs reports writes to it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0 or libc.inotify_add_watch(fd, path.encode(), IN_MODIFY) < 0:
        seen.append("inotify failed: errno %d" % ctypes.get_errno())
        return
    while not stop.is_set():
        try:
            buf = os.read(fd, 4096)
            if len(buf) >= 16 and struct.unpack_from("iIII", buf)[1] & IN_MODIFY:
                seen.append("modified")
                break
        except BlockingIOError:
            time.sleep(0.01)
    os.close(fd)


STUBBORN = """import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print('daemon', os.getpid(), flush=True)
        while True:
            time.sleep(1)
    os._exit(0)
while True:
    time.sleep(1)
"""


def t_stop_uses_cgroup_kill():
    deploy("stubborn", {"Procfile": "stubborn: exec python3 stubborn.py\n", "stubborn.py": STUBBORN})
    sh("roboku apps:update --grace 2 -a stubborn")
    sh("roboku ps:scale stubborn=1 -a stubborn")
    d = wait_up("stubborn", "stubborn.1")
    cg = dyno_cgroup(d["pid"])
    if not os.path.exists(cg + "/cgroup.kill"):
        raise Fail("kernel has no cgroup.kill in %s" % cg)
    pids = wait_for("the dyno and its setsid'd daemon", 20,
                    lambda: (lambda p: p if len(p) >= 2 else None)([int(x) for x in read(cg + "/cgroup.procs").split()]))
    seen, stop = [], threading.Event()
    th = threading.Thread(target=watch_modify, args=(cg + "/cgroup.kill", seen, stop))
    th.start()
    sh("roboku ps:scale stubborn=0 -a stubborn")
    try:
        wait_for("every process of the dyno gone", 30, lambda: not [p for p in pids if alive(p)])
        wait_for("cgroup.kill written", 10, lambda: seen)
    finally:
        stop.set()
        th.join()
    if seen[0] != "modified":
        raise Fail(seen[0])
    wait_for("the dyno's cgroup removed", 20, lambda: not os.path.exists(cg))


def t_restart_with_20_dynos_keeps_them():
    before = ensure_many()
    old = main_pid()
    t = int(time.time() * 1000)
    rc, out = sh("systemctl restart robokud", check=False, timeout=120)
    if rc != 0:
        raise Fail("systemctl restart robokud exited %d: %s" % (rc, journal_tail()))
    service_back(old)
    dyno_pids_alive(before)
    check_kept(before, t, "systemctl restart")


def journal_tail():
    """The journal's say on robokud's last start: the failure lines (status=219/CGROUP...)."""
    text = sh("journalctl -b -u robokud -n 40 --no-pager -o cat", check=False)[1]
    bad = [l for l in text.splitlines() if re.search(r"Failed at step|status=\d+/|resource busy", l)]
    return " | ".join(bad[-3:]) if bad else last_line(text).strip()


def t_kill9_of_robokud_keeps_dynos():
    before = ensure_many()
    old = main_pid()
    t = int(time.time() * 1000)
    os.kill(old, signal.SIGKILL)
    service_back(old)
    dyno_pids_alive(before)
    check_kept(before, t, "kill -9 robokud")


def t_upgrade_with_dpkg_keeps_dynos():
    before = ensure_many()
    old = main_pid()
    deb = glob.glob(V + "/debs/newer/roboku_*.deb")[0]
    t = int(time.time() * 1000)
    sh("dpkg -i %s" % deb, timeout=300)
    ver = sh("dpkg-query -W -f='${Version}' roboku")
    if "+vm1" not in ver:
        raise Fail("installed version is %s, not the newer build" % ver)
    service_back(old)
    dyno_pids_alive(before)
    check_kept(before, t, "dpkg -i of a newer build")


def t_stop_then_start_keeps_dynos():
    before = ensure_many()
    old = main_pid()
    t = int(time.time() * 1000)
    sh("systemctl stop robokud", timeout=120)
    dyno_pids_alive(before)
    rc, out = sh("systemctl start robokud", check=False, timeout=120)
    if rc != 0:
        raise Fail("systemctl start robokud exited %d: %s" % (rc, journal_tail()))
    service_back(old)
    check_kept(before, t, "systemctl stop && start")


def t_watchdog_restarts_a_stopped_robokud():
    before = ensure_many()
    old = main_pid()
    wd_text = unit_prop("robokud.service", "WatchdogUSec")
    t0 = time.time()
    t = int(t0 * 1000)
    os.kill(old, signal.SIGSTOP)
    wd_secs = parse_secs(wd_text)
    service_back(old, secs=wd_secs + 60)
    took = time.time() - t0
    log("watchdog: WatchdogSec %s, back after %.1f s" % (wd_text, took))
    j = sh("journalctl -b -u robokud --no-pager -o cat", check=False)[1]
    if "atchdog timeout" not in j:
        raise Fail("no watchdog timeout in the journal; back after %.1f s" % took)
    # Detected within WatchdogSec of the last ping, then RestartSec and the start.
    if took > wd_secs + 20:
        raise Fail("back only after %.1f s (WatchdogSec %s)" % (took, wd_text))
    dyno_pids_alive(before)
    check_kept(before, t, "watchdog restart")
    with open(V + "/logs/watchdog-seconds", "w") as f:
        f.write("%.1f\n" % took)


def parse_secs(text):
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*(min|ms|us|s)", text):
        total += float(num) * {"min": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total or 30


def t_python_app_with_an_offline_wheel():
    wheels = sorted(glob.glob(V + "/wheels/idna-*.whl"))
    if not wheels:
        raise Fail("no idna wheel in the share (tests/vm/run downloads it once from PyPI)")
    d = write_app("py", {
        "Procfile": "web: exec python3 server.py\n",
        "requirements.txt": "idna\n",
        "server.py": "import http.server, os, idna\n"
                     "class H(http.server.BaseHTTPRequestHandler):\n"
                     "    def do_GET(self):\n"
                     "        b = ('idna ' + idna.encode('b\\u00fccher.example').decode()).encode()\n"
                     "        self.send_response(200); self.end_headers(); self.wfile.write(b)\n"
                     "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
    })
    os.makedirs(d + "/wheels")
    shutil.copy(wheels[-1], d + "/wheels/")
    if sh("roboku apps:info -a py", check=False)[0] != 0:
        sh("roboku apps:create py")
    rc, out = sh("roboku deploy %s -a py" % d, timeout=600, check=False)
    if rc != 0:
        raise Fail("deploy failed: %s" % build_failure(out, "py"))
    dy = wait_up("py", "web.1")
    body = wait_for("the python app answering on $PORT", 180, lambda: http_get(dy["port"]))
    if body != "idna xn--bcher-kva.example":
        raise Fail("answered %r" % body)


def t_cross_built_rust_slug():
    """The Rust example's slug, cross-built for aarch64 on the x86-64 host (`roboku slug:build
    --arch aarch64`): an aarch64 robot runs it; an x86-64 one refuses it, naming the binary."""
    slug = V + "/slugs/rust-web-aarch64.slug"
    if not os.path.exists(slug):
        raise Fail("no aarch64 slug in the share (tests/vm/run builds it: %s)"
                   % read(V + "/slugs/build.log")[-400:] if os.path.exists(V + "/slugs/build.log")
                   else "no aarch64 slug in the share")
    if sh("roboku apps:info -a xr", check=False)[0] != 0:
        sh("roboku apps:create xr")
    rc, out = sh("roboku deploy --slug %s -a xr" % slug, timeout=600, check=False)
    if os.uname().machine == "aarch64":
        if rc != 0:
            raise Fail("the aarch64 robot refused its slug: %s" % last_line(out))
        dy = wait_up("xr", "web.1", secs=120)
        body = wait_for("the cross-built Rust app answering", 120, lambda: http_get(dy["port"]))
        if body.strip() != "hello from a vendored crate":
            raise Fail("answered %r" % body)
    else:
        if rc == 0:
            raise Fail("an %s robot took an aarch64 slug" % os.uname().machine)
        if "target/release/robot-web" not in out or "aarch64" not in out:
            raise Fail("refused without naming the binary and its CPU: %s" % last_line(out))


def build_failure(out, app):
    logs = sh("roboku logs -a %s -d build -n 40" % app, check=False)[1]
    lines = [l for l in (out + "\n" + logs).splitlines() if l.strip()]
    errs = [l for l in lines if re.search(r"(?i)error|denied|!", l)]
    return " | ".join((errs or lines)[-3:])[:600]


def t_node_app_with_a_local_dependency():
    d = write_app("node", {
        "Procfile": "web: exec node server.js\n",
        "package.json": '{"name":"vm-node","version":"1.0.0","dependencies":{"greet":"file:./greet"}}\n',
        "greet/package.json": '{"name":"greet","version":"1.0.0","main":"index.js"}\n',
        "greet/index.js": "module.exports = (who) => 'hello ' + who;\n",
        "server.js": "const greet = require('greet');\n"
                     "require('http').createServer((q, r) => r.end(greet('node')))"
                     ".listen(process.env.PORT, '127.0.0.1');\n",
    })
    if sh("roboku apps:info -a node", check=False)[0] != 0:
        sh("roboku apps:create node")
    rc, out = sh("roboku deploy %s -a node" % d, timeout=600, check=False)
    if rc != 0:
        raise Fail("deploy failed: %s" % build_failure(out, "node"))
    dy = wait_up("node", "web.1")
    # A loaded TCG guest has taken more than 30 s from exec to listen for node (CI, 2026-12-02).
    body = wait_for("the node app answering on $PORT", 180, lambda: http_get(dy["port"]))
    if body != "hello node":
        raise Fail("answered %r" % body)


BENCH = "/var/tmp/vm-bench"
START_SCRIPT = 'date +%%s%%N >> %s; exec sleep 100000'


def starts(path):
    with open(path) as f:
        return [int(l) for l in f.read().split()]


def wait_start(path, n, secs=30):
    return wait_for("start number %d in %s" % (n + 1, path), secs,
                    lambda: (lambda v: v[n] if len(v) > n else None)(starts(path)), every=0.001)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def t_crash_replacement_measured():
    """kill -9 of a dyno -> its replacement's first command runs, against a bare spawn loop that
    puts each child in a fresh cgroup v2 (mkdir, limits, join between fork and exec), in this
    guest. Records the figures (TCG makes absolute times meaningless; the ratio is the result);
    fails only if a replacement does not come."""
    rounds = 12
    os.makedirs(BENCH, exist_ok=True)
    os.chmod(BENCH, 0o777)
    agent_file, floor_file = BENCH + "/starts", BENCH + "/floor"
    for f in (agent_file, floor_file):
        open(f, "w").close()
        os.chmod(f, 0o666)
    # A first crash restarts at once; backoff resets after 1 s of uptime.
    dropin = "/run/systemd/system/robokud.service.d"
    os.makedirs(dropin, exist_ok=True)
    with open(dropin + "/bench.conf", "w") as f:
        f.write("[Service]\nEnvironment=ROBOKU_BACKOFF_RESET_SECS=1\n")
    old = main_pid()
    sh("systemctl daemon-reload && systemctl restart robokud")
    service_back(old)
    try:
        # Probation off: this bench kills the dyno on purpose, round after round; with it on, the
        # fourth kill would count as the release failing its probation (docs/deploys.md).
        deploy("crash", {"Procfile": "crash: %s\n" % (START_SCRIPT % agent_file),
                         "app.json": '{"roboku": {"probation": {"secs": 0}}}'})
        sh("roboku ps:scale crash=1 -a crash")
        wait_up("crash", "crash.1")
        wait_start(agent_file, 0)
        floor_root = CG + "/roboku-bench-floor"
        os.makedirs(floor_root, exist_ok=True)

        def floor_spawn(i):
            dir = "%s/i%d" % (floor_root, i)
            os.mkdir(dir)
            for k, v in (("memory.max", "max"), ("pids.max", "max")):  # as robokud's limits
                if os.path.exists(os.path.join(dir, k)):
                    with open(os.path.join(dir, k), "w") as f:
                        f.write(v)
            procs = os.open(dir + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                try:
                    os.write(procs, b"0")
                    os.execve("/bin/sh", ["sh", "-c", START_SCRIPT % floor_file], {"PATH": "/usr/bin:/bin"})
                finally:
                    os._exit(127)
            os.close(procs)
            return pid, dir

        child, cdir = floor_spawn(0)
        wait_start(floor_file, 0)
        agent_ms, floor_ms = [], []
        for r in range(1, rounds + 1):
            n = len(starts(floor_file))
            time.sleep(0.2)
            t = time.time_ns()
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            os.rmdir(cdir)
            child, cdir = floor_spawn(r)
            floor_ms.append((wait_start(floor_file, n) - t) / 1e6)

            time.sleep(1.3)
            pid = wait_up("crash", "crash.1")["pid"]
            n = len(starts(agent_file))
            t = time.time_ns()
            os.kill(pid, signal.SIGKILL)
            agent_ms.append((wait_start(agent_file, n) - t) / 1e6)
            wait_up("crash", "crash.1", not_pid=pid)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.rmdir(cdir)
        os.rmdir(floor_root)
        a, fl = median(agent_ms), median(floor_ms)
        summary = ("crash replacement (median of %d, cgroup v2, TCG guest): robokud %.1f ms, bare "
                   "spawn into a fresh cgroup %.1f ms, ratio %.2f\nrobokud %s\nfloor %s\n"
                   % (rounds, a, fl, a / fl, [round(x, 1) for x in agent_ms], [round(x, 1) for x in floor_ms]))
        log(summary)
        with open(V + "/logs/crash-replacement", "w") as f:
            f.write(summary)
        sh("roboku ps:scale crash=0 -a crash")
    finally:
        os.remove(dropin + "/bench.conf")
        old = main_pid()
        sh("systemctl daemon-reload && systemctl restart robokud")
        service_back(old)


def t_reboot_formation_runs_again():
    """Phase 1 half: remember the formation, then reboot (phase 2 checks it)."""
    before = ensure_many()
    with open(WORK + "/before-reboot.json", "w") as f:
        json.dump({"pids": before, "boot_id": read("/proc/sys/kernel/random/boot_id")}, f)
    raise Reboot()


class Reboot(Exception):
    pass


# ---------------------------------------------------------------- tests, phase 2


def t2_reboot_formation_runs_again():
    with open(WORK + "/before-reboot.json") as f:
        saved = json.load(f)
    if saved["boot_id"] == read("/proc/sys/kernel/random/boot_id"):
        raise Fail("the guest did not reboot")
    wait_for("robokud.service active after boot", 120, service_up)
    now = snapshot_many(secs=180)
    if set(now) != set(saved["pids"]):
        raise Fail("after boot %s, before %s" % (sorted(now), sorted(saved["pids"])))


def t2_journal_has_no_warnings_from_the_units():
    wait_for("robokud.service active after boot", 120, service_up)
    snapshot_many(secs=180)
    time.sleep(0)  # steady state is the formation up, checked above
    units = "-u robokud.service -u roboku-dynos.service"
    warn = sh("journalctl -b %s -p warning --no-pager -o cat" % units, check=False)[1].strip()
    if warn and "No entries" not in warn:
        raise Fail("warnings: %s" % " | ".join(warn.splitlines()[:5]))
    own = [l for l in sh("journalctl -b %s --no-pager -o cat" % units, check=False)[1].splitlines()
           if re.search(r"\b(WARN|ERROR)\b", l)]
    if own:
        raise Fail("robokud logged: %s" % " | ".join(own[:5]))


def t2_package_remove_stops_every_dyno():
    before = snapshot_many()
    pids = [p for p, _ in before.values()]
    sh("dpkg -r roboku", timeout=300)
    wait_for("every dyno stopped", 120, lambda: not [p for p in pids if alive(p)])
    for unit in ("robokud.service", "roboku-dynos.service"):
        state = unit_prop(unit, "ActiveState")
        if state == "active":
            raise Fail("%s still active after dpkg -r" % unit)


PHASE1 = [
    ("deb_installs_and_service_is_active", t_deb_installs_and_service_is_active, 240),
    ("status_works_for_a_roboku_group_user", t_status_works_for_a_roboku_group_user, 120),
    ("doctor_on_a_robot", t_doctor_on_a_robot, 60),
    ("joins_are_fast_without_a_grace_period", t_joins_are_fast_without_a_grace_period, 300),
    ("dynos_live_outside_robokud_service", t_dynos_live_outside_robokud_service, 300),
    ("limits_land_in_v2_files", t_limits_land_in_v2_files, 300),
    ("web_dyno_answers_over_http", t_web_dyno_answers_over_http, 300),
    ("killed_dyno_is_replaced", t_killed_dyno_is_replaced, 300),
    ("oom_kill_is_read_from_memory_events_and_reported", t_oom_kill_is_read_from_memory_events_and_reported, 300),
    ("fork_bomb_is_stopped_by_pids_max", t_fork_bomb_is_stopped_by_pids_max, 300),
    ("stop_uses_cgroup_kill", t_stop_uses_cgroup_kill, 300),
    ("restart_with_20_dynos_keeps_them", t_restart_with_20_dynos_keeps_them, 600),
    ("kill9_of_robokud_keeps_dynos", t_kill9_of_robokud_keeps_dynos, 400),
    ("upgrade_with_dpkg_keeps_dynos", t_upgrade_with_dpkg_keeps_dynos, 500),
    ("stop_then_start_keeps_dynos", t_stop_then_start_keeps_dynos, 400),
    ("watchdog_restarts_a_stopped_robokud", t_watchdog_restarts_a_stopped_robokud, 400),
    ("python_app_with_an_offline_wheel", t_python_app_with_an_offline_wheel, 600),
    ("node_app_with_a_local_dependency", t_node_app_with_a_local_dependency, 600),
    ("cross_built_rust_slug", t_cross_built_rust_slug, 600),
    ("crash_replacement_measured", t_crash_replacement_measured, 400),
    ("reboot_formation_runs_again", t_reboot_formation_runs_again, 300),
]
PHASE2 = [
    ("reboot_formation_runs_again", t2_reboot_formation_runs_again, 400),
    ("journal_has_no_warnings_from_the_units", t2_journal_has_no_warnings_from_the_units, 300),
    ("package_remove_stops_every_dyno", t2_package_remove_stops_every_dyno, 300),
]
# Everything needs the package installed first.
SETUP = "deb_installs_and_service_is_active"
# What the aarch64 guest runs by default: the package, the service, cgroup v2 limits, a dyno
# reached over HTTP, a crashed dyno replaced, and an agent restart that keeps (re-adopts) dynos.
SMOKE = {t_deb_installs_and_service_is_active, t_status_works_for_a_roboku_group_user,
         t_dynos_live_outside_robokud_service, t_limits_land_in_v2_files,
         t_web_dyno_answers_over_http, t_killed_dyno_is_replaced,
         t_restart_with_20_dynos_keeps_them, t_cross_built_rust_slug}


def on_alarm(signum, frame):
    raise Timeout()


def result(line):
    log(line)
    with open(V + "/results", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def state(line):
    with open(V + "/state", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def run(name, fn, secs):
    log("=== %s (deadline %d s)" % (name, secs))
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(secs)
    start = time.time()
    try:
        fn()
        signal.alarm(0)
        result("ok %s (%.1f s)" % (name, time.time() - start))
    except Reboot:
        signal.alarm(0)
        raise
    except Timeout:
        result("FAIL %s: no result within its %d s deadline" % (name, secs))
    except Fail as e:
        signal.alarm(0)
        result("FAIL %s: %s" % (name, e))
    except Exception as e:  # a bug in the test itself is a failure too, with its trace
        signal.alarm(0)
        log(traceback.format_exc())
        result("FAIL %s: %s: %s" % (name, type(e).__name__, e))


def timing(line):
    """One line of logs/timing (boot to suite start, suite time), which tests/vm/run prints."""
    log(line)
    with open(V + "/logs/timing", "a") as f:
        f.write(line + "\n")


def save_journal(tag):
    rc, out = sh("journalctl -b --no-pager -o short-monotonic -u robokud.service -u roboku-dynos.service",
                 check=False, timeout=60)
    with open(V + "/logs/journal-%s.log" % tag, "w") as f:
        f.write(out)


def main():
    os.makedirs(WORK, exist_ok=True)
    flt = read(V + "/filter") if os.path.exists(V + "/filter") else ""
    smoke_only = TARGET == "aarch64" and not flt

    def pick(name, fn):
        if name == SETUP:
            return True
        if smoke_only:
            return fn in SMOKE
        return not flt or re.search(flt, name)

    log("target", TARGET, "filter %r" % flt, "(smoke suite)" if smoke_only else "")
    marks = read(V + "/state").splitlines() if os.path.exists(V + "/state") else []
    log("systemd", sh("systemctl --version").splitlines()[0], "kernel", os.uname().release)
    with open(V + "/logs/guest-versions", "w") as f:
        f.write(sh("systemctl --version").splitlines()[0] + "\nkernel " + os.uname().release + "\n")
    started = time.time()
    timing("suite started %.0f s after the kernel" % float(read("/proc/uptime").split()[0]))
    if "rebooting" not in marks:
        state("phase 1")
        for name, fn, secs in PHASE1:
            if pick(name, fn):
                try:
                    run(name, fn, secs)
                except Reboot:
                    save_journal("boot1")
                    timing("suite ran %.0f s before the reboot" % (time.time() - started))
                    state("rebooting")
                    return
        save_journal("boot1")
    state("phase 2")
    for name, fn, secs in PHASE2:
        if pick(name, fn) and "rebooting" in marks + read(V + "/state").splitlines():
            run(name, fn, secs)
        elif pick(name, fn) and name != "reboot_formation_runs_again":
            run(name, fn, secs)
    if "rebooting" in marks:
        save_journal("boot2")
    timing("suite ran %.0f s in this boot" % (time.time() - started))
    state("suite done")


if __name__ == "__main__":
    main()
