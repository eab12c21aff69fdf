"""Run the job of ``orchestrate.definitions`` in this process, as ``dagster dev`` would.

The job is reconstructable (``definitions.tenios_job`` rebuilds it from the
environment), so its multiprocess executor starts each account's step in a process
of its own. Dagster's instance is ``DAGSTER_HOME`` when set (runs then show up in
``dagster dev``), else a temporary one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

from dagster import DagsterInstance, build_reconstructable_job, execute_job

from .definitions import RANGE_END, RANGE_START, run_config
from .settings import ROOT, load_settings


def run_job(accounts: Sequence[str], *, all_accounts: Sequence[str] | None = None) -> bool:
    """Run the job over ``accounts``: one run over the whole partition range when they
    are every account (``all_accounts``, default: the same), else one run per account.
    True when every run succeeded.
    """
    everything = list(all_accounts or accounts)
    if list(accounts) == everything:
        runs = [{RANGE_START: everything[0], RANGE_END: everything[-1]}]
    else:
        runs = [{"dagster/partition": account} for account in accounts]
    if os.environ.get("DAGSTER_HOME"):
        return _run_all(DagsterInstance.get(), runs)
    with tempfile.TemporaryDirectory() as home:
        with DagsterInstance.local_temp(home) as instance:
            return _run_all(instance, runs)


def _run_all(instance: DagsterInstance, runs: list[dict[str, str]]) -> bool:
    # Read now, not from the job: Dagster caches a reconstructed job per process, so a
    # second run in this process would otherwise keep the first one's limit.
    config = run_config(load_settings().max_in_flight)
    ok = True
    for tags in runs:
        with execute_job(
            build_reconstructable_job(
                "orchestrate.definitions",
                "tenios_job",
                # Where each step's process imports ``orchestrate`` from, whatever its cwd.
                reconstructor_working_directory=str(ROOT),
            ),
            instance=instance,
            run_config=config,
            tags=tags,
            raise_on_error=False,
        ) as result:
            ok = ok and result.success
    return ok
