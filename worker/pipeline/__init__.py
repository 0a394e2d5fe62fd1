"""Pure steps over a batch: decode -> validate -> canonicalise -> dedupe -> plan.

Nothing in this package does I/O; each step takes values and returns values, so every
rule here is tested without Redis or PostgreSQL.
"""
