"""One steering command given to many runs: by ids, or to every run a `runs()` filter matches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from weft.client.errors import NotFound
from weft.errors import WeftError

if TYPE_CHECKING:
    from weft.client.answers import Bulk
    from weft.client.operations import Client

PAGE = 500  # runs read per page of a filter
MOST = 10_000  # runs one bulk command steers at most


def apply(client: Client, command: Callable[[str], Any], ids: Iterable[str] | None, filters: dict[str, Any]) -> Bulk:
    """`command(run id)` for each run of `ids` (ids or unique prefixes), else of those `filters` match.

    A refusal (a Conflict, an input the run does not take) is recorded and the
    next run is steered: one run's state never stops the others.
    """
    from weft.client.answers import Bulk, Refusal

    done: list[str] = []
    refused: list[Refusal] = []
    missing: list[str] = []
    for text in _targets(client, ids, filters):
        try:
            rid = client.resolve(text)
        except NotFound:
            missing.append(text)
            continue
        try:
            command(rid)
        except NotFound:
            missing.append(text)
        except WeftError as e:
            refused.append(Refusal(rid, str(e), getattr(e, "state", None)))
        else:
            done.append(rid)
    return Bulk(tuple(done), tuple(refused), tuple(missing))


def _targets(client: Client, ids: Iterable[str] | None, filters: dict[str, Any]) -> list[str]:
    if ids is not None:
        return list(dict.fromkeys(ids))[:MOST]
    found: list[str] = []
    offset = 0
    while len(found) < MOST:  # ids first, then steered: what a command changes never moves the pages read
        page = client.runs(**filters, limit=min(PAGE, MOST - len(found)), offset=offset)
        found += [r.id for r in page.runs]
        if not page.more:
            break
        offset += len(page.runs)
    return found
