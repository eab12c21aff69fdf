"""A read-only probe of the Tenios API: which variant of its undocumented behaviour an
account has, with the evidence, and the tap settings that follow.

``cli`` is the command; ``client`` sends the requests (budgeted, paced); ``served``
reads what comes back; ``state`` is what a run knows so far; ``checks`` runs the
checks in order: ``sample`` (the range), ``paging`` (order, stability, page cap),
``zone`` (stamps and bounds), ``counting``, ``timing`` (latency, ``--watch``),
``limits`` (rate limits); ``implied`` names the settings; ``report`` writes it all.
"""
