{#
  ORDER BY for "the newest copy of a leg first". With a load-time column
  (tenios_loaded_at_column, e.g. _sdc_batched_at) the latest load wins. Without one the
  warehouse cannot tell loads apart, and the most complete copy wins: a leg read again
  after it ended, or after billing settled, has a later end, more billed time and a cost.
#}
{% macro tenios_newest_first() -%}
  {%- set loaded_at = var('tenios_loaded_at_column') -%}
  {%- if loaded_at %}{{ loaded_at }} desc nulls last, {% endif -%}
  end_stamp desc nulls last, billusec desc nulls last, cost desc nulls last
{%- endmacro %}
