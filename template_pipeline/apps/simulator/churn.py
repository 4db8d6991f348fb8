"""A night's worth of changes on a simulated site: some records changed, some gone, some new.

:func:`churn` mutates a :class:`~.data.SiteData` in place, deterministically for a seed: of each
list table it changes a share of the records (one text field gets a suffix), deletes another
share and adds new records (copies of surviving valid records under new ids, so they are as
valid as the site's others). The benchmark of one large site uses it for its changed re-sync
(10 % changed, 5 % deleted, 5 % added).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from template_pipeline.apps.simulator.data import RECORD_ENTITIES, SiteData

# The text field a changed record of each table gets a suffix on (a field every valid record has).
CHANGED_FIELD: dict[str, str] = {
    "paintings": "name",
    "users": "name",
    "orders": "customer_name",
    "exhibitions": "title",
    "custom_requests": "name",
}
SUFFIX = " (révisé)"


@dataclass(frozen=True)
class Churned:
    """How many records of one table :func:`churn` changed, deleted and added."""

    changed: int
    deleted: int
    added: int


def churn(
    data: SiteData,
    *,
    changed: float = 0.10,
    deleted: float = 0.05,
    added: float = 0.05,
    seed: int = 0,
) -> dict[str, Churned]:
    """Change, delete and add the given shares of every list table of ``data``; the counts."""
    for name, share in (("changed", changed), ("deleted", deleted), ("added", added)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be a share within [0, 1], got {share!r}")
    if changed + deleted > 1.0:
        raise ValueError("changed + deleted cannot exceed every record")
    counts: dict[str, Churned] = {}
    with data.lock:
        for entity in RECORD_ENTITIES:
            rng = random.Random(f"{seed}:{data.site_key}:{entity}")
            counts[entity] = _churn_table(data, entity, rng, changed, deleted, added)
        data.touch()
    return counts


def _churn_table(
    data: SiteData, entity: str, rng: random.Random, changed: float, deleted: float, added: float
) -> Churned:
    records: list[dict[str, Any]] = data.records(entity)
    invalid = data.invalid_kinds.get(entity, {})
    total = len(records)
    n_change, n_delete = round(total * changed), round(total * deleted)
    picked = rng.sample(range(total), min(total, n_change + n_delete))
    to_change = picked[:n_change]
    to_delete = set(picked[len(to_change) :])
    field = CHANGED_FIELD[entity]
    changes = 0
    for index in to_change:
        record = records[index]
        if isinstance(record.get(field), str):
            record[field] += SUFFIX
            changes += 1
    kept = [record for index, record in enumerate(records) if index not in to_delete]
    for index in to_delete:
        invalid.pop(records[index].get("id"), None)
    valid = [r for r in kept if isinstance(r.get("id"), int) and r.get("id") not in invalid]
    # Above every numeric id served (invalid records' ids included: 12.5, a huge integer).
    numeric = [r.get("id") for r in records if isinstance(r.get("id"), (int, float))]
    next_id = int(max((i for i in numeric if not isinstance(i, bool)), default=0)) + 1
    new = []
    for offset in range(round(total * added) if valid else 0):
        record = copy.deepcopy(valid[rng.randrange(len(valid))])
        record["id"] = next_id + offset
        new.append(record)
    # Ids stay in increasing order (pagination slices the list): the new ids are the largest.
    records[:] = kept + new
    return Churned(changed=changes, deleted=len(to_delete), added=len(new))
