"""Asset checks of the template assets, evaluated per site partition.

============================  ==========================  ========  ===========================
check                         entities                    blocking  fails with
============================  ==========================  ========  ===========================
``reject_rate``               settings + list endpoints   yes       WARN on any reject, ERROR
                                                                    above 5 % (and 3 records)
``unique_ids``                settings + list endpoints   no        WARN (duplicates resolved:
                                                                    the last occurrence wins)
``matches_site_stats``        counted list endpoints      no        WARN
``order_totals``              orders                      no        WARN, first mismatches
``items_reference_paintings`` order_items                 no        WARN, with counts
``mass_delete_guard``         merged tables               yes       ERROR: the write refused
``freshness``                 every asset                 no        ERROR after 26 h
``site_name_present``         settings                    no        ERROR
============================  ==========================  ========  ===========================

:mod:`.rules` builds the check specs from the registry; :mod:`.facts` holds what they read
and share; :mod:`.evaluations`, :mod:`.reconciliation` and :mod:`.freshness` evaluate them.
"""

from template_pipeline.defs.checks.facts import FRESHNESS, MASS_DELETE_GUARD, CheckTarget
from template_pipeline.defs.checks.rules import (
    CHECK_RULES,
    COUNTED_ENTITIES,
    CheckRule,
    evaluate_rules,
    evaluation,
    freshness_checks,
    rules_for,
    sync_check_specs,
)

__all__ = [
    "CHECK_RULES",
    "COUNTED_ENTITIES",
    "FRESHNESS",
    "MASS_DELETE_GUARD",
    "CheckRule",
    "CheckTarget",
    "evaluate_rules",
    "evaluation",
    "freshness_checks",
    "rules_for",
    "sync_check_specs",
]
