-- One row per account: the span of time the tap has counted, and so extracted, from the
-- first instant of its first counted period to the end of its last (a run's end, for
-- today). A report day or interval is whole when it lies within it (macro
-- tenios_whole_period_columns); gaps inside it are the coverage's to find
-- (tenios__daily_coverage). A view: the marts' days and intervals read it.
{{ config(materialized='view') }}

select
    account,
    min(window_start_at) as extracted_from,
    max(window_end_at) as extracted_to
from {{ ref('stg_tenios__cdr_counts') }}
group by account
