"""The mass-delete guard's refusals, reported as failed checks from inside the refused step.

The guard lives in the IO manager, which refuses the write. The asset step then fails, and a
check downstream of a failed step never runs, so the refusal cannot be found by a check op: the
IO manager reports it itself through :func:`report_refused_sync`.
"""

import logging
import threading

import dagster as dg

from template_pipeline.defs.checks.facts import MASS_DELETE_GUARD, pct

logger = logging.getLogger(__name__)


_REPORTED_ATTR = "_template_reported_as_check"


_report_lock = threading.Lock()


def report_refused_sync(context: dg.OutputContext, exc: Exception) -> bool:
    """Log a refused write as a failed evaluation of the asset's blocking ``mass_delete_guard``.

    Called by the IO manager's ``handle_output`` just before it re-raises
    :class:`~template_pipeline.defs.io_manager.MassDeleteRefusedError`: the step fails as before
    (nothing downstream runs), and the refusal also shows on the asset's checks, per site, with
    its numbers, where the alerts sensor finds it. ``exc`` is read for its ``site``,
    ``live_rows``, ``to_delete``, ``max_delete_fraction`` and ``min_rows_for_guard``.

    Returns whether an evaluation was logged: not outside a run, not when the job does not
    define the check, and not twice for one exception. Never raises: reporting must not hide
    the refusal itself.
    """
    try:
        with _report_lock:
            if getattr(exc, _REPORTED_ATTR, False):
                return False
            setattr(exc, _REPORTED_ATTR, True)
        if not context.has_asset_key:
            return False
        check_key = dg.AssetCheckKey(context.asset_key, MASS_DELETE_GUARD)
        step_context = context.step_context
        if check_key not in step_context.job_def.asset_layer.asset_graph.asset_check_keys:
            return False
        live_rows = int(getattr(exc, "live_rows", 0))
        to_delete = int(getattr(exc, "to_delete", 0))
        evaluation = dg.AssetCheckEvaluation(
            asset_key=context.asset_key,
            check_name=MASS_DELETE_GUARD,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=True,
            partition=context.asset_partition_key if context.has_asset_partitions else None,
            description=str(exc),
            metadata={
                "status": "refused",
                "live_rows": live_rows,
                "would_delete": to_delete,
                "would_delete_pct": pct(to_delete, live_rows),
                "max_delete_fraction": float(getattr(exc, "max_delete_fraction", 0.0)),
                "min_rows_for_guard": int(getattr(exc, "min_rows_for_guard", 0)),
                "sync_run_id": context.run_id,
            },
        )
        # Building a step event logs it to the run's event log (Dagster has no public way to
        # emit a check evaluation from an IO manager; this is what AssetCheckResult becomes).
        from dagster._core.events import DagsterEvent

        DagsterEvent.asset_check_evaluation(step_context, evaluation)
        return True
    except Exception:
        logger.warning("could not report the refused sync as a failed check", exc_info=True)
        return False
