"""Round-robin advances once per call, also when the controller's direct routing path leaves
a call to the serving task because its target is congested.

On asyncio, the controller routes a call right where it read it; when the chosen target's
connection has more than ``high_water`` bytes queued, it leaves the call to the serving task,
which waits for the target to catch up, and must send it to the same target. (Picking again
would advance round-robin twice for that call: with two providers, every call would go to
the same one.)
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from daffi import BG
from daffi.decorators import fetcher

from ._helpers import Net, controller_of

pytestmark = pytest.mark.timeout(30)


@fetcher
def whoami():
    pass


def named(name: str):  # type: ignore[no-untyped-def]
    # async: a def callback's calls would go to the provider's work channel instead
    async def whoami_cb() -> str:
        return name

    return whoami_cb


@pytest.mark.parametrize("congested", [False, True], ids=["idle", "congested"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_calls_alternate_between_two_providers(net: Net, backend: str, congested: bool) -> None:
    ctrl = net.start_controller({}, backend=backend)
    for name in ("p1", "p2"):
        net.node(name, {"whoami": named(name)}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("whoami", timeout=5)
    controller = controller_of(ctrl)
    if congested:
        for name in ("p1", "p2"):
            # every send to it now counts as congested: the direct path declines each call
            controller.peers[name].conn.high_water = -1  # type: ignore[union-attr]
    with client.as_current():
        answers = [whoami.call(exec_modifier=BG).get(timeout=5) for _ in range(20)]
    assert Counter(answers) == {"p1": 10, "p2": 10}
    assert all(a != b for a, b in itertools.pairwise(answers)), answers
    assert controller.direct.chosen == {}
