"""Long-term memory per user, above the store: recall into the system prompt, learning after
the turn (in the background, serialised per user), memory tools scoped by the run context,
and session summaries.

    agent = Agent(memory=True)                      # or MemoryConfig(tools=True, ...)
    agent.run("My name is Alice", user_id="alice", session_id="s1")
    agent.flush()                                   # wait for the learning job
    agent.run("What's my name?", user_id="alice", session_id="s2").content
    # 'Your name is Alice.'

Modules: `config` (MemoryConfig), `recall`, `learning` (the extraction job), `summaries`,
`jobs` (the background machinery), `turn` (one turn's view: TurnMemory), `tools` (remember /
recall / forget), `runtime` (AgentMemory, the agent's two hooks).
"""

from tenantry.memory.config import MemoryConfig
from tenantry.memory.jobs import BackgroundJobs
from tenantry.memory.turn import TurnMemory

__all__ = ["BackgroundJobs", "MemoryConfig", "TurnMemory"]
