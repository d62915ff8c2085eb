"""The template's own tooling: throwaway database servers and bake helpers.

Used by the tests and by the benchmark; nothing here needs pytest.
"""
