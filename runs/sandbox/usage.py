"""What a running snippet's tree uses (memory, CPU, disk, files), read from outside it,
and which limit that reaches: a part of `watch._Watch`."""

from __future__ import annotations

import contextlib
import os
import time

import psutil

from .contract import BUBBLEWRAP, INIT_WAIT_SECONDS, SANDBOX_SHM, SANDBOX_TMP, SHM_BYTES, _Stream
from .host import _children_of, _exists


class Usage:
    """Mixed into _Watch: its readings of the running tree."""

    def _members(self) -> list[psutil.Process]:
        """The snippet's processes; cheap with a cgroup, a /proc scan without one."""
        if self.group:
            members = [psutil.Process(pid) for pid in self.group.pids() if _exists(pid)]
        else:
            try:
                root = psutil.Process(self.proc.pid)
                members = [root, *root.children(recursive=True)]
            except psutil.Error:
                return []
        for p in members:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(p.pid, p.create_time())
        return members

    def _memory_bytes(self) -> int:
        if self.group:
            return self.group.memory_bytes()
        total = 0
        for p in self._members():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _cpu_seconds(self) -> float:
        """CPU time so far, for live samples (the final figure comes after the end)."""
        accounted = self.group.cpu_seconds() if self.group else None
        if accounted is not None:
            return accounted
        total = 0.0
        for p in self._members():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def _sandbox_init(self) -> int | None:
        """PID (on the host) of the launcher, PID 1 of the sandbox's namespace."""
        deadline = time.monotonic() + INIT_WAIT_SECONDS
        while self.init_pid is None:
            children = _children_of(self.proc.pid)
            self.init_pid = children[0] if children else None
            if self.init_pid or time.monotonic() > deadline or self._exited():
                break
            time.sleep(0.0002)
        return self.init_pid

    def _limit_reached(self, memory: int) -> str:
        limits = self.limits
        if self.group:
            if self.group.hit_process_limit():
                return "processes"
            if self.group.hit_memory_limit():
                return "memory"
        elif memory > limits.memory_bytes:
            return "memory"
        usage = self._disk_usage()
        if usage is not None:
            files, size = usage
            if files > limits.max_files:
                return "files"
            if size > limits.disk_bytes:
                return "disk"
        return ""

    def _limit_after_exit(self, stderr: _Stream) -> str:
        if self.group:
            if self.group.hit_memory_limit():
                return "memory"
            if self.group.hit_process_limit():
                return "processes"
        tail = bytes(stderr.data[-300:])
        if self.outcome.exit_code and b"\nMemoryError" in tail:
            return "memory"
        if self.outcome.exit_code and (
            b"No space left on device" in tail or b"File too large" in tail
        ):
            return "disk"
        return ""

    def _disk_usage(self) -> tuple[int, int] | None:
        """(files, bytes) the snippet has written."""
        if self.mode == BUBBLEWRAP:
            # The private /tmp and /dev/shm, seen through the sandbox's root: tmpfs caps
            # each one's size, but neither the number of files nor the two together.
            pid = self._sandbox_init()
            files = size = 0
            for mount, capacity in (
                (SANDBOX_TMP, self.limits.disk_bytes),
                (SANDBOX_SHM, SHM_BYTES),
            ):
                try:
                    st = os.statvfs(f"/proc/{pid}/root{mount}")
                except OSError:
                    return None
                if st.f_blocks * st.f_frsize != capacity:
                    return None  # not (yet) the sandbox's own
                files += st.f_files - st.f_ffree
                size += (st.f_blocks - st.f_bfree) * st.f_frsize
            return files, size
        files = size = 0
        stack = [self.workdir]
        while stack and files <= self.limits.max_files:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        files += 1
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            size += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                pass
        return files, size
