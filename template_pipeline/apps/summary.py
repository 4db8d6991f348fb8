"""What ``sync`` prints: a progress line per site as it is done, then the summary table.

A site failed when something of it could not be synced (its key was refused, it could not be
reached, it answered nonsense, the mass-delete guard refused a table); its data landed but a
check failed when a blocking check said the data must not reach what depends on it (too many
records rejected). Both are said in plain words, never as an exception's name, and have exit
codes of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from template_pipeline.defs.sync.batch import BatchProgress
from template_pipeline.defs.sync.outcomes import CheckOutcome, SiteReport

COUNT_COLUMNS = ("fetched", "valid", "rejected", "inserted", "updated", "unchanged", "deleted")


@dataclass
class EntityLine:
    entity: str
    status: str  # success | failed | refused | skipped
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SiteOutcome:
    site: str
    run_id: str | None
    success: bool  # synced, and no blocking check failed
    entities: list[EntityLine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # why it failed, entity by entity
    check_failures: list[str] = field(default_factory=list)  # blocking checks that failed
    kind: str | None = None

    @property
    def failed(self) -> bool:
        """Something of the site could not be synced."""
        return bool(self.errors)

    @property
    def reason(self) -> str:
        return "; ".join(self.errors or self.check_failures) or "failed"


def outcome_of(report: SiteReport, run_id: str | None, entities: Sequence[str]) -> SiteOutcome:
    """The CLI's view of a site's report."""
    outcome = SiteOutcome(site=report.site, run_id=run_id, success=True, kind=report.kind())
    for entity in entities:
        state = report.entities.get(entity)
        if state is None:
            continue
        if state.failure is not None:
            status = "refused" if state.failure.kind == "refused" else "failed"
            line = EntityLine(entity, status, error=state.failure.reason)
            if state.refusal is not None:
                line.counts = {"deleted": state.refusal.to_delete}
            outcome.errors.append(f"{entity}: {state.failure.reason}")
        elif state.skipped is not None:
            line = EntityLine(entity, "skipped", error=state.skipped)
        else:
            counts = state.result.counts() if state.result is not None else {}
            line = EntityLine(entity, "success", counts=counts)
        outcome.entities.append(line)
    outcome.check_failures = [_check_sentence(check) for check in report.failed_checks]
    outcome.success = not outcome.errors and not outcome.check_failures
    return outcome


def _check_sentence(check: CheckOutcome) -> str:
    """A failed blocking check in plain words: "3 of 57 paintings rejected (5.3 %), above 5 %"."""
    meta = {key: _plain(value) for key, value in (check.result.metadata or {}).items()}
    if check.check == "reject_rate" and {"rejected", "fetched"} <= meta.keys():
        return (
            f"{meta['rejected']} of {meta['fetched']} {check.entity} rejected "
            f"({meta.get('reject_rate_pct', 0):.1f} %), above {meta.get('threshold_pct', 0):g} %"
        )
    return f"{check.entity}: the {check.check} check failed: {check.result.description or ''}"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def exit_status(outcomes: Sequence[SiteOutcome]) -> str:
    """``ok``, ``site failed`` or ``check failed`` (a site that failed outweighs a check)."""
    if any(o.failed for o in outcomes):
        return "site failed"
    if any(o.check_failures for o in outcomes):
        return "check failed"
    return "ok"


def progress_line(report: SiteReport, progress: BatchProgress) -> str:
    """``[12/100] site-12 ok in 0.8 s | 1 failed, 88 to go, 12,345 records, 45 s``."""
    if report.failed:
        state = f"FAILED ({report.kind()}): {report.reason()}"
    elif report.failed_checks:
        state = f"synced, CHECK FAILED: {_check_sentence(report.failed_checks[0])}"
    else:
        state = f"ok in {report.duration_s:.1f} s"
    remaining = max(progress.total - progress.done, 0)
    return (
        f"[{progress.done}/{progress.total}] {report.site} {state} | {progress.failed} failed, "
        f"{remaining} to go, {progress.records:,} records, {progress.elapsed_s:.0f} s"
    )


def _short_reason(outcome: SiteOutcome) -> str:
    # A refused key or a site that is down fails every entity with the same cause: the first
    # error says why, the lines above show each entity's.
    reasons = list(dict.fromkeys(error.split(": ", 1)[-1] for error in outcome.errors))
    if not reasons:
        return "; ".join(outcome.check_failures)
    more = len(outcome.errors) - 1
    if len(reasons) == 1 and more:
        return f"{reasons[0]} (all {more + 1} entities)"
    return "; ".join(outcome.errors)


def format_summary(outcomes: Sequence[SiteOutcome]) -> str:
    """One line per site and entity, then one line per site that failed or failed a check."""
    header = f"{'site':<20} {'entity':<16} {'status':<8} " + " ".join(
        f"{c:>9}" for c in COUNT_COLUMNS
    )
    lines = [header, "-" * len(header)]
    for outcome in outcomes:
        for ent in outcome.entities:
            counts = " ".join(f"{ent.counts.get(c, ''):>9}" for c in COUNT_COLUMNS)
            line = f"{outcome.site:<20} {ent.entity:<16} {ent.status:<8} {counts}"
            if ent.error and ent.status != "success":
                line += f"  {ent.error}"
            lines.append(line.rstrip())
        if not outcome.entities:
            lines.append(f"{outcome.site:<20} {'-':<16} {'failed':<8}  {outcome.reason}")
    lines.append("")
    failed = [o for o in outcomes if o.failed]
    checked = [o for o in outcomes if not o.failed and o.check_failures]
    if failed:
        lines.append(f"{len(failed)} of {len(outcomes)} site(s) failed:")
        lines.extend(f"  {o.site}: {_short_reason(o)}" for o in failed)
    if checked:
        lines.append(f"{len(checked)} site(s) synced, but a blocking check failed:")
        lines.extend(f"  {o.site}: {'; '.join(o.check_failures)}" for o in checked)
    if not failed and not checked:
        lines.append(f"all {len(outcomes)} site(s) synced")
    return "\n".join(lines)
