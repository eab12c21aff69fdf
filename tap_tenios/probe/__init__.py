"""A read-only probe of the Tenios API: which variant of its undocumented behaviour an
account has, with the evidence, and the tap settings that follow.

``client`` sends the requests (budgeted, paced), ``served`` reads what comes back,
``checks`` asks the questions, ``report`` writes the answers, ``cli`` is the command.
"""
