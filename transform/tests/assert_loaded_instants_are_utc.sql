-- Fails when the loaded instants are not UTC: the loader wrote them through a session in
-- another time zone. target-postgres stores instants as `timestamp without time zone`
-- converted to the session's zone, so in a Europe/Berlin session 2024-01-01T00:07:02Z
-- lands as 2024-01-01 01:07:02 and every model reads it an hour late. Nothing else
-- notices: the legs and the API's counted periods are shifted alike, so they still
-- reconcile.
--
-- The reference is what the loader cannot shift: each cdr_counts row's `date` and
-- `timezone` (a date and a name), from which a whole day's counted period follows. Its
-- loaded start and end must be that day's midnights in its zone. Each failing row names
-- the day, the zone, and how many hours the loaded instants are off.
--
-- Fix: make the loader's sessions UTC (target-postgres: PGTZ=UTC in its environment, or
-- the database's or role's timezone set to UTC), then load again in full
-- (`meltano run --full-refresh ...`) and rebuild (`dbt build --full-refresh`).
select
    account,
    count_date,
    timezone,
    window_start_at as loaded_day_start_at,
    day_start_at,
    {{ tenios_seconds_between('day_start_at', 'window_start_at') }} / 3600.0 as hours_off,
    'loaded instants are not UTC: the loader''s session time zone was not UTC (set PGTZ=UTC)'
        as problem
from {{ ref('stg_tenios__cdr_counts') }}
where is_whole_day
    and (window_start_at <> day_start_at or window_end_at <> day_end_at)
