"""``Global(init_controller=True)`` and ``Global()`` find each other on the default socket."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from .conftest import Launcher, short_temp_dir

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]


@pytest.fixture
def private_tmpdir(launch: Launcher) -> str:
    """A fresh TMPDIR, so the per-user socket directory is this test's alone."""
    directory = short_temp_dir()
    launch.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
    return directory


def test_default_unix_socket_without_arguments(launch: Launcher, private_tmpdir: str) -> None:
    env = {"TMPDIR": private_tmpdir}
    controller = launch("default_controller.py", env=env, stdin=True)
    controller.wait_for_line(r"^READY$", timeout=15)
    socket_dir = os.path.join(private_tmpdir, f"daffi-{os.getuid()}")
    assert stat.S_ISSOCK(os.stat(os.path.join(socket_dir, "daffi.sock")).st_mode)
    assert stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700

    node = launch("default_node.py", env=env, stdin=True)

    assert node.wait_for_line(r"^RESULT (.*)$", timeout=20)[1] == "controller greets node"
    assert controller.wait_for_line(r"^RESULT (.*)$", timeout=20)[1] == "node greets controller"
    for program in (controller, node):
        program.wait_for_line(r"^CALLED$", timeout=20)
        program.wait_for_line(r"^DONE$", timeout=5)
    for program in (node, controller):
        program.send_line()
        assert program.wait_exit(10) == 0, program.describe()
