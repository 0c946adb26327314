"""Unix transport specifics: stale sockets, in-use detection, permissions, cleanup."""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from pathlib import Path

import anyio
import pytest

from daffi.transports import Address, UnixTransport, default_unix_socket_dir

from ._helpers import echo, receive_exactly, serving

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets"),
]

posix_only = pytest.mark.skipif(not hasattr(os, "getuid"), reason="needs Unix permissions")


def _unix(path: Path) -> Address:
    return Address(scheme="unix", path=str(path))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def _assert_echoes(address: Address) -> None:
    async with await UnixTransport().connect(address) as stream:
        await stream.send(b"ping")
        assert await receive_exactly(stream, 4) == b"ping"


async def test_stale_socket_file_is_replaced(socket_dir: Path) -> None:
    path = socket_dir / "daffi.sock"
    # A socket file left by a crashed process: bound, never unlinked, nobody listening.
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with anyio.fail_after(10):
        async with serving(_unix(path), echo) as listening:
            await _assert_echoes(listening.address)


async def test_live_socket_is_not_taken_over(socket_dir: Path) -> None:
    address = _unix(socket_dir / "daffi.sock")
    with anyio.fail_after(10):
        async with serving(address, echo):
            with pytest.raises(
                OSError, match="already in use by a running daffi controller"
            ) as info:
                await UnixTransport().listen(address)
            assert info.value.errno == errno.EADDRINUSE
            # The failed attempt must leave the running listener's socket alone.
            await _assert_echoes(address)


async def test_missing_directories_are_created_private(socket_dir: Path) -> None:
    path = socket_dir / "run" / "daffi" / "daffi.sock"
    with anyio.fail_after(10):
        async with await UnixTransport().listen(_unix(path)) as listening:
            assert _mode(socket_dir / "run") == 0o700
            assert _mode(socket_dir / "run" / "daffi") == 0o700
            assert _mode(path) == 0o600
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            assert listening.address == _unix(path)
        assert not path.exists()


async def test_existing_directory_mode_is_left_alone(socket_dir: Path) -> None:
    directory = socket_dir / "shared"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    with anyio.fail_after(10):
        async with await UnixTransport().listen(_unix(directory / "daffi.sock")):
            assert _mode(directory) == 0o755


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o722])
async def test_a_directory_other_users_can_write_is_refused(socket_dir: Path, mode: int) -> None:
    """Issue 11, D13: another user could replace the socket file there."""
    directory = socket_dir / "open"
    directory.mkdir()
    os.chmod(directory, mode)
    address = _unix(directory / "daffi.sock")
    for attempt in (UnixTransport().listen(address), UnixTransport().connect(address)):
        with pytest.raises(PermissionError, match=r"writable by other users.*chmod go-w"):
            await attempt
    with pytest.raises(PermissionError, match="writable by other users"):
        UnixTransport().connect_blocking(address, 1)
    assert not (directory / "daffi.sock").exists()


async def test_a_sticky_shared_directory_is_accepted(socket_dir: Path) -> None:
    """Like /tmp: nobody but the socket's owner may remove or rename it there."""
    directory = socket_dir / "sticky"
    directory.mkdir()
    os.chmod(directory, 0o1777)
    with anyio.fail_after(10):
        async with await UnixTransport().listen(_unix(directory / "daffi.sock")):
            assert (directory / "daffi.sock").exists()


async def test_a_file_that_is_not_a_socket_is_never_removed(socket_dir: Path) -> None:
    path = socket_dir / "daffi.sock"
    path.write_text("precious")
    with anyio.fail_after(10), pytest.raises(FileExistsError, match="not a socket"):
        await UnixTransport().listen(_unix(path))
    assert path.read_text() == "precious"


async def test_close_removes_only_its_own_socket_file(socket_dir: Path) -> None:
    address = _unix(socket_dir / "daffi.sock")
    transport = UnixTransport()
    with anyio.fail_after(10):
        old = await transport.listen(address)
        try:
            # Someone removed the file and a new controller took the path over.
            os.unlink(socket_dir / "daffi.sock")
            async with serving(address, echo):
                await old.aclose()
                assert (socket_dir / "daffi.sock").exists()
                await _assert_echoes(address)
        finally:
            await old.aclose()


async def test_too_long_path_is_explained(socket_dir: Path) -> None:
    address = _unix(socket_dir / ("x" * 120) / "daffi.sock")
    with anyio.fail_after(5), pytest.raises(OSError, match="at most") as info:
        await UnixTransport().listen(address)
    assert info.value.errno == errno.ENAMETOOLONG


async def test_missing_path_is_rejected() -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="no socket path"):
        await UnixTransport().listen(Address(scheme="unix"))


async def test_connect_to_stale_socket_is_refused(socket_dir: Path) -> None:
    path = socket_dir / "dead.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))
    with anyio.fail_after(5), pytest.raises(ConnectionRefusedError, match="cannot connect"):
        await UnixTransport().connect(_unix(path))


@pytest.fixture
def fake_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


@posix_only
def test_default_socket_dir_is_private_and_stable(fake_tempdir: Path) -> None:
    directory = default_unix_socket_dir()
    assert directory == str(fake_tempdir / f"daffi-{os.getuid()}")
    assert _mode(Path(directory)) == 0o700
    assert default_unix_socket_dir() == directory


@posix_only
def test_default_socket_dir_rejects_a_writable_directory(fake_tempdir: Path) -> None:
    directory = fake_tempdir / f"daffi-{os.getuid()}"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        default_unix_socket_dir()


@posix_only
def test_default_socket_dir_rejects_another_users_directory(
    fake_tempdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend to be the next uid: the directory then belongs to "someone else".
    other_uid = os.getuid() + 1
    (fake_tempdir / f"daffi-{other_uid}").mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: other_uid)
    with pytest.raises(PermissionError, match="not by you"):
        default_unix_socket_dir()


@posix_only
def test_default_socket_dir_rejects_a_symlink(fake_tempdir: Path) -> None:
    target = fake_tempdir / "elsewhere"
    target.mkdir(mode=0o700)
    (fake_tempdir / f"daffi-{os.getuid()}").symlink_to(target)
    with pytest.raises(PermissionError, match="symlink"):
        default_unix_socket_dir()
