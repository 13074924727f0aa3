"""What a running snippet's tree uses (memory, CPU, disk, files), read from outside it,
and which limit that reaches: one part of a sandbox (state.Sandbox)."""

from __future__ import annotations

import contextlib
import os

import psutil

from .contract import BUBBLEWRAP, SANDBOX_SHM, SANDBOX_TMP, SHM_BYTES, OutputStream
from .state import Sandbox


class Usage:
    """What a sandbox's running tree uses, and which limit that reaches."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    def memory_bytes(self) -> int:
        if self.sandbox.group:
            return self.sandbox.group.memory_bytes()
        total = 0
        for p in self.sandbox.members():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """CPU time so far, for live samples (the final figure comes after the end)."""
        accounted = self.sandbox.group.cpu_seconds() if self.sandbox.group else None
        if accounted is not None:
            return accounted
        total = 0.0
        for p in self.sandbox.members():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def limit_reached(self, memory: int) -> str:
        limits = self.sandbox.limits
        if self.sandbox.group:
            if self.sandbox.group.hit_process_limit():
                return "processes"
            if self.sandbox.group.hit_memory_limit():
                return "memory"
        elif memory > limits.memory_bytes:
            return "memory"
        usage = self.disk_usage()
        if usage is not None:
            files, size = usage
            if files > limits.max_files:
                return "files"
            if size > limits.disk_bytes:
                return "disk"
        return ""

    def limit_after_exit(self, stderr: OutputStream) -> str:
        if self.sandbox.group:
            if self.sandbox.group.hit_memory_limit():
                return "memory"
            if self.sandbox.group.hit_process_limit():
                return "processes"
        tail = bytes(stderr.data[-300:])
        if self.sandbox.outcome.exit_code and b"\nMemoryError" in tail:
            return "memory"
        if self.sandbox.outcome.exit_code and (
            b"No space left on device" in tail or b"File too large" in tail
        ):
            return "disk"
        return ""

    def disk_usage(self) -> tuple[int, int] | None:
        """(files, bytes) the snippet has written."""
        if self.sandbox.mode == BUBBLEWRAP:
            # The private /tmp and /dev/shm, seen through the sandbox's root: tmpfs caps
            # each one's size, but neither the number of files nor the two together.
            pid = self.sandbox.sandbox_init()
            files = size = 0
            for mount, capacity in (
                (SANDBOX_TMP, self.sandbox.limits.disk_bytes),
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
        stack = [self.sandbox.workdir]
        while stack and files <= self.sandbox.limits.max_files:
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
