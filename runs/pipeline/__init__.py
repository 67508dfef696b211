"""The resumable pipeline (SPEC §10): nodes, their generators, fingerprints, and the engine
that reuses what is still valid and remakes only what changed."""
