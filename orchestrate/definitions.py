"""The Dagster definitions: account loads as a partitioned asset, dbt models downstream.

``tenios_loads`` has one static partition per account of the accounts file. A run
targets a range of partitions (all of them on the hourly schedule, one when an
operator re-runs an account) and fans out one ``load_account`` step per account,
which Dagster's multiprocess executor runs at most ``TENIOS_MAX_IN_FLIGHT`` at a time,
each retried on failure with a doubling wait. The dbt models (dagster-dbt) depend on
the loads and run once, after every account of the run has loaded. Load them with
``dagster dev -m orchestrate.defs`` or run them with ``python -m orchestrate``.
"""

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    BackfillPolicy,
    Backoff,
    Definitions,
    DynamicOut,
    DynamicOutput,
    JobDefinition,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    RunRequest,
    ScheduleEvaluationContext,
    StaticPartitionsDefinition,
    define_asset_job,
    graph_multi_asset,
    multiprocess_executor,
    op,
    schedule,
)
from dagster_dbt import DbtCliResource, dbt_assets

from .accounts import Account, accounts_path, load_accounts
from .el import prepare_system_database, run_account
from .settings import Settings, load_settings

TRANSFORM = Path(__file__).resolve().parent.parent / "transform"
#: What one account's load writes: dbt's sources ``tenios.cdrs`` and ``tenios.cdr_counts``
#: (dagster-dbt's keys for them), in every account's schema.
STREAMS = ("cdrs", "cdr_counts")
JOB = "tenios_accounts"
#: Dagster's run tags for a run over a range of partitions.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def dbt_resource(profiles_dir: Path) -> DbtCliResource:
    """Dbt from this virtualenv (dbt-core and dbt-postgres are Dagster's dependencies),
    else from PATH.
    """
    here = Path(sys.executable).parent / "dbt"
    executable = str(here) if here.exists() else shutil.which("dbt") or "dbt"
    return DbtCliResource(
        project_dir=str(TRANSFORM), profiles_dir=str(profiles_dir), dbt_executable=executable
    )


def dbt_postgres_env(project_root: Path) -> dict[str, str]:
    """The environment the Meltano project gives its dbt-postgres utility (PGOPTIONS:
    PostgreSQL without JIT), so that dbt run from here costs what `meltano invoke` does.
    """
    project = yaml.safe_load((project_root / "meltano.yml").read_text())
    utilities = project.get("plugins", {}).get("utilities", [])
    found = [utility for utility in utilities if utility.get("name") == "dbt-postgres"]
    env = (found[0].get("env") or {}) if found else {}
    return {name: str(value) for name, value in env.items()}


def dbt_sources(accounts: list[Account]) -> list[dict[str, str]]:
    """Dbt's ``tenios_sources``: one schema per account, named after the account."""
    return [{"schema": account.schema, "account": account.account} for account in accounts]


def manifest_path(profiles_dir: Path) -> Path:
    """The dbt manifest the assets are declared from (``dbt parse``, once, if missing)."""
    target = TRANSFORM / "target"
    manifest = target / "manifest.json"
    if not manifest.exists():
        dbt_resource(profiles_dir).cli(["parse", "--quiet"], target_path=target).wait()
    return manifest


def run_config(max_in_flight: int) -> dict[str, Any]:
    """A run's configuration: at most ``max_in_flight`` accounts' steps at once."""
    return {"execution": {"config": {"max_concurrent": max_in_flight}}}


def build_definitions(accounts: list[Account], settings: Settings) -> Definitions:
    """The definitions for these accounts (checked) with these settings."""
    by_name = {account.account: account for account in accounts}
    partitions = StaticPartitionsDefinition(list(by_name))

    @op(out=DynamicOut(str))
    def accounts_in_run(context: OpExecutionContext) -> Iterator[DynamicOutput[str]]:
        """One output per account of the run's partitions: each becomes its own step
        (after Meltano's system database is migrated, once).
        """
        prepare_system_database(settings)
        for key in context.partition_keys:
            yield DynamicOutput(key, mapping_key=key)

    @op(
        retry_policy=RetryPolicy(
            max_retries=settings.retries,
            delay=settings.retry_delay_seconds,
            backoff=Backoff.EXPONENTIAL,
        ),
        tags={"tenios/kind": "account-load"},
    )
    def load_account(context: OpExecutionContext, account: str) -> dict[str, Any]:
        """``meltano run`` for one account; a failure is retried by the retry policy."""
        result = run_account(by_name[account], settings)
        context.log.info(
            f"{result.state_id}: loaded in {result.seconds:.1f} s "
            f"(start-up {result.startup_seconds:.1f} s)"
        )
        return {
            "account": result.account,
            "seconds": round(result.seconds, 3),
            "startup_seconds": round(result.startup_seconds, 3),
        }

    @op(out={stream: Out(Nothing) for stream in STREAMS})
    def loads_done(context: OpExecutionContext, results: list[dict[str, Any]]) -> Iterator[Any]:
        """Every account of the run has loaded both streams: the models may run."""
        runs = json.dumps(sorted(results, key=lambda r: str(r["account"])))
        for stream in STREAMS:
            yield Output(None, stream, metadata={"accounts": len(results), "runs": runs})

    @graph_multi_asset(
        outs={stream: AssetOut(key=AssetKey(["tenios", stream])) for stream in STREAMS},
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="tenios_loads",
    )
    def tenios_loads() -> Any:
        """Each account's CDRs and counts, loaded by ``meltano run`` into its own schema."""
        done = loads_done(accounts_in_run().map(load_account).collect())
        return {stream: getattr(done, stream) for stream in STREAMS}

    profiles_dir = TRANSFORM / "profiles" / "postgres"
    sources = json.dumps({"tenios_sources": dbt_sources(accounts)})

    @dbt_assets(
        manifest=manifest_path(profiles_dir),
        exclude="resource_type:unit_test",
    )
    def tenios_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        """The dbt models over every account's schema, built once per run."""
        # dbt's process inherits this step's environment.
        for name, value in dbt_postgres_env(settings.project_root).items():
            os.environ.setdefault(name, value)
        yield from dbt.cli(
            ["build", "--exclude-resource-type", "unit_test", "--vars", sources],
            context=context,
        ).stream()

    job = define_asset_job(
        JOB,
        selection=[tenios_loads, tenios_models],
        executor_def=multiprocess_executor,
        # The default; a run may set its own (python -m orchestrate run does, from
        # TENIOS_MAX_IN_FLIGHT as it starts the run).
        config=run_config(settings.max_in_flight),
        description="Every account's load, at most TENIOS_MAX_IN_FLIGHT at once; then dbt.",
    )

    @schedule(job=job, cron_schedule="0 * * * *", name="tenios_hourly")
    def tenios_hourly(context: ScheduleEvaluationContext) -> RunRequest:
        """Every hour, every account, then the models once."""
        keys = partitions.get_partition_keys()
        return RunRequest(
            run_key=None,
            run_config=run_config(settings.max_in_flight),
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        )

    return Definitions(
        assets=[tenios_loads, tenios_models],
        jobs=[job],
        schedules=[tenios_hourly],
        resources={"dbt": dbt_resource(profiles_dir)},
    )


def definitions_from_env(environ: Mapping[str, str] | None = None) -> Definitions:
    """The definitions for the accounts file and settings of the environment."""
    env = os.environ if environ is None else environ
    return build_definitions(load_accounts(accounts_path(env), env), load_settings(env))


def tenios_job() -> JobDefinition:
    """The job, rebuilt from the environment (what each step's process calls)."""
    return definitions_from_env().resolve_job_def(JOB)
