"""Many Tenios accounts on Dagster: one partition per account, Meltano state on PostgreSQL.

``accounts`` reads and checks the accounts file, ``settings`` the orchestration's own
settings, ``el`` runs one account's ``meltano run`` under a per-account lock,
``definitions`` declares the Dagster assets, job and schedule, ``cli`` runs them
in-process, ``report`` compares what was loaded with the API's counts, and ``demo``
proves it all on twenty emulated accounts. Installed on its own
(``orchestrate/requirements.txt``), never with the tap.
"""
