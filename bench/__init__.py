"""Connection-strategy benchmark of the baked template (see bench/README.md).

Bakes the template (default, use_pgbouncer, use_read_replica), drops a tiny benchmark
app into each baked tree, starts throwaway PostgreSQL primary / streaming replica /
PgBouncer servers with ``devtools/harness/``, then loads each configuration with ``wrk``,
interleaved over several repetitions, and writes a markdown report.

Run it through ``bench/run``; ``bench/run --help`` lists the options.
"""
