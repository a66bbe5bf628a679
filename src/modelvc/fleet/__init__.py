"""Fleet rollout: every replica switches versions together, or none does.

agent.py      the gateway side: register, heartbeat, STAGE / FLIP / ABORT by epoch
controller.py the rollout controller: atomic (two-phase) and rolling strategies
notify.py     PostgreSQL LISTEN/NOTIFY wake-ups (SQLite: callers poll)
"""
