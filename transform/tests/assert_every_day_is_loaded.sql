-- Fails with the days, per account, from its first day to its latest counted day, that
-- have no cdr_counts row, or, once closed, none of the legs the API counted, or that were
-- counted only until a run ended and by none of the later runs: a warehouse restored
-- from an old backup, or wiped, behind Meltano's state. Each failing row names
-- the account, the local day and what is missing (see them with `dbt test --select
-- assert_every_day_is_loaded --store-failures`, or in tenios__daily_coverage).
select account, count_date, timezone, problem
from {{ ref('tenios__daily_coverage') }}
where problem is not null
