"""labctl's foundation: units, the clock, errors, asset writing and analysis.

Imported by devices, plans and the rest of labctl; imports none of them (see the
import-linter contracts in pyproject.toml).
"""
