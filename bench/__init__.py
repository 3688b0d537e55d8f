"""tenantry's benchmarks: `python -m bench` runs them all and writes bench/results/.

Never imported by `src/`. Peers (agno, the OpenAI Agents SDK, LangGraph) come from the
`bench` extra: `pip install -e '.[all,bench]'` (or `make bench`)."""
