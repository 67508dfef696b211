"""Operators' jobs (SPEC §9): import, prune, verify, backfill, story-link sync and the demo
seed, each command (management/commands) beside its logic.

Their writes: each batch is an action of its own (``@atomic_write``) that takes its locks
through ``kernel.locks``, checks its rule again under them (what a prune keeps, which
relations a backfill may add, which lines an import accepts), and writes through the
services' batch primitives: ``artifacts.services.artifacts_insert_as_given``,
``prune_rows`` and ``relations_insert``; ``stories.services.stories_import`` and
``scenes_import``; ``story_sync_references``. The rules of a batch live with the batch,
here; what a write may do to a row, there.
"""
