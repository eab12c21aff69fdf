{#
  ORDER BY for "the newest copy of a leg first". With a load-time column
  (tenios_loaded_at_column, e.g. _sdc_batched_at; `loaded_at` in stg_tenios__cdr_legs)
  the latest load wins. Without one the warehouse cannot tell loads apart, and the most
  complete copy wins: a leg read again after it ended, or after billing settled, has a
  later end, more billed time and a cost.
#}
{% macro tenios_newest_first() -%}
  {%- if var('tenios_loaded_at_column') %}loaded_at desc nulls last, {% endif -%}
  ended_at desc nulls last, billed_microseconds desc nulls last, cost desc nulls last
{%- endmacro %}
