"""A private one-node SLURM cluster on this machine, for tests/test_slurm.py.

Everything lives in one temporary directory: slurm.conf, a munge key and socket, the
daemons' state, spool, pid and log files. The daemons (munged, slurmctld, slurmd) run
in the foreground as children of the test process, on ports picked free at start, so
a system SLURM or munge on the same machine is neither used nor disturbed; client
commands (sbatch, squeue, ...) reach this cluster through SLURM_CONF in `env` (and the
jobs' srun through a shim first on its PATH, see `_write_srun_shim`).

slurm.conf choices, for a small CI machine (e.g. 2 cores, no GPU, no systemd):
- SelectType=select/cons_tres with SelectTypeParameters=CR_CPU: CPUs are the only
  consumable, counted per logical CPU (CR_Core would hand out whole cores, which on a
  hyper-threaded runner halves the jobs that run at once). Memory is deliberately not
  consumable (no CR_*_Memory), so jobs asking for more memory than is free still run
  side by side. A job must still ask for no more memory than the node's RealMemory
  (MemTotal, as slurmd measures it) and no more CPUs than it has, or sbatch rejects
  it ("Requested node configuration is not available"): `derive_test_profile` caps
  mem_mb, and without a GPU each job asks for its rule's threads (1) as CPUs.
- ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroups (none are
  delegated in a container), no CPU binding (srun --cpu-bind=q only warns). Jobs are
  not confined to their CPUs, so JAX sees every core, as a local run does.
- AccountingStorageType=accounting_storage/none and no slurmdbd: job states come from
  `squeue --states=all`, which lists finished jobs for MinJobAge seconds
  (3600 here; SLURM's default of 300 is shorter than a slow test run).
- ReturnToService=2: the node comes up idle without `scontrol update`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
PARTITION = "gextest"


def unavailable_reason() -> str | None:
    """Why a private cluster cannot start here (None: it can)."""
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    if missing:
        return (
            f"SLURM/munge binaries not found: {', '.join(missing)} "
            "(apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd needs root"
    return None


def node_name() -> str:
    return subprocess.run(
        ["hostname", "-s"], capture_output=True, text=True, check=True
    ).stdout.strip()


def node_memory_mb() -> int:
    """MemTotal in MB, as slurmd counts it (it drains a node configured above it)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _free_ports(count: int) -> list[int]:
    """Ports free right now (held together while picked, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class SlurmCluster:
    """Start with `start()`, stop with `stop()` (also after a failed start)."""

    def __init__(self):
        self.name = node_name()
        self.cpus = os.cpu_count() or 1
        self.memory_mb = node_memory_mb()
        # munged insists that every directory above its socket is searchable by all,
        # which pytest's private tmp dirs (0700) are not: use a world-readable one.
        self.root = Path(tempfile.mkdtemp(prefix="gex-slurm-"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self._procs: dict[str, subprocess.Popen] = {}

    # -- start ----------------------------------------------------------------------

    def start(self, timeout: float = 60) -> SlurmCluster:
        self._start_munge()
        self._write_conf()
        self._write_srun_shim()
        for name, args in (
            ("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)]),
            ("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.name]),
        ):
            self._spawn(name, args)
        self._wait_for_idle(timeout)
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        # Own session: a Ctrl-C on the test run reaches pytest, whose teardown stops
        # the daemons in order, not the daemons directly.
        with open(self.root / f"{name}.out", "w") as out:
            self._procs[name] = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def _start_munge(self) -> None:
        # A private key, so the cluster never depends on (or alters) /etc/munge.
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--seed-file={self.root / 'munged.seed'}",
                f"--log-file={self.root / 'munged.log'}",
            ],
        )
        self._wait(
            lambda: self.munge_socket.exists(), 20, "munged did not create its socket"
        )

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge.socket"

    def _write_conf(self) -> None:
        root = self.root
        for sub in ("state", "spool"):
            (root / sub).mkdir()
        user = getpass.getuser()
        slurmctld_port, slurmd_port = _free_ports(2)
        lines = [
            "ClusterName=gextest",
            f"SlurmctldHost={self.name}(127.0.0.1)",
            f"SlurmctldPort={slurmctld_port}",
            f"SlurmdPort={slurmd_port}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            # finished jobs stay in squeue (the status source) for an hour
            "MinJobAge=3600",
            f"NodeName={self.name} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.name} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _write_srun_shim(self) -> None:
        """An `srun` first on PATH that sets SLURM_CONF, then runs the real one.

        Inside each job the jobstep plugin runs the rule with `srun`, but first drops
        every SLURM_* variable but a few job ids from srun's environment, SLURM_CONF
        included; srun would then look for /etc/slurm/slurm.conf or a DNS SRV record.
        PATH survives, so this shim brings SLURM_CONF back (a cluster configured in
        /etc/slurm needs no such thing).
        """
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "srun"
        shim.write_text(
            "#!/bin/sh\n"
            f"SLURM_CONF={shlex.quote(str(self.conf))} "
            f'exec {shlex.quote(shutil.which("srun"))} "$@"\n'
        )
        shim.chmod(0o755)

    def _wait_for_idle(self, timeout: float) -> None:
        def idle():
            self._check_alive()
            result = self.run("sinfo", "--noheader", "--Node", "--format=%T")
            return result.returncode == 0 and result.stdout.strip() == "idle"

        self._wait(idle, timeout, f"node {self.name} did not become idle")

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}\n{self.logs()}"
                )

    def _wait(self, ready, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{message} within {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.2)

    # -- use ------------------------------------------------------------------------

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        return subprocess.run(
            args, capture_output=True, text=True, env=self.env, timeout=30, **kwargs
        )

    def logs(self, lines: int = 30) -> str:
        """The last lines of every daemon log, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- stop -----------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel this cluster's jobs, stop its daemons, remove its directory."""
        try:
            if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self.run("scancel", f"--user={getpass.getuser()}")
                    # let slurmd end the cancelled jobs' processes before it stops
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        queue = self.run("squeue", "--noheader", "--format=%i")
                        if queue.returncode != 0 or not queue.stdout.strip():
                            break
                        time.sleep(0.5)
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self._procs.get(name)
                if proc is None or proc.poll() is not None:
                    continue
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            self._end_leftovers()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _processes(self) -> list[int]:
        """Live processes of this cluster other than the test itself: job steps
        (slurmstepd, which slurmd detaches) and job processes. Each has this
        cluster's directory in its environment (SLURM_CONF or the srun shim's PATH)."""
        marker = str(self.root).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
        return pids

    def _end_leftovers(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self._processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def derive_test_profile(
    profile: Path, target: Path, partition: str, max_mem_mb: int
) -> Path:
    """A copy of a SLURM workflow profile for a GPU-less one-node test cluster.

    Only what the test cluster cannot honour changes; every other key (executor,
    jobs, retries, runtime, mem_mb expressions with `attempt`, the rules listed) is
    the real profile's:
    - `gpu` requests become 0 (`gres`/`gpu_model` go): the node has no GPU, and with
      gpu 0 the plugin asks for --cpus-per-task=threads instead of --cpus-per-gpu;
    - every slurm_partition becomes the test partition;
    - slurm_account goes (the test cluster has no accounts);
    - each mem_mb is capped at the node's memory, min(<expression>, max_mem_mb):
      SLURM rejects a job asking for more memory than any node has.
    Returns the directory to pass to --workflow-profile.
    """
    config = yaml.safe_load(Path(profile).read_text())

    def adapt(resources: dict) -> dict:
        out = {}
        for key, value in resources.items():
            if key in ("gres", "gpu_model", "slurm_account"):
                continue
            if key == "gpu":
                value = 0
            elif key == "slurm_partition":
                value = f"'{partition}'"
            elif key == "mem_mb":
                value = f"min({value}, {max_mem_mb})"
            out[key] = value
        return out

    if "default-resources" in config:
        config["default-resources"] = adapt(config["default-resources"])
    config["set-resources"] = {
        rule: adapt(resources)
        for rule, resources in config.get("set-resources", {}).items()
    }
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target
