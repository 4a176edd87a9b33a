"""A systemd unit's service, run as the unit runs it, where systemd is not at hand (tests).

systemd is not PID 1 where the tests run, so no unit can be started. `start_service` does what a
unit asks of the kernel that the program itself meets: its ExecStart= with the credentials
directory, its Environment=, a user of its own and no other group, the files of its
LoadCredential= lines copied into a directory only that user reads, no new privileges, its
SystemCallFilter= with SystemCallErrorNumber= and its MemoryDenyWriteExecute= (both as seccomp
filters, the way systemd installs them, through the same libseccomp). Not reproduced: the mount
namespace (ProtectSystem=, PrivateTmp=, ...), the device, address-family and IP filters.

Run as a program (`python unit_sandbox.py UID FILTER -- ARGV...`) it is the launcher: it drops
to UID, installs the filters written in FILTER and executes ARGV.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE_UID = 61184  # the first uid systemd gives a DynamicUser=
_LAUNCHER = Path(__file__).resolve()


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file and its `NAME.d/*.conf` drop-ins (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    files = [path, *sorted(path.with_name(path.name + ".d").glob("*.conf"))]
    for file in files:
        for line in file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system-call groups (`systemd-analyze syscall-filter`): name -> members."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif not line.strip():
            current = None
        elif current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def allowed_syscalls(filters: list[str]) -> set[str]:
    """The system calls a unit's SystemCallFilter= lines allow (an allow-list, then `~` removals)."""
    groups = syscall_groups()

    def expand(names: list[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= expand(groups[name]) if name.startswith("@") else {name}
        return out

    allowed: set[str] = set()
    for i, line in enumerate(filters):
        if line.startswith("~"):
            allowed -= expand(line[1:].split())
        elif i == 0:
            allowed = expand(line.split())
        else:
            allowed |= expand(line.split())
    return allowed


@dataclass
class Service:
    process: subprocess.Popen[str]
    credentials: Path

    def output(self) -> str:
        """Everything the service wrote (stdout and stderr), once it has ended."""
        out, _ = self.process.communicate(timeout=30)
        return out


@contextmanager
def service_dir() -> Iterator[Path]:
    """A directory the service's user can reach (pytest's own temporary root is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="footfall-unit-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_service(unit: Path, etc: Path, workdir: Path, *, executable: Path, extra_env: dict[str, str] | None = None,
                  stdout: int | None = subprocess.PIPE) -> Service:
    """Start `unit`'s ExecStart= as its service would run, with its credentials read from `etc` (the
    unit's `/etc/footfall`) and `/opt/footfall/.venv/bin/footfall` replaced by `executable`."""
    settings = unit_settings(unit)
    credentials = workdir / "credentials"
    credentials.mkdir(mode=0o500)
    for line in settings.get("LoadCredential", []):
        name, source = line.split(":", 1)
        shutil.copyfile(etc / Path(source).relative_to("/etc/footfall"), credentials / name)
        (credentials / name).chmod(0o400)
        os.chown(credentials / name, SERVICE_UID, SERVICE_UID)
    os.chown(credentials, SERVICE_UID, SERVICE_UID)
    (start,) = settings["ExecStart"]
    argv = [word.replace("${CREDENTIALS_DIRECTORY}", str(credentials)) for word in start.split()]
    assert argv[0] == "/opt/footfall/.venv/bin/footfall", argv
    argv[0] = str(executable)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME": "/", "LANG": "C.UTF-8",
           "CREDENTIALS_DIRECTORY": str(credentials)}
    env |= dict(item.split("=", 1) for line in settings.get("Environment", []) for item in line.split())
    env |= extra_env or {}
    rules = {"allow": sorted(allowed_syscalls(settings.get("SystemCallFilter", []))) or None,
             "errno": settings.get("SystemCallErrorNumber", ["EPERM"])[-1],
             "mdwe": settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes"}
    rules_file = workdir / "seccomp.json"
    rules_file.write_text(json.dumps(rules))
    process = subprocess.Popen([sys.executable, str(_LAUNCHER), str(SERVICE_UID), str(rules_file), "--", *argv],
                               env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True, cwd="/")
    return Service(process, credentials)


# -- the launcher --------------------------------------------------------------------------

_ALLOW = 0x7FFF0000
_PR_SET_NO_NEW_PRIVS = 38
_MASKED_EQ = 7
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
_CLONE_NEWNS, _MS_BIND, _MS_MOVE, _MS_REC, _MS_PRIVATE = 0x20000, 0x1000, 0x2000, 0x4000, 0x40000


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _install_filters(rules: dict) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    deny = 0x00050000 | getattr(errno, rules["errno"])

    def load(ctx: int) -> None:
        if lib.seccomp_load(ctx) != 0:
            raise OSError("seccomp_load failed")

    if rules["mdwe"]:  # systemd's MemoryDenyWriteExecute=: no mapping both writable and executable;
        # installed first, as systemd does: the allow-list below may not allow seccomp() itself
        ctx = lib.seccomp_init(_ALLOW)
        for name, mask in (("mmap", _PROT_WRITE | _PROT_EXEC), ("mprotect", _PROT_EXEC),
                           ("pkey_mprotect", _PROT_EXEC), ("shmat", _SHM_EXEC)):
            cmp = _ArgCmp(2, _MASKED_EQ, mask, mask)
            lib.seccomp_rule_add_array(ctx, 0x00050000 | errno.EPERM, lib.seccomp_syscall_resolve_name(name.encode()),
                                       1, ctypes.byref(cmp))
        load(ctx)
    if rules["allow"]:
        ctx = lib.seccomp_init(deny)
        for name in rules["allow"]:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0:
                lib.seccomp_rule_add_array(ctx, _ALLOW, number, 0, None)
        load(ctx)


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    if libc.mount(*args, ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target}")


def _hide_home(libc: ctypes.CDLL) -> None:
    """ProtectHome=yes: /root is out of the service's reach. Python installations kept there
    (pyenv) would be too, so in a mount namespace of its own the service sees an empty /root
    holding only the installation this interpreter comes from."""
    prefix = Path(sys.base_prefix)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    staging = tempfile.mkdtemp()
    if prefix.is_relative_to("/root"):
        _mount(libc, str(prefix), staging, None, _MS_BIND | _MS_REC)
    _mount(libc, "tmpfs", "/root", "tmpfs", 0, "mode=0700")
    if prefix.is_relative_to("/root"):
        os.chmod("/root", 0o711)
        prefix.mkdir(parents=True)
        for parent in [prefix, *prefix.parents]:
            if parent.is_relative_to("/root"):
                parent.chmod(0o711)
        _mount(libc, staging, str(prefix), None, _MS_MOVE)
    os.rmdir(staging)


def _launch(uid: int, rules_file: Path, argv: list[str]) -> None:
    rules = json.loads(rules_file.read_text())
    libc = ctypes.CDLL(None, use_errno=True)
    _hide_home(libc)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    _install_filters(rules)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    _launch(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[4:])
