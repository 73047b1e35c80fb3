"""The Plan's schema version: written by the compiler, checked by the runtime (docs/plan-format.md)."""

PLAN_VERSION = 1
