import pytest


# Run every async test on asyncio and on trio (pip install 'daffi[trio]'); return
# "asyncio" alone if the application uses only asyncio.
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
