"""A real single-node SLURM cluster (with accounting) under one directory, for integration tests.

Follows ../shared/reference/slurm-single-node.md: munged -> mariadbd -> slurmdbd -> sacctmgr add
cluster -> slurmctld -> slurmd, everything on loopback, every file under DIR, stopped by PID.
``start`` raises ClusterUnavailable with the reason when the Debian packages are missing or a
daemon does not come up, so the test can skip saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "slurmdbd", "mariadbd", "mariadb-install-db", "sacctmgr", "sbatch")


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be started on this machine (the reason is the message)."""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kwargs)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ClusterUnavailable(f"timed out after {timeout:.0f}s waiting for {what}")


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.env = dict(os.environ, SLURM_CONF=str(self.root / "slurm.conf"))
        self.pidfiles: list[Path] = []
        self._mariadb: subprocess.Popen | None = None

    # -- configuration ----------------------------------------------------------------------
    def _write_configs(self) -> None:
        r = self.root
        r.chmod(0o755)  # the mysql and munge users must be able to traverse it
        for sub in ("state", "spool", "log", "run", "db"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "slurm.conf").write_text(f"""ClusterName=warpbench
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6919
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 2} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        dbd = r / "slurmdbd.conf"
        dbd.write_text(f"""AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6919
SlurmUser=root
LogFile={r}/log/slurmdbd.log
PidFile={r}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3316
StorageUser=slurm
StoragePass=warpbench
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    # -- daemons ------------------------------------------------------------------------------
    def start(self) -> None:
        missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
        if missing:
            raise ClusterUnavailable(f"SLURM/munge/MariaDB programs not installed: {', '.join(missing)} "
                                     "(apt-get install slurmctld slurmd slurm-client munge slurmdbd mariadb-server)")
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting the test cluster needs root (daemons run as root/munge/mysql)")
        self._write_configs()
        self._start_munge()
        self._start_mariadb()
        self._daemon(["slurmdbd"], self.root / "run" / "slurmdbd.pid")
        _wait(lambda: _run(["sacctmgr", "-n", "list", "cluster"], env=self.env).returncode == 0, 30, "slurmdbd")
        _run(["sacctmgr", "-i", "add", "cluster", "warpbench"], env=self.env)
        self._daemon(["slurmctld"], self.root / "run" / "slurmctld.pid")
        self._daemon(["slurmd"], self.root / "run" / "slurmd.pid")
        _wait(lambda: _run(["sinfo", "-h", "-o", "%T"], env=self.env).stdout.strip() in ("idle", "mixed"),
              60, "the node to become idle (sinfo)")

    def _daemon(self, cmd: list[str], pidfile: Path) -> None:
        result = _run(cmd, env=self.env)
        if result.returncode != 0:
            raise ClusterUnavailable(f"{cmd[0]} failed to start: {result.stderr.strip()[:500]}")
        _wait(pidfile.exists, 30, f"{cmd[0]} pid file")
        self.pidfiles.insert(0, pidfile)

    def _start_munge(self) -> None:
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        if _run(["munge", "-n"]).returncode != 0:
            result = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
            if result.returncode != 0:
                raise ClusterUnavailable(f"munged failed to start: {result.stderr.strip()[:500]}")
            _wait(lambda: _run(["munge", "-n"]).returncode == 0, 15, "munged")
            self.pidfiles.append(run_dir / "munged.pid")  # started here: stopped last

    def _start_mariadb(self) -> None:
        db, run = self.root / "db", self.root / "run"
        for path in (db, run, self.root / "log"):
            shutil.chown(path, "mysql", "mysql")
        result = _run(["mariadb-install-db", "--user=mysql", f"--datadir={db}",
                       "--auth-root-authentication-method=socket"])
        if result.returncode != 0:
            raise ClusterUnavailable(f"mariadb-install-db failed: {result.stderr.strip()[:500]}")
        sock = run / "mysql.sock"
        self._mariadb = subprocess.Popen(
            ["mariadbd", "--user=mysql", f"--datadir={db}", f"--socket={sock}", f"--pid-file={run}/mysql.pid",
             "--bind-address=127.0.0.1", "--port=3316", f"--log-error={self.root}/log/mariadb.err"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        _wait(sock.exists, 60, "mariadbd socket")
        self.pidfiles.insert(0, run / "mysql.pid")
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'warpbench'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
        result = _run(["mariadb", f"--socket={sock}", "-u", "root", "-e", sql])
        if result.returncode != 0:
            raise ClusterUnavailable(f"could not create the accounting database user: {result.stderr.strip()[:500]}")

    def stop(self) -> None:
        """Kill every daemon by the PID in its pid file (slurmd first), escalating to SIGKILL."""
        for pidfile in list(self.pidfiles):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.2)
                else:
                    continue
                break
        self.pidfiles.clear()
        if self._mariadb is not None:
            self._mariadb.wait(timeout=30)
