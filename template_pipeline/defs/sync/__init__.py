"""The sync of many sites in one step: each site fetched, validated, written and checked alone.

:mod:`.site` syncs one site (its own lock, connection and transactions); :mod:`.fetching` reads
its export and lets unchanged records off; :mod:`.outcomes` says what became of it and why, in
plain words; :mod:`.batch` runs the sites of a run side by side and turns their reports into
Dagster events; :mod:`.metadata` builds the materialisation metadata.
"""
