"""The ``unix:///path/to/socket`` transport, and the default private socket directory."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
import sys
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.to_thread

from daffi._backends import unix_stream_for_loop

from ._address import Address
from ._base import PLAIN_SOCKET, Listening, Transport, _with_address

__all__ = ["UnixListener", "UnixTransport", "default_unix_socket_dir"]

logger = logging.getLogger("daffi.transports")

# sun_path is 108 bytes on Linux and 104 on macOS/BSD, including the terminating NUL.
_MAX_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103
# How long the stale-socket probe waits for a live listener whose queue is full.
_PROBE_TIMEOUT = 2.0
_FileId = tuple[int, int]  # (st_dev, st_ino): tells "our" socket file from a newer one


class UnixTransport(Transport):
    """The ``unix://`` transport: Unix domain sockets, private to the current user.

    ``listen`` creates missing parent directories with mode 0700, makes the socket
    file 0600, replaces a stale socket file left by a crashed process, and refuses to
    take over a socket some process still answers on.

    Attributes:
        backlog: Listen queue length (the kernel may cap it).
        capabilities: ``{PLAIN_SOCKET}``: its streams are plain sockets, so daffi may
            write and read them directly (a subclass that wraps them does not inherit it).
    """

    scheme: ClassVar[str] = "unix"
    capabilities: ClassVar[frozenset[str]] = frozenset({PLAIN_SOCKET})
    backlog: ClassVar[int] = 4096

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        """Connect to the socket file ``address.path``.

        Raises:
            FileNotFoundError: If there is no socket file (nothing listening).
            ConnectionRefusedError: If the socket file is stale.
            ValueError: If the address has no path.
        """
        path = self._path(address, "connect to")
        try:
            stream = await anyio.connect_unix(path)
        except OSError as exc:
            raise _with_address(exc, "connect to", address) from exc
        return await unix_stream_for_loop(stream)

    def connect_blocking(self, address: Address, timeout: float) -> socket.socket:
        """A blocking connection to the socket file ``address.path``."""
        path = self._path(address, "connect to")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise _with_address(exc, "connect to", address) from exc
        return sock

    async def listen(self, address: Address) -> Listening:
        """Listen on the socket file ``address.path``.

        Returns:
            The listener; closing it removes the socket file if it is still ours.

        Raises:
            OSError: ``EADDRINUSE`` if a process answers on the socket already,
                ``EEXIST`` if the path is something other than a socket.
            ValueError: If the address has no path.
        """
        path = self._path(address, "listen on")
        try:
            await anyio.to_thread.run_sync(_make_private_parents, path)
            await _remove_if_stale(path, address)
            sock, absolute_path, file_id = await anyio.to_thread.run_sync(_bind, path, self.backlog)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(address) from exc
            if exc.errno == errno.EEXIST:
                raise
            raise _with_address(exc, "listen on", address) from exc
        try:
            listener = await anyio.abc.SocketListener.from_socket(sock)
        except BaseException:
            sock.close()
            _unlink_if_ours(absolute_path, file_id)
            raise
        logger.debug("listening on %s", address)
        return Listening(
            # The absolute path keeps cleanup right if the working directory changes.
            listener=UnixListener(listener, absolute_path, file_id),
            address=Address(scheme="unix", path=path),
        )

    def _path(self, address: Address, action: str) -> str:
        self._check_scheme(address)
        if not address.path:
            raise ValueError(
                f"unix address {address!r} has no socket path: use "
                f"Address(scheme='unix', path='/path/to/daffi.sock') or 'unix:///path/to/daffi.sock'"
            )
        if not hasattr(socket, "AF_UNIX"):
            raise OSError(
                errno.EAFNOSUPPORT,
                f"cannot {action} {address}: Unix sockets are not available on this "
                f"platform; use a tcp:// address",
            )
        size = len(os.fsencode(address.path))
        if size > _MAX_PATH_BYTES:
            raise OSError(
                errno.ENAMETOOLONG,
                f"cannot {action} {address}: the socket path is {size} bytes but Unix "
                f"sockets allow at most {_MAX_PATH_BYTES}; use a shorter path, e.g. one in "
                f"default_unix_socket_dir()",
            )
        _check_socket_dir(address.path, action, address)
        return address.path


class UnixListener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """A Unix socket listener that removes its socket file when closed.

    The file is removed only if it is still the one this listener created, so closing
    an old listener never deletes the socket of a controller started after it.
    """

    def __init__(self, listener: anyio.abc.SocketListener, path: str, file_id: _FileId) -> None:
        self._listener = listener
        self._path = path
        self._file_id: _FileId | None = file_id

    @property
    def path(self) -> str:
        """The absolute socket file path."""
        return self._path

    async def accept(self) -> anyio.abc.SocketStream:
        """Wait for the next connection.

        Raises:
            anyio.ClosedResourceError: If the listener is (or gets) closed.
        """
        return await unix_stream_for_loop(await self._listener.accept())

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Run ``handler(stream)`` in a new task for each connection, until closed.

        Raises:
            anyio.ClosedResourceError: When the listener is closed, like socket listeners.
        """
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                stream = await self.accept()
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        """Remove the socket file (if still ours), then stop accepting."""
        if self._file_id is not None:
            # Unlinking while still listening means no other process can have judged the
            # file stale and replaced it in between; the id check covers older closes.
            _unlink_if_ours(self._path, self._file_id)
            self._file_id = None
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._listener.extra_attributes


def default_unix_socket_dir() -> str:
    """Return the current user's private directory for daffi sockets, creating it.

    It is ``<tempfile.gettempdir()>/daffi-<uid>`` (``daffi-<user name>`` where there are
    no uids, e.g. Windows), created with mode 0700.

    Raises:
        PermissionError: If the directory exists but is a symlink, is not a directory,
            is owned by another user, or is writable by group or others: another local
            user could then plant or intercept sockets in it.
    """
    getuid: Callable[[], int] | None = getattr(os, "getuid", None)
    owner = str(getuid()) if getuid is not None else _user_name()
    import tempfile  # only for the default directory

    path = os.path.join(tempfile.gettempdir(), f"daffi-{owner}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        # mkdir's mode is filtered through the umask; make sure it is exactly 0700.
        os.chmod(path, 0o700)
    _check_private_dir(path, getuid)
    return path


def _user_name() -> str:
    import getpass  # only for the default socket directory

    try:
        name = getpass.getuser()
    except Exception:  # getpass raises OSError or ImportError when it cannot tell
        name = "user"
    # The name becomes part of a path: keep it to characters that are safe everywhere.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "user"


def _check_private_dir(path: str, getuid: Callable[[], int] | None) -> None:
    info = os.lstat(path)
    advice = "remove it (or fix it) and try again, or pass an explicit unix socket path"
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(
            errno.EPERM, f"daffi socket directory {path} is a symlink, not a directory; {advice}"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(
            errno.EPERM, f"daffi socket directory {path} exists but is not a directory; {advice}"
        )
    if getuid is None:
        return  # no Unix ownership or mode bits to check (Windows)
    uid = getuid()
    if info.st_uid != uid:
        raise PermissionError(
            errno.EPERM,
            f"daffi socket directory {path} is owned by uid {info.st_uid}, not by you "
            f"(uid {uid}); another user may have created it to intercept daffi sockets; "
            f"{advice}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            errno.EPERM,
            f"daffi socket directory {path} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}, expected 0700); "
            f"run 'chmod 700 {path}' or {advice}",
        )


def _check_socket_dir(path: str, action: str, address: Address) -> None:
    """Refuse a socket whose directory other users may write and is not sticky: any of
    them could replace the socket file with their own (and read every call).

    A sticky directory such as /tmp is accepted: there nobody but its owner (or root) may
    remove or rename the socket file. A directory that does not exist yet is created
    private (mode 0700) by ``listen``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        info = os.stat(directory)
    except OSError:
        return  # missing: listen creates it private; connect fails on the path itself
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise PermissionError(
            errno.EPERM,
            f"cannot {action} {address}: its directory {directory} is writable by other "
            f"users (mode {stat.S_IMODE(info.st_mode):04o}), who could replace the socket; "
            f"run 'chmod go-w {directory}', or put the socket in a private directory "
            f"(default_unix_socket_dir() gives one)",
        )


def _make_private_parents(path: str) -> None:
    """Create the missing directories above ``path`` with mode 0700; leave existing ones."""
    directory = os.path.dirname(os.path.abspath(path))
    missing: list[str] = []
    while not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:
            continue  # created concurrently by someone else: not ours to chmod
        os.chmod(created, 0o700)  # the umask may have removed bits from mkdir's mode


async def _remove_if_stale(path: str, address: Address) -> None:
    """Unlink a socket file nobody answers on; raise if a process still listens on it."""
    info = await anyio.to_thread.run_sync(_existing_socket, path, address)
    if info is None:
        return
    try:
        with anyio.fail_after(_PROBE_TIMEOUT):
            probe = await anyio.connect_unix(path)
    except ConnectionRefusedError:
        if _unlink_if_ours(path, (info.st_dev, info.st_ino)):
            logger.info("removed stale socket file %s left by a stopped process", path)
        return
    except FileNotFoundError:
        return  # removed meanwhile, e.g. by the process that owned it shutting down
    except TimeoutError:
        # Connecting waits only when a live listener's queue is full.
        raise _in_use(address) from None
    await probe.aclose()
    raise _in_use(address)


def _existing_socket(path: str, address: Address) -> os.stat_result | None:
    """Return the socket file's stat, ``None`` if there is no file; raise if not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"cannot listen on {address}: {path} exists and is not a socket; "
            f"remove it or choose another path",
        )
    return info


def _in_use(address: Address) -> OSError:
    return OSError(
        errno.EADDRINUSE,
        f"cannot listen on {address}: the socket is already in use by a running daffi "
        f"controller (a process accepts connections on it); stop it or use another path",
    )


def _bind(path: str, backlog: int) -> tuple[socket.socket, str, _FileId]:
    """Bind and listen on ``path``; return the socket, its absolute path and file id."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(path)
        try:
            # Until listen() connections are refused, so tightening the mode here leaves
            # no window in which the umask's looser mode lets another user connect.
            os.chmod(path, 0o600)
            info = os.stat(path)
            sock.listen(backlog)
        except BaseException:
            os.unlink(path)
            raise
    except BaseException:
        sock.close()
        raise
    return sock, os.path.abspath(path), (info.st_dev, info.st_ino)


def _unlink_if_ours(path: str, file_id: _FileId) -> bool:
    """Unlink ``path`` if it is still the file identified by ``file_id``."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) != file_id:
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("could not remove socket file %s: %s", path, exc)
        return False
    return True
