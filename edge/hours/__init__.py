"""The branch's day: the calendar, what each mode means (policy), the engine that decides,
the reconciler that makes devices follow, and signed control messages. Pure where it can be;
imports ``edge.core`` only.
"""
