"""How an answer with a format error is scored, named once (standard library only: the CLIs import it to start).

paper: with whatever soft parsing recovered (the authors' rule, which reproduces their numbers; the default).
strict: as an empty prediction (gold items become false negatives, and a classification target takes the absent
label), as a production parser that rejects a malformed answer would.
"""
RULES = ("paper", "strict")
PAPER, STRICT = RULES
