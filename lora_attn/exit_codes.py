"""The exit statuses of every ``lora-attn`` subcommand (README, *Exit codes*).

``1`` is never returned on purpose: it is what Python gives an uncaught exception, so a ``1`` is a bug.
"""

#: The work finished and every result is valid (``validate``: the theory agrees with the simulations).
OK = 0
#: Bad input (a parameter, a flag, an output path), refused before any work.
BAD_INPUT = 2
#: ``validate``: some observable disagrees with the theory at the chosen family-wise level.
DISAGREE = 3
#: A theory solve did not converge (its observables are reported as NaN / null).
NOT_CONVERGED = 4
#: ``validate``: the run cannot tell (too few seeds or sizes for the gaps the user cares about).
INCONCLUSIVE = 5
#: Interrupted (Ctrl-C); what was computed is saved and the same command resumes.
INTERRUPTED = 130

#: Every status a command may return, for tests and documentation.
ALL = (OK, BAD_INPUT, DISAGREE, NOT_CONVERGED, INCONCLUSIVE, INTERRUPTED)
